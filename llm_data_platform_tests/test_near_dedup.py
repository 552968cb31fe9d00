"""Near-duplicate detection (MinHash LSH) and eval-question decontamination (no Dagster)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash

from llm_data_platform import schemas
from llm_data_platform.transforms.decontamination import ReferenceNgrams, contaminated_mask
from llm_data_platform.transforms.near_dedup import (
    conversation_texts,
    minhash_signatures,
    near_duplicate_mask,
    normalize_for_matching,
    shingle_hashes,
)

SESSION = (
    "user: How do list comprehensions work in Python?\n"
    "assistant: A list comprehension consists of brackets containing an expression followed "
    "by a for clause, then zero or more for or if clauses. The result is a new list resulting "
    "from evaluating the expression in the context of the for and if clauses which follow it. "
    "Comprehensions are often more readable than the equivalent loop, and they run in their "
    "own scope, so the loop variable does not leak into the surrounding function."
)
OTHER = (
    "user: Can you explain the with statement?\n"
    "assistant: The with statement wraps the execution of a block with methods defined by a "
    "context manager. This allows common try, except and finally usage patterns to be "
    "encapsulated for convenient reuse, for example closing a file when the block ends even "
    "if an exception was raised inside it."
)
THIRD = (
    "user: What is the difference between a tuple and a list?\n"
    "assistant: Lists are mutable sequences, typically used to store collections of "
    "homogeneous items, while tuples are immutable and are often used for small records of "
    "heterogeneous values that are unpacked or indexed."
)


def one_word_changed(text: str, index: int, new: str = "basically") -> str:
    words = text.split(" ")
    words[index] = new
    return " ".join(words)


# --------------------------------------------------------------------------------------------
# near-duplicates


def test_one_word_change_is_a_near_duplicate_and_unrelated_sessions_are_not():
    copy = one_word_changed(SESSION, 30)
    assert copy != SESSION
    texts = [SESSION, OTHER, copy, THIRD]
    ids = ["a", "b", "c", "d"]
    result = near_duplicate_mask(texts, ids)
    assert result.keep == [True, True, False, True]
    assert result.duplicate_of == [None, None, "a", None]
    assert result.similarity[2] is not None and 0.8 <= result.similarity[2] < 1.0
    assert result.n_duplicates == 1
    assert result.candidates >= result.pairs_checked >= 1


def test_case_punctuation_and_spacing_do_not_matter():
    variant = SESSION.upper().replace(",", " ,  ").replace(".", "!")
    result = near_duplicate_mask([SESSION, variant], ["a", "b"])
    assert result.keep == [True, False]
    assert result.similarity[1] == 1.0


def test_keep_first_in_input_order():
    copy1 = one_word_changed(SESSION, 20)
    copy2 = one_word_changed(SESSION, 40, "really")
    result = near_duplicate_mask([copy2, OTHER, SESSION, copy1], ["x", "o", "s", "y"])
    assert result.keep == [True, True, False, False]
    assert result.duplicate_of == [None, None, "x", "x"]
    # copy1 is two edits away from copy2 (below the threshold) but one from SESSION, which is
    # in copy2's cluster: clusters are transitive, so a chain of edits cannot slip through
    assert result.similarity[3] < 0.8 <= result.similarity[2]


def test_below_threshold_is_kept():
    # half of the session rewritten: related, but not a near-duplicate
    words = SESSION.split(" ")
    half = " ".join(words[: len(words) // 2]) + " " + OTHER
    result = near_duplicate_mask([SESSION, half], ["a", "b"])
    assert result.keep == [True, True]


def test_short_texts_use_character_shingles():
    texts = ["Thanks!", "thanks", "Thanks a lot", "thanks a lot!!", "ok", "no", "", None, "  "]
    ids = [f"t{i}" for i in range(len(texts))]
    result = near_duplicate_mask(texts, ids)
    assert result.keep == [True, False, True, False, True, True, True, True, True]
    assert result.duplicate_of[1] == "t0"
    assert result.duplicate_of[3] == "t2"
    # empty texts have nothing to compare and are always kept
    assert result.duplicate_of[6:] == [None, None, None]
    # a short text and a long one never match
    assert near_duplicate_mask(["thanks", SESSION], ["a", "b"]).keep == [True, True]


def test_deterministic_and_accepts_arrow():
    texts = [SESSION, OTHER, one_word_changed(SESSION, 25), THIRD, one_word_changed(OTHER, 10)]
    ids = [str(i) for i in range(len(texts))]
    first = near_duplicate_mask(texts, ids)
    again = near_duplicate_mask(texts, ids)
    arrow = near_duplicate_mask(pa.chunked_array([texts[:2], texts[2:]]), ids)
    assert first == again == arrow
    assert first.keep == [True, True, False, True, False]
    other_seed = near_duplicate_mask(texts, ids, seed=42)
    assert other_seed.keep == first.keep


def test_signatures_match_datasketch():
    texts = [SESSION, OTHER, "hi", ""]
    offsets, hashes = shingle_hashes(texts)
    sig = minhash_signatures(offsets, hashes, num_perm=64, seed=3)
    for i in range(len(texts)):
        m = MinHash(num_perm=64, seed=3, hashfunc=lambda h: h)
        m.update_batch((hashes[offsets[i] : offsets[i + 1]] >> np.uint64(32)).tolist())
        assert np.array_equal(sig[i], m.hashvalues)


def test_bad_arguments():
    with pytest.raises(ValueError, match="ids"):
        near_duplicate_mask(["a b c"], ["1", "2"])
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_mask(["a"], ["1"], threshold=0)
    assert near_duplicate_mask([], []).keep == []


def test_normalize_for_matching():
    got = normalize_for_matching(["  What's   NEW, in Python 3.12?! ", None, "Ｆｕｌｌ—width"])
    assert got.to_pylist() == ["what s new in python 3 12", "", "full width"]


def test_conversation_texts_orders_turns_and_conversations():
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    rows = []

    def add(conv, event_type, turn, role, content, minutes, rating=None):
        rows.append(
            {
                "event_id": f"{conv}-{len(rows)}",
                "event_type": event_type,
                "conversation_id": conv,
                "turn_index": turn,
                "role": role,
                "content": content,
                "rating": rating,
                "event_time": t0 + timedelta(minutes=minutes),
            }
        )

    add("late", "message", 1, "assistant", "second answer", 61)
    add("late", "message", 0, "user", "second question", 60)
    add("early", "message", 1, "assistant", "first answer", 2)
    add("early", "feedback", None, None, None, 3, rating=5)
    add("early", "message", 0, "user", "first question", 1)
    add("tie-b", "message", 0, "user", "b", 30)
    add("tie-a", "message", 0, "user", "a", 30)
    table = pa.Table.from_pylist(rows, schema=schemas.CONVERSATIONS_CLEAN)
    ids, texts, first = conversation_texts(table)
    assert ids == ["early", "tie-a", "tie-b", "late"]
    assert texts[0] == "user: first question\nassistant: first answer"
    assert texts[3] == "user: second question\nassistant: second answer"
    assert first[0] == t0 + timedelta(minutes=1)
    assert conversation_texts(table.slice(0, 0)) == ([], [], [])


# --------------------------------------------------------------------------------------------
# decontamination

QUESTIONS = [
    "What does the Python language reference say about comparisons?",
    "How are string and bytes literals written in Python source code?",
    "What does the assert statement do in Python?",
]


def test_eval_question_embedded_verbatim_or_reformatted_is_caught():
    texts = [
        "Hi! What does the Python language reference say about comparisons? Thanks.",
        "hey, how ARE string and bytes literals written in python source-code??",
        "I need this for homework: what does the assert statement do in python",
        "user: How are comparisons chained in Python?\nassistant: x < y <= z works.",
    ]
    assert contaminated_mask(texts, QUESTIONS) == [True, True, True, False]


def test_common_short_phrases_do_not_contaminate():
    texts = [
        "What does the with statement do? And what does the Python language reference cover?",
        "in Python source code, string literals use quotes",
        "What does the assert keyword check?",
        "",
        None,
    ]
    assert contaminated_mask(texts, QUESTIONS) == [False] * 5


def test_short_references_match_whole_on_word_boundaries():
    refs = ["Define a closure.", "", "!!!"]
    texts = ["please, DEFINE a closure!", "define a closures", "undefine a closure", "x"]
    assert contaminated_mask(texts, refs) == [True, False, False, False]
    index = ReferenceNgrams(refs)
    assert index.short_references == ["define a closure"]
    assert index.mask(pa.array(texts)) == [True, False, False, False]


# --------------------------------------------------------------------------------------------
# demo data


def _demo_conversations(landing: Path) -> tuple[list[str], list[str]]:
    """Per-conversation texts (user + assistant contents by turn) from the landed JSONL,
    parsed independently of the platform; sorted by first message time."""
    seen: set[str] = set()
    turns: dict[str, dict[int, str]] = defaultdict(dict)
    first: dict[str, str] = {}
    for path in sorted(landing.glob("conversations/*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("type") != "message":
                continue
            cid, turn, role = event.get("conversation_id"), event.get("turn"), event.get("role")
            content, ts, eid = event.get("content"), event.get("timestamp"), event.get("event_id")
            if not all(isinstance(v, str) for v in (cid, content, ts, eid)):
                continue
            if not isinstance(turn, int) or role not in ("user", "assistant"):
                continue
            try:
                datetime.fromisoformat(ts)
            except ValueError:
                continue
            if eid in seen:
                continue
            seen.add(eid)
            turns[cid].setdefault(turn, content)  # retries repeat a turn: first one wins
            first[cid] = min(first.get(cid, ts), ts)
    ids = sorted(turns, key=lambda c: (first[c], c))
    texts = ["\n".join(turns[c][t] for t in sorted(turns[c])) for c in ids]
    return ids, texts


def _reference_clusters(texts: list[str], threshold: float = 0.8, k: int = 5) -> list[int]:
    """Brute force, pure Python: the index of the first text of each text's cluster."""

    def shingles(text: str) -> set:
        words = re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).lower()).split()
        if len(words) >= k:
            return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}
        joined = " ".join(words)
        return {joined[i : i + k] for i in range(len(joined) - k + 1)} or ({joined} - {""})

    sets = [shingles(t) for t in texts]
    root = list(range(len(texts)))
    for j in range(len(texts)):
        for i in range(j):
            a, b = sets[i], sets[j]
            if a and b and len(a & b) / len(a | b) >= threshold:
                ri, rj = root[i], root[j]
                if ri != rj:  # relabel the later cluster with the earlier root
                    lo, hi = min(ri, rj), max(ri, rj)
                    root = [lo if r == hi else r for r in root]
    return root


