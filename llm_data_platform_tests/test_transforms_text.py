"""Unit tests of the text transforms: normalisation, PII, quality, language, dedup."""

from __future__ import annotations

import hashlib
import random
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from llm_data_platform.transforms import language, text_normalize
from llm_data_platform.transforms.dedup import content_hash, first_occurrence_mask, hash_key_text
from llm_data_platform.transforms.language import UNDETERMINED, detect_language
from llm_data_platform.transforms.pii import PII_KINDS, PLACEHOLDER_PATTERN, luhn_ok, redact_pii
from llm_data_platform.transforms.quality import GARBAGE_REASONS, quality_signals
from llm_data_platform.transforms.text_normalize import normalize_text

# ------------------------------------------------------------------------------ normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello   world \t again  ", "Hello world again"),
        ("cafÃ© â€œquotedâ€\x9d", "café “quoted”"),  # UTF-8 read as cp1252
        ("Ã\xa0 bientôt", "à bientôt"),  # "à" = C3 A0, A0 read as NBSP
        ("ＡＢＣ１２３ ﬁle", "ABC123 file"),  # NFKC: fullwidth, ligature
        ("a\u200bb\u00adc\u202eX\U000e0041\ufeff", "abcX"),  # zero-width, bidi, tag chars
        ("bell\x07 and\x00 nul", "bell and nul"),
        ("p1\r\n\r\n\r\n\r\np2\rline", "p1\n\np2\nline"),
        ("one\u2028two\u2029three", "one\ntwo\nthree"),
        ("para 1\n\n\n\n\npara 2\nline 2", "para 1\n\npara 2\nline 2"),
        ("trailing   \nspaces\t\n", "trailing\nspaces"),
        ("x\u00a0\u00a0y\u3000z", "x y z"),
        ("", ""),
        ("   \n\t \u200b ", ""),
        ("naïve café – déjà vu", "naïve café – déjà vu"),
        ("family 👨\u200d👩\u200d👧 emoji", "family 👨\u200d👩\u200d👧 emoji"),  # ZWJ kept
        ("Привет,   мир", "Привет, мир"),
    ],
)
def test_normalize_text_cases(raw: str, expected: str) -> None:
    out, changed = normalize_text(pa.array([raw]))
    assert out.to_pylist() == [expected]
    assert changed == int(raw != expected)


def test_normalize_keeps_code_indentation_and_nulls() -> None:
    code = "def f(x):\n    if x:\n        return  x   # two spaces collapse\n\n\n\n    return 0"
    out, changed = normalize_text(pa.chunked_array([[code, None], ["ok"]]))
    assert out.to_pylist() == [
        "def f(x):\n    if x:\n        return x # two spaces collapse\n\n    return 0",
        None,
        "ok",
    ]
    assert changed == 1
    assert out.type == pa.string()


def test_normalize_is_idempotent() -> None:
    texts = ["  a  b \r\n\r\n\r\n c ", "cafÃ©", "ﬁ\u200b x", None, "plain"]
    once, _ = normalize_text(pa.array(texts))
    twice, changed = normalize_text(once)
    assert twice.equals(once) and changed == 0


def test_ftfy_runs_only_on_flagged_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def spy(text: str) -> str:
        seen.append(text)
        return text.replace("Ã©", "é")

    monkeypatch.setattr(text_normalize.ftfy, "fix_encoding", spy)
    rows = ["plain ascii"] * 1000 + ["déjà vu, Zürich"] * 1000 + ["cafÃ©"]
    out, changed = normalize_text(pa.array(rows))
    assert seen == ["cafÃ©"]
    assert out[-1].as_py() == "café" and changed == 1


