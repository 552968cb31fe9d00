"""clean_conversations: step semantics, counts, invariants, schema, determinism."""

from __future__ import annotations

import datetime as dt
import random
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from llm_data_platform import schemas
from llm_data_platform.transforms.conversation_cleaning import (
    DROP_REASONS,
    DROPPED_SCHEMA,
    CleaningConfig,
    clean_conversations,
)
from llm_data_platform.transforms.pii import PII_KINDS

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
QUESTION = "How do I reverse a list in Python without copying it?"
ANSWER = "Call xs.reverse() to reverse in place; xs[::-1] makes a reversed copy."


def message(
    event_id: str,
    content: str | None,
    *,
    conversation: str = "c1",
    turn: int = 0,
    role: str = "user",
    line: int = 1,
) -> dict:
    return {
        "event_id": event_id,
        "event_type": "message",
        "conversation_id": conversation,
        "turn_index": turn,
        "role": role,
        "content": content,
        "rating": None,
        "user_id": "u1",
        "event_time": T0 + dt.timedelta(seconds=line),
        "source_file": "landing/conversations-0001.jsonl",
        "source_line": line,
        "arrived_at": T0,
    }


def feedback(event_id: str, rating: int, *, conversation: str = "c1", line: int = 1) -> dict:
    return {
        **message(event_id, None, conversation=conversation, line=line),
        "event_type": "feedback",
        "turn_index": None,
        "role": None,
        "rating": rating,
    }


def raw_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schemas.RAW_CONVERSATIONS)


def dropped_total(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k.startswith("dropped_"))


@pytest.fixture(scope="module")
def mixed() -> tuple[pa.Table, object]:
    rows = [
        message("e1", QUESTION, line=1),
        message("e1", QUESTION, line=2),  # replay
        message("e2", ANSWER + " Mail me: bob@example.com", turn=1, role="assistant", line=3),
        feedback("f1", 5, line=4),
        feedback("f1", 5, line=5),  # replayed feedback
        message("e3", "  \u200b \n ", turn=2, line=6),  # empty after normalisation
        message("e4", None, turn=3, line=7),  # message without content
        message("e5", "asdkjh qwe!!! ###$$$", turn=4, line=8),  # garbage
        message("e6", "????????", turn=5, line=9),  # garbage
        message("e7", ANSWER + " Mail me: bob@example.com", turn=1, role="assistant", line=10),
        message("e8", "Merci beaucoup, c'est exactement ce qu'il me fallait !", turn=6, line=11),
        message("e9", "cafÃ©   au   lait, call (415) 555-0199", turn=7, line=12),
        message("e10", "Thanks!", turn=8, line=13),
        message("e11", "My card 4111 1111 1111 1111 was charged twice", conversation="c2", line=14),
        message("e11", "My card 4111 1111 1111 1111 was charged twice", conversation="c2", line=15),
    ]
    raw = raw_table(rows)
    return raw, clean_conversations(raw)


def test_output_schema_is_exact(mixed) -> None:
    _, result = mixed
    assert result.clean.schema == schemas.CONVERSATIONS_CLEAN
    assert result.dropped.schema == DROPPED_SCHEMA
    assert result.dropped.column_names == [
        "event_id",
        "source_file",
        "source_line",
        "reason",
        "content",
        "duplicate_of",
        "similarity",
    ]


def test_each_step_drops_what_it_should(mixed) -> None:
    _, result = mixed
    assert result.clean["event_id"].to_pylist() == ["e1", "e2", "f1", "e8", "e9", "e10", "e11"]
    dropped = {(r["event_id"], r["source_line"]): r["reason"] for r in result.dropped.to_pylist()}
    assert dropped == {
        ("e1", 2): "duplicate_event",
        ("f1", 5): "duplicate_event",
        ("e11", 15): "duplicate_event",
        ("e3", 6): "empty",
        ("e4", 7): "empty",
        ("e5", 8): "low_quality:keyboard_mash",
        ("e6", 9): "low_quality:no_letters",
        ("e7", 10): "duplicate_content",
    }