def test_demo_near_duplicates_and_contamination(tmp_path):
    from llm_data_platform.demo import generate_demo

    days = [date(2026, 1, 5), date(2026, 1, 6)]
    truth = generate_demo(tmp_path, days, conversations_per_day=60, n_topics=12, seed=5)
    ids, texts = _demo_conversations(tmp_path)
    result = near_duplicate_mask(texts, ids)
    by_id = dict(zip(ids, result.duplicate_of, strict=True))

    # every deliberate copy is caught, as a duplicate of its original; no original is dropped
    pairs = [p for d in truth.conversations.values() for p in d.near_duplicate_pairs]
    assert pairs
    assert all(by_id[copy] == original for copy, original in pairs)
    assert all(by_id[original] is None for _, original in pairs)

    # The other texts flagged are duplicates the generator makes without listing them: empty,
    # garbage and non-English sessions repeat a few fixed exchanges, and two sessions on the
    # same topic with the same question template can share most of their answer sentences.
    # The result equals a brute-force exact-Jaccard clustering of all pairs.
    reference = _reference_clusters(texts)
    assert result.duplicate_of == [None if r == i else ids[r] for i, r in enumerate(reference)]
    assert result.n_duplicates > len(pairs)

    contaminated = {
        c for d in truth.conversations.values() for c in d.eval_contaminated_conversation_ids
    }
    assert contaminated
    mask = contaminated_mask(texts, [q for q, _ in truth.eval_questions])
    assert {i for i, m in zip(ids, mask, strict=True) if m} == contaminated