# ------------------------------------------------------------------------------ PII


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at john.doe+tag@example.co.uk please", "mail me at [EMAIL] please"),
        ("jane@corp.io", "[EMAIL]"),
        ("(bob_99@mail.example.org)", "([EMAIL])"),
        ("Écris à émile.zola@exemple.fr, merci", "Écris à [EMAIL], merci"),
        ("(415) 555-0199", "[PHONE]"),
        ("call 415-555-0132 or +44 20 7946 0958.", "call [PHONE] or [PHONE]."),
        ("+1 (415) 555-0199", "[PHONE]"),
        ("+1 415-555-0123 today", "[PHONE] today"),
        ("+4915123456789", "[PHONE]"),
        ("ring 415.555.0132", "ring [PHONE]"),
        ("card 4111 1111 1111 1111 exp 12/28", "card [CARD] exp 12/28"),
        ("4012-8888-8888-1881", "[CARD]"),
        ("amex 3782 822463 10005.", "amex [CARD]."),
        ("5500000000000004", "[CARD]"),
        ("4111 1111 1111 1111 12/28 123", "[CARD] 12/28 123"),
        ("server 192.168.1.20 and 10.0.0.1.", "server [IP] and [IP]."),
        ("8.8.8.8,1.1.1.1", "[IP],[IP]"),
        ("fe80::1ff:fe23:4567:890a and 2001:db8::1", "[IP] and [IP]"),
        ("http://[2001:db8::8a2e:370:7334]:8080/ and fe80::1", "http://[[IP]]:8080/ and [IP]"),
        ("SSN 123-45-6789", "SSN [SSN]"),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [IBAN] ok"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz123456", "key [SECRET]"),
        ("AKIAIOSFODNN7EXAMPLE", "[SECRET]"),
    ],
)
def test_redact_pii_positives(text: str, expected: str) -> None:
    result = redact_pii(pa.array([text]))
    assert result.text.to_pylist() == [expected]
    assert result.per_row.to_pylist() == [len(re.findall(PLACEHOLDER_PATTERN, expected))]


@pytest.mark.parametrize(
    "text",
    [
        "Python 3.11.7 was released in 2026; 1,000 users, 12,345,678 rows.",
        "see line 1234 of main.py and lines 10-20",
        "dates 2026-01-02 10:30:45, 2026/01/02, 02.01.2026",
        "epoch 1767225600 and ms 1767225600000",
        "order #12345678901234 and id 9876543210",
        "ISBN 978-3-16-148410-0",
        "sizes 256 512 1024 2048",
        "numbers 1 2 3 4 5 6 7 8 9 10 11 12 13 14",
        "version 1.2.3.4.5 and 999.1.1.1",
        "std::vector a[::1] Foo::bar Add::add arr[:, 1::2] x[10::20]",
        "4111 1111 1111 1112 fails Luhn",
        "price $1299.99, 15% off, 3x faster, +20% growth",
        "hex 0xDEADBEEF at 12:30:45.123",
        "user@localhost is not an address",
    ],
)
def test_redact_pii_leaves_ordinary_numbers_alone(text: str) -> None:
    result = redact_pii(pa.array([text]))
    assert result.text.to_pylist() == [text]
    assert result.per_row.to_pylist() == [0]
    assert sum(result.counts.values()) == 0


def test_redact_pii_counts_per_kind_and_row_with_nulls() -> None:
    texts = [
        "a@b.io and c@d.io",
        None,
        "",
        "call (415) 555-0199 from 10.1.2.3",
        "nothing here",
        "4242 4242 4242 4242",
    ]
    result = redact_pii(pa.chunked_array([texts[:3], texts[3:]]))
    assert set(result.counts) == set(PII_KINDS)
    assert result.counts["email"] == 2 and result.counts["phone"] == 1
    assert result.counts["ip"] == 1 and result.counts["card"] == 1
    assert result.per_row.to_pylist() == [2, 0, 0, 2, 0, 1]
    assert result.per_row.type == pa.int32()
    assert result.text[1].as_py() is None


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


# Independent, deliberately loose detectors used to check that nothing PII-shaped survives.
LEAK = {
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),
    "phone": re.compile(r"\+\d[\d ()-]{7,}\d|\(\d{3}\) ?\d{3}-\d{4}|\b\d{3}-\d{3}-\d{4}\b"),
    "card": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
    "ip": re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"),
}
CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004", "6011111111111117", "3782 822463 10005")
FILLER = (
    "How do I sort a dict by value in Python 3.12?",
    "Thanks, that fixed it.",
    "I tried 3 times since 2024 and got 1,000 errors on line 42.",
    "Можно вопрос про списки?",
    "¿Qué versión 3.11.7 usas?",
)