def test_counts_and_invariant(mixed) -> None:
    raw, result = mixed
    c = result.counts
    assert c["received"] == raw.num_rows == 15
    assert c["kept"] == result.clean.num_rows == 7
    assert c["received"] == c["kept"] + dropped_total(c)
    assert result.clean.num_rows + result.dropped.num_rows == raw.num_rows
    assert c["dropped_duplicate_event"] == 3 and c["dropped_empty"] == 2
    assert c["dropped_low_quality:keyboard_mash"] == 1 and c["dropped_low_quality:no_letters"] == 1
    assert c["dropped_duplicate_content"] == 1
    assert {f"dropped_{r}" for r in DROP_REASONS} <= set(c)
    assert {f"pii_{k}" for k in PII_KINDS} <= set(c)
    # e2 and e7 (both before dedup) hold an email, e9 a phone, e11 a card
    assert c["pii_email"] == 2 and c["pii_phone"] == 1 and c["pii_card"] == 1
    assert c["pii_messages"] == 4
    assert c["normalised"] == 2  # e3 (whitespace) and e9 (mojibake + spaces)
    # und: the feedback, "Thanks!" and e9, which is under 20 characters without its placeholder
    assert c["language_en"] == 3 and c["language_fr"] == 1 and c["language_und"] == 3
    assert sum(v for k, v in c.items() if k.startswith("language_")) == c["kept"]
    assert all(isinstance(v, int) for v in c.values())


def test_message_columns(mixed) -> None:
    _, result = mixed
    rows = {r["event_id"]: r for r in result.clean.to_pylist()}
    assert rows["e2"]["content"] == ANSWER + " Mail me: [EMAIL]"
    assert rows["e2"]["pii_redactions"] == 1
    assert rows["e9"]["content"] == "café au lait, call [PHONE]"
    assert rows["e10"]["language"] == "und"  # too short to tell
    assert rows["e11"]["language"] == "en"
    assert rows["e8"]["language"] == "fr"
    for r in (rows["e1"], rows["e2"], rows["e8"], rows["e9"], rows["e10"]):
        assert 0.5 <= r["quality_score"] <= 1.0
        assert re.fullmatch(r"[0-9a-f]{32}", r["content_hash"])


def test_feedback_passes_through_content_steps(mixed) -> None:
    _, result = mixed
    (fb,) = [r for r in result.clean.to_pylist() if r["event_type"] == "feedback"]
    assert fb["event_id"] == "f1" and fb["rating"] == 5
    assert fb["content"] is None and fb["content_hash"] is None
    assert fb["language"] == "und" and fb["quality_score"] is None
    assert fb["pii_redactions"] == 0 and fb["turn_index"] is None and fb["role"] is None


def test_dropped_content_is_redacted(mixed) -> None:
    _, result = mixed
    contents = {(r["event_id"], r["source_line"]): r["content"] for r in result.dropped.to_pylist()}
    # replay dropped at step (a), before redaction: redacted when the dropped table is built
    assert contents[("e11", 15)] == "My card [CARD] was charged twice"
    assert contents[("e7", 10)] == ANSWER + " Mail me: [EMAIL]"
    assert contents[("e4", 7)] is None and contents[("e3", 6)] == ""
    assert not any("@" in (c or "") for c in contents.values())


def test_deterministic(mixed) -> None:
    raw, result = mixed
    again = clean_conversations(raw)
    assert again.clean.equals(result.clean)
    assert again.dropped.equals(result.dropped)
    assert again.counts == result.counts


def test_min_quality_score_is_configurable(mixed) -> None:
    raw, _ = mixed
    lenient = clean_conversations(raw, CleaningConfig(min_quality_score=0.0))
    assert (
        lenient.counts["dropped_low_quality:keyboard_mash"] == 0
        and lenient.counts["dropped_low_quality:no_letters"] == 0
    )
    assert lenient.counts["kept"] == 9
    assert lenient.counts["received"] == lenient.counts["kept"] + dropped_total(lenient.counts)


def test_accepts_other_column_order_and_string_types() -> None:
    raw = raw_table([message("a", QUESTION), feedback("b", 2)])
    shuffled = raw.select(list(reversed(raw.column_names)))
    shuffled = shuffled.set_column(
        shuffled.column_names.index("content"),
        "content",
        shuffled["content"].cast(pa.large_string()),
    )
    shuffled = shuffled.append_column("extra", pa.array([1, 2]))
    result = clean_conversations(shuffled)
    assert result.clean.schema == schemas.CONVERSATIONS_CLEAN
    assert result.clean["event_id"].to_pylist() == ["a", "b"]


def test_missing_column_is_a_clear_error() -> None:
    raw = raw_table([message("a", QUESTION)]).drop_columns(["content"])
    with pytest.raises(ValueError, match="content"):
        clean_conversations(raw)


def test_empty_input() -> None:
    result = clean_conversations(schemas.RAW_CONVERSATIONS.empty_table())
    assert result.clean.num_rows == 0 and result.dropped.num_rows == 0
    assert result.clean.schema == schemas.CONVERSATIONS_CLEAN
    assert result.counts["received"] == 0 == result.counts["kept"] == dropped_total(result.counts)