def test_shingles_in_blocks_equal_shingles_at_once(monkeypatch):
    """Long lists are tokenized in blocks (bounded memory): the hashes do not change."""
    from llm_data_platform.transforms import shingles

    texts = [f"word{i} " * (i % 9) + f"the end of text number {i}" for i in range(500)]
    texts += [None, "", "a b", "one two three four five six"]
    whole = shingles.shingle_hashes(texts, 5)
    monkeypatch.setattr(shingles, "SHINGLE_BLOCK", 37)
    blocked = shingles.shingle_hashes(texts, 5)
    assert np.array_equal(whole[0], blocked[0]) and np.array_equal(whole[1], blocked[1])


def test_byte_tokenizer_equals_the_unicode_normalisation(monkeypatch):
    """The byte path (ASCII rows, and rows whose only non-ASCII characters are separators)
    gives exactly the hashes of the regex + NFKC path, which the other rows keep."""
    from llm_data_platform.transforms import shingles

    texts = [
        SESSION,
        OTHER.upper(),
        "it’s “quoted” — yes… 😂👍 ok",
        "hi😂there, don't stop",
        "™ trade™mark and ﬁne ﬁsh",
        "Ça va? Éric says e\u0301te\u0301 is here",
        "日本語のテキスト です ok",
        "½ cup, Ⅻ chapters",
        "a\u200bb zero width",
        "",
        None,
        "  ,,  ",
        "x",
    ]
    fast = shingles._fast_rows(pa.array(texts).fill_null(""))
    assert fast[:4].all() and not fast[4:8].any() and fast[8:].all()
    for k in (1, 2, 5):
        mixed = shingles.shingle_hashes(texts, k)
        with monkeypatch.context() as m:
            m.setattr(shingles, "_fast_rows", lambda arr: np.zeros(len(arr), bool))
            slow = shingles.shingle_hashes(texts, k)
        assert np.array_equal(mixed[0], slow[0]) and np.array_equal(mixed[1], slow[1])