def _pii_value(rng: random.Random, kind: str) -> str:
    if kind == "email":
        user = "".join(rng.choices("abcdefghij._-+", k=rng.randint(1, 10))).strip("._-+") or "x"
        return f"{user}{rng.randint(0, 99)}@{rng.choice(['example.com', 'mail.co.uk', 'x.io'])}"
    if kind == "phone":
        area, mid, last = rng.randint(200, 999), rng.randint(200, 999), rng.randint(0, 9999)
        return rng.choice(
            [
                f"({area}) {mid}-{last:04d}",
                f"{area}-{mid}-{last:04d}",
                f"+1 {area} {mid} {last:04d}",
                f"+44 20 {rng.randint(1000, 9999)} {last:04d}",
                f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} 12",
            ]
        )
    if kind == "card":
        return rng.choice(CARDS)
    return ".".join(str(rng.randint(0, 255)) for _ in range(4))


def _pii_batch(seed: int, separators: list[str]) -> tuple[list[str], dict[str, int]]:
    rng = random.Random(seed)
    texts, injected = [], dict.fromkeys(LEAK, 0)
    for _ in range(3000):
        parts = [rng.choice(FILLER)]
        for _ in range(rng.randint(0, 3)):
            kind = rng.choice(list(LEAK))
            injected[kind] += 1
            parts.insert(rng.randint(0, len(parts)), _pii_value(rng, kind))
        texts.append(rng.choice(separators).join(parts))
    return texts, injected


def _assert_no_leak(texts: list[str]) -> None:
    for text in texts:
        for kind, leak in LEAK.items():
            assert not leak.search(text), (kind, text)


def test_no_pii_survives_redaction_property() -> None:
    texts, injected = _pii_batch(1234, [", ", "; ", "\n", " and ", " - ", ": "])
    result = redact_pii(pa.array(texts))
    _assert_no_leak(result.text.to_pylist())
    assert result.counts == {**dict.fromkeys(PII_KINDS, 0), **injected}
    again = redact_pii(result.text)  # placeholders never re-trigger a detector
    assert sum(again.counts.values()) == 0 and again.text.equals(result.text)


def test_no_pii_survives_when_pii_items_touch() -> None:
    # PII separated by one space: digit runs merge ("+44 20 7946 0958 4111 1111 1111 1111"),
    # so span counts may differ, but nothing PII-shaped may survive.
    texts, _ = _pii_batch(99, [" "])
    _assert_no_leak(redact_pii(pa.array(texts)).text.to_pylist())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111 1111 1111 1111 5500-0000-0000-0004", "[CARD] [CARD]"),
        ("6011111111111117 3782 822463 10005", "[CARD] [CARD]"),
        ("1.2.3.4 5500-0000-0000-0004 212.229.38.62", "[IP] [CARD] [IP]"),
        ("+44 20 7946 0958 4111 1111 1111 1111", "[PHONE] [CARD]"),
        ("+33 1 28 37 53 12 267-649-3772", "[PHONE] [PHONE]"),
    ],
)
def test_redact_adjacent_pii(text: str, expected: str) -> None:
    result = redact_pii(pa.array([text]))
    assert result.text.to_pylist() == [expected]
    assert result.per_row.to_pylist() == [2 + text.startswith("1.2")]


def test_normalize_then_redact_catches_obfuscated_pii() -> None:
    text = "mail: bob\u200b@example.com, phone: (４１５) ５５５-０１９９"
    normalised, _ = normalize_text(pa.array([text]))
    assert redact_pii(normalised).text.to_pylist() == ["mail: [EMAIL], phone: [PHONE]"]


# ------------------------------------------------------------------------------ quality

GARBAGE = {
    "asdkjh qwe!!! ###$$$": "keyboard_mash",
    "qwertyuiop asdfghjkl zxcvbnm": "keyboard_mash",
    "fgdfg dfgdfg sdfsdf 123123 !!!": "keyboard_mash",
    "????????": "no_letters",
    "$$$$%%%%^^^^&&&&****": "no_letters",
    "👍": "no_letters",
    "aaaaaaaaaaaa": "char_repetition",
    "jjjjjjjjjjjjjjjjjjjjjjjj": "char_repetition",
    "a!!!!!!!!!!!!": "char_repetition",
    "": "empty",
    "buy now buy now buy now buy now buy now buy now": "repeated_units",
    "A" * 30
    + "b" * 30
    + "QmFzZTY0IGJsb2IgdGhhdCBuZXZlciBlbmRzIGFuZCBuZXZlciBlbmRz" * 3: "long_words",
}
NOT_GARBAGE = [
    "Thanks!",
    "ok",
    "42",
    "What is a list comprehension?",
    "x = [i*i for i in range(10)]",
    "def f(x):\n    return x ** 2  # square",
    'print({"a": 1, "b": [1, 2]})',
    "Noooo way",
    "Hmm....",
    "Привет, как дела? Всё хорошо.",
    "你好，请问如何在Python中反转列表？",
    "The weekly report is done, please check the pdf on Wednesday.",
    "My email is [EMAIL], call me at [PHONE].",
    "https://docs.python.org/3/library/functions.html#sorted",
    "I keep getting literals wrong. What are the rules?",
]