def test_null_event_ids_are_not_replays_of_each_other() -> None:
    rows = [message(None, QUESTION, turn=0), message(None, ANSWER, turn=1, role="assistant")]
    result = clean_conversations(raw_table(rows))
    assert result.counts["kept"] == 2 and result.counts["dropped_duplicate_event"] == 0


def test_duplicate_content_ignores_case_and_spacing_but_not_turn_or_role() -> None:
    rows = [
        message("a", "Hello there, how are you?", turn=0),
        message("b", "hello  there,   HOW are you?", turn=0),  # same turn: duplicate
        message("c", "Hello there, how are you?", turn=1),  # other turn: kept
        message("d", "Hello there, how are you?", turn=0, role="assistant"),  # other role
        message("e", "Hello there, how are you?", turn=0, conversation="c2"),
    ]
    result = clean_conversations(raw_table(rows))
    assert result.clean["event_id"].to_pylist() == ["a", "c", "d", "e"]
    assert result.dropped["reason"].to_pylist() == ["duplicate_content"]


# A generated day: realistic mix, checked for the invariants and for PII that would leak.
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
PHONE = re.compile(r"\+\d[\d ()-]{7,}\d|\(\d{3}\) ?\d{3}-\d{4}|\b\d{3}-\d{3}-\d{4}\b")
CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
TEXTS = [
    QUESTION,
    ANSWER,
    "Thanks!",
    "ok",
    "Can you explain closures with an example? I read the docs for Python 3.12.1 twice.",
    "¿Cómo puedo invertir una lista en Python sin copiarla?",
    "Wie kann ich eine Liste in Python umdrehen, ohne sie zu kopieren?",
    "x = [i*i for i in range(10)]",
    "asdkjh qwe!!! ###$$$",
    "????????",
    "",
    "   ",
]
PII = [
    "reach me at {n}@example.com",
    "call (415) 555-01{d}",
    "or +44 20 7946 09{d}",
    "card 4111 1111 1111 1111",
    "server 10.0.{d}.7",
]


def generated_day(n_conversations: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    rows: list[dict] = []
    for c in range(n_conversations):
        cid = f"conv-{c:05d}"
        for turn in range(rng.randint(1, 6)):
            text = rng.choice(TEXTS)
            if rng.random() < 0.2:
                text += " " + rng.choice(PII).format(
                    n=rng.choice(["al", "b.o"]), d=rng.randint(10, 99)
                )
            role = "user" if turn % 2 == 0 else "assistant"
            rows.append(message(f"{cid}-{turn}", text, conversation=cid, turn=turn, role=role))
            if rng.random() < 0.03:
                rows.append(dict(rows[-1]))
            if rng.random() < 0.03:
                rows.append({**rows[-1], "event_id": f"{cid}-{turn}-again"})
        if rng.random() < 0.4:
            rows.append(feedback(f"{cid}-fb", rng.randint(1, 5), conversation=cid))
    for i, row in enumerate(rows, start=1):
        row["source_line"] = i
    return raw_table(rows)


def test_generated_day_invariants_and_no_pii() -> None:
    raw = generated_day(800, seed=21)
    result = clean_conversations(raw)
    c = result.counts
    assert c["received"] == raw.num_rows == c["kept"] + dropped_total(c)
    assert result.clean.num_rows + result.dropped.num_rows == raw.num_rows
    kept_ids = result.clean["event_id"].to_pylist()
    assert len(set(kept_ids)) == len(kept_ids)
    assert set(kept_ids) | set(result.dropped["event_id"].to_pylist()) == set(
        raw["event_id"].to_pylist()
    )
    for text in result.clean["content"].to_pylist() + result.dropped["content"].to_pylist():
        if text:
            for pattern in (EMAIL, PHONE, CARD, IPV4):
                assert not pattern.search(text), text
    assert c["pii_messages"] > 0 and c["dropped_duplicate_content"] > 0
    assert c["dropped_duplicate_event"] > 0 and c["dropped_empty"] > 0
    messages = result.clean.filter(pc.equal(result.clean["event_type"], "message"))
    assert messages["quality_score"].null_count == 0
    assert pc.min(messages["quality_score"]).as_py() >= CleaningConfig().min_quality_score


def test_chunked_input_gives_the_same_result() -> None:
    raw = generated_day(150, seed=3)
    chunked = pa.concat_tables([raw.slice(0, 100), raw.slice(100)])
    assert chunked["content"].num_chunks == 2
    a, b = clean_conversations(raw), clean_conversations(chunked)
    assert a.clean.equals(b.clean) and a.dropped.equals(b.dropped) and a.counts == b.counts