def test_permutations_are_datasketchs_without_importing_it():
    from llm_data_platform.transforms import minhash

    for num_perm, seed in ((2, 1), (64, 3), (128, 1), (256, 42)):
        a, b = minhash._permutations(num_perm, seed)
        theirs = MinHash(num_perm=num_perm, seed=seed).permutations
        assert np.array_equal(a, theirs[0]) and np.array_equal(b, theirs[1])


def test_byte_tokenizer_edges_equal_the_unicode_normalisation(monkeypatch):
    """Rows that meet word to word in the value buffer, empty rows between them, and a word
    longer than a hash block: the byte path still reads what normalisation gives."""
    from llm_data_platform.transforms import shingles

    texts = ["end", "start here", "", "", "9lives", "x" * (shingles._HASH_BLOCK_BYTES + 5)]
    texts += ["a " + "y" * 70_000 + " b c", "", "tail7", "8head"]
    for k, edge_block in ((1, 1 << 20), (2, 1 << 20), (3, 1 << 20), (2, 6), (3, 1)):
        monkeypatch.setattr(shingles, "_EDGE_BLOCK_BYTES", edge_block)  # rows across blocks
        fast = shingles.shingle_hashes(texts, k)
        with monkeypatch.context() as m:
            m.setattr(shingles, "_fast_rows", lambda arr: np.zeros(len(arr), bool))
            slow = shingles.shingle_hashes(texts, k)
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_signatures_in_blocks_match_datasketch(monkeypatch):
    """Texts with more shingles than a signature block and texts without any, in one batch."""
    from llm_data_platform.transforms import minhash

    monkeypatch.setattr(minhash, "_SIG_BLOCK_SHINGLES", 64)
    texts = ["", SESSION * 3, "hi", None, OTHER, " ".join(f"w{i}" for i in range(300)), ""]
    offsets, hashes = shingle_hashes(texts, 2)
    sig = minhash_signatures(offsets, hashes, num_perm=40, seed=5)
    for i in range(len(texts)):
        m = MinHash(num_perm=40, seed=5, hashfunc=lambda h: h)
        m.update_batch((hashes[offsets[i] : offsets[i + 1]] >> np.uint64(32)).tolist())
        assert np.array_equal(sig[i], m.hashvalues)


def test_clusters_equal_across_signature_blocks_and_rehashed_shingles(monkeypatch):
    """Kept shingles in one block or many, or none kept (the exact check hashes its
    candidates again): the same clusters and similarities."""
    from llm_data_platform.transforms import near_dedup

    texts = [SESSION, OTHER, THIRD] + [
        one_word_changed(t, i, w) for i in range(3, 12) for t in (SESSION, OTHER) for w in "xy"
    ]
    texts += ["", None, "hi there"] * 3
    params = near_dedup.NearDupParams()
    whole = near_dedup.cluster_texts(texts, params)
    assert (whole.root != np.arange(len(texts))).sum() > 10
    for block, keep in ((7, near_dedup._KEEP_SHINGLES), (7, 0), (10_000, 0)):
        with monkeypatch.context() as m:
            m.setattr(near_dedup, "_SIG_BLOCK", block)
            m.setattr(near_dedup, "_KEEP_SHINGLES", keep)
            got = near_dedup.cluster_texts(texts, params)
        assert np.array_equal(got.root, whole.root)
        assert np.array_equal(got.similarity, whole.similarity, equal_nan=True)
        assert np.array_equal(got.signatures, whole.signatures)