def test_quality_flags_junk_with_a_reason() -> None:
    table = quality_signals(pa.array(list(GARBAGE)))
    assert table.column_names == ["quality_score", "garbage_reason"]
    assert table["garbage_reason"].to_pylist() == list(GARBAGE.values())
    assert set(GARBAGE.values()) <= set(GARBAGE_REASONS)
    assert all(s < 0.5 for s in table["quality_score"].to_pylist())


def test_quality_keeps_normal_chat() -> None:
    table = quality_signals(pa.array(NOT_GARBAGE))
    reasons = dict(zip(NOT_GARBAGE, table["garbage_reason"].to_pylist(), strict=True))
    assert {t: r for t, r in reasons.items() if r is not None} == {}
    scores = table["quality_score"].to_pylist()
    assert all(0.5 <= s <= 1.0 for s in scores)


def test_quality_threshold_and_nulls() -> None:
    arr = pa.array(["Hmm....", None, "????????"])
    strict = quality_signals(arr, min_score=0.95)
    assert strict["garbage_reason"].to_pylist() == ["symbol_heavy", None, "no_letters"]
    lenient = quality_signals(arr, min_score=0.0)
    assert lenient["garbage_reason"].to_pylist() == [None, None, None]
    assert lenient["quality_score"][1].as_py() is None
    assert lenient["quality_score"].type == pa.float32()


def test_quality_handles_sliced_and_chunked_input() -> None:
    texts = ["x", "aaaaaaaaaaaa", None, "Thanks!", "????????"]
    whole = quality_signals(pa.array(texts))
    sliced = quality_signals(pa.array(texts).slice(1))
    chunked = quality_signals(pa.chunked_array([texts[1:3], texts[3:]]))
    assert sliced.equals(whole.slice(1)) and chunked.equals(whole.slice(1))


# ------------------------------------------------------------------------------ language

LABELLED = {
    "en": ["How do I reverse a list in Python?", "Thanks, that fixed the problem for me."],
    "es": ["¿Cómo puedo invertir una lista en Python?", "Gracias, eso resolvió mi problema."],
    "fr": ["Comment inverser une liste en Python ?", "Merci, cela a résolu mon problème."],
    "de": ["Wie kann ich eine Liste in Python umdrehen?", "Danke, das hat mein Problem gelöst."],
    "it": ["Come posso invertire una lista in Python?", "Grazie, questo ha risolto tutto."],
    "pt": ["Como posso inverter uma lista em Python?", "Obrigado, isso resolveu o meu problema."],
    "nl": [
        "Hoe kan ik een lijst omdraaien in Python?",
        "Bedankt, dat heeft mijn probleem opgelost.",
    ],
    "ru": ["Как перевернуть список в Python?", "Спасибо, это решило мою проблему."],
    "pl": ["Jak odwrócić listę w Pythonie?", "Dziękuję, to rozwiązało mój problem."],
    "zh": ["如何在Python中反转一个列表？我试了很多次", "谢谢，这解决了我的问题。非常感谢你的帮助"],
    "ja": [
        "Pythonでリストを逆順にするにはどうすればいいですか？",
        "ありがとうございます、問題が解決しました。",
    ],
    "ko": [
        "파이썬에서 리스트를 뒤집으려면 어떻게 하나요?",
        "감사합니다, 문제가 해결되었어요. 정말 고마워요",
    ],
    "ar": ["كيف يمكنني عكس قائمة في بايثون؟", "شكرا، لقد حل هذا مشكلتي تماما."],
}


def test_detect_language_on_chat_sentences() -> None:
    texts = [t for ts in LABELLED.values() for t in ts]
    gold = [code for code, ts in LABELLED.items() for _ in ts]
    assert detect_language(pa.array(texts)).to_pylist() == gold


def test_detect_language_undetermined_cases() -> None:
    arr = pa.array(
        [None, "", "ok", "Thanks!", "[EMAIL] [PHONE] https://example.com/a/very/long/path/x"]
    )
    assert detect_language(arr).to_pylist() == [UNDETERMINED] * 5
    assert detect_language(pa.array(["Thanks!"]), min_chars=3).to_pylist() == ["en"]
    sure = detect_language(pa.array(["Hello there my friend"]), min_confidence=1.01)
    assert sure.to_pylist() == [UNDETERMINED]


def test_detect_language_ignores_code_and_urls() -> None:
    text = (
        "Voici comment faire : ```python\nfor item in reversed(items):\n    print(item)\n``` voilà"
    )
    assert detect_language(pa.array([text]), min_chars=10).to_pylist() == ["fr"]


def test_batched_classifier_matches_py3langid() -> None:
    rng = random.Random(5)
    pool = [t for ts in LABELLED.values() for t in ts] + list(FILLER) + NOT_GARBAGE
    texts = [
        " ".join(rng.sample(pool, rng.randint(1, 3)))[: rng.randint(5, 300)] for _ in range(400)
    ]
    texts += ["", "12345", "🙂🙂", "ÉTÉ EN FRANCE", "ŁÓDŹ"]
    for langs in (language.DEFAULT_LANGUAGES, None):
        prepared = language.detection_text(pa.array(texts))
        best, conf = language.classify_texts(prepared, langs)
        classes = language.model_classes(langs)
        reference = language.identifier(langs)
        for text, b, c in zip(prepared.to_pylist(), best, conf, strict=True):
            label, p = reference.classify(text)
            assert classes[b] == label, text
            assert abs(c - p) < 1e-4


def test_detect_language_all_labels_maps_to_iso_639_1() -> None:
    texts = [t for ts in LABELLED.values() for t in ts]
    codes = detect_language(pa.array(texts), languages=None).to_pylist()
    assert all(len(c) == 2 or c == UNDETERMINED for c in codes)
    gold = [code for code, ts in LABELLED.items() for _ in ts]
    assert sum(c == g for c, g in zip(codes, gold, strict=True)) >= 24


# ------------------------------------------------------------------------------ dedup


def test_content_hash_is_md5_of_the_key_text() -> None:
    texts = ["Hello  World", "hello world\n", None, "", "Ünïcödé ✓"]
    hashes = content_hash(pa.array(texts)).to_pylist()
    assert hashes[0] == hashes[1] == hashlib.md5(b"hello world").hexdigest()
    assert hashes[2] is None
    assert hashes[3] == hashlib.md5(b"").hexdigest()
    assert hashes[4] == hashlib.md5("ünïcödé ✓".encode()).hexdigest()
    assert hash_key_text(pa.array(["  A\tB  "])).to_pylist() == ["a b"]


def test_content_hash_keeps_row_order_on_large_input() -> None:
    texts = [f"message number {i}" for i in range(50_000)]
    hashes = content_hash(pa.chunked_array([texts[:20_000], texts[20_000:]])).to_pylist()
    assert hashes[::997] == [hashlib.md5(t.encode()).hexdigest() for t in texts[::997]]


def test_first_occurrence_mask() -> None:
    table = pa.table(
        {
            "a": ["x", "y", "x", "x", None, None, "y"],
            "b": [1, 1, 1, 2, 1, 1, 1],
        }
    )
    assert first_occurrence_mask(table, ["a"]).to_pylist() == [1, 1, 0, 0, 1, 0, 0]
    assert first_occurrence_mask(table, ["a", "b"]).to_pylist() == [1, 1, 0, 1, 1, 0, 0]
    assert first_occurrence_mask(table.slice(0, 0), ["a"]).to_pylist() == []
    with pytest.raises(ValueError):
        first_occurrence_mask(table, [])


def test_first_occurrence_mask_is_keep_first_at_scale() -> None:
    rng = random.Random(3)
    keys = [rng.randrange(500) for _ in range(20_000)]
    mask = first_occurrence_mask(pa.table({"k": keys}), ["k"]).to_pylist()
    seen: set[int] = set()
    expected = []
    for k in keys:
        expected.append(k not in seen)
        seen.add(k)
    assert mask == expected
    assert pc.sum(pa.array(mask)).as_py() == len(seen)
