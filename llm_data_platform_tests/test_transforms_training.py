"""Training transforms: chat format validation, splits, example selection (no Dagster)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from llm_data_platform import schemas
from llm_data_platform.transforms.training_examples import (
    DEFAULT_SYSTEM_PROMPT,
    EXAMPLES,
    REJECTION_REASONS,
    TrainingConfig,
    build_training_examples,
    whole_conversations,
)
from llm_data_platform.transforms.training_format import (
    assign_split,
    count_example_tokens,
    format_chat_example,
    invalid_lines,
    validate_chat_example,
)


def words(texts):
    """A stand-in token counter: whitespace-separated words."""
    return [len(t.split()) for t in texts]


def _valid() -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You help."},
            {"role": "user", "content": "How do I sort a list?", "name": "ada"},
            {"role": "assistant", "content": "Use sorted(xs).", "weight": 1},
        ]
    }


# --------------------------------------------------------------------------------------------
# validate_chat_example
# --------------------------------------------------------------------------------------------


def test_valid_example_passes() -> None:
    assert validate_chat_example(_valid()) == []
    assert validate_chat_example(_valid(), max_tokens=100, count=words) == []


def _with(messages: list[dict]) -> dict:
    return {"messages": messages}


U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}
S = {"role": "system", "content": "s"}


@pytest.mark.parametrize(
    ("example", "fragment"),
    [
        ("not a dict", "must be a JSON object"),
        ({**_valid(), "tools": []}, "unknown top-level key(s) ['tools']"),
        ({}, "missing 'messages'"),
        ({"messages": "hi"}, "'messages' must be a list"),
        ({"messages": []}, "'messages' is empty"),
        (_with([U, "text", A]), "messages[1] must be an object"),
        (_with([U, {**A, "extra": 1}]), "messages[1] has unknown key(s) ['extra']"),
        (_with([{"content": "q"}, A]), "messages[0] has no 'role'"),
        (_with([{"role": "tool", "content": "q"}, A]), "invalid role 'tool'"),
        (_with([{"role": "user"}, A]), "messages[0] has no 'content'"),
        (_with([{"role": "user", "content": ["q"]}, A]), "content must be a string"),
        (_with([{"role": "user", "content": "  "}, A]), "messages[0] content is empty"),
        (_with([{**U, "name": ""}, A]), "'name' must be a non-empty string"),
        (_with([U, {**A, "weight": 2}]), "'weight' must be 0 or 1"),
        (_with([U, {**A, "weight": True}]), "'weight' must be 0 or 1"),
        (_with([{**U, "weight": 1}, A]), "'weight' is only allowed on assistant"),
        (_with([U, S, A]), "messages[1] is a system message: only the first may be"),
        (_with([S, U]), "no assistant message"),
        (_with([U, A, U]), "last message must be from the assistant, got 'user'"),
    ],
)
def test_validate_catches_each_error_class(example, fragment: str) -> None:
    errors = validate_chat_example(example)
    assert any(fragment in e for e in errors), errors
    # the same line among valid ones, checked by Arrow over all lines: found, same reason
    good = json.dumps(_valid())
    lines = pa.array([good, json.dumps(example), good, good])
    assert invalid_lines(lines) == [(1, errors[0])]


def test_invalid_lines_passes_valid_lines_and_catches_broken_json() -> None:
    good = [json.dumps(_valid()), json.dumps(_with([S, U, A, U, {**A, "weight": 0}]))]
    assert invalid_lines(pa.chunked_array([good, good])) == []
    found = invalid_lines(pa.array([*good, '{"messages": [', None]))
    assert [i for i, _ in found] == [2, 3] and found[0][1].startswith("not JSON")


def test_validate_token_limit() -> None:
    example = format_chat_example("one two", [("user", "three four five"), ("assistant", "six")])
    assert count_example_tokens(example, words) == 6
    assert validate_chat_example(example, max_tokens=6, count=words) == []
    errors = validate_chat_example(example, max_tokens=5, count=words)
    assert errors == ["example has 6 tokens, more than the limit of 5"]
    # default counter: the target model's tokenizer (o200k_base)
    assert validate_chat_example(example, max_tokens=1) != []


def test_format_chat_example() -> None:
    assert format_chat_example("sys", [("user", "q"), ("assistant", "a")]) == {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
        ]
    }
    assert format_chat_example("", [("user", "q"), ("assistant", "a")])["messages"][0] == {
        "role": "user",
        "content": "q",
    }


# --------------------------------------------------------------------------------------------
# assign_split
# --------------------------------------------------------------------------------------------


def test_split_is_deterministic_per_id() -> None:
    ids = [f"conv-{i}" for i in range(10_000)]
    whole = assign_split(pa.array(ids), 0.1, "seed-a").to_pylist()
    # independent of order and batch
    reversed_ = assign_split(pa.array(ids[::-1]), 0.1, "seed-a").to_pylist()[::-1]
    batched = (
        assign_split(pa.array(ids[:3000]), 0.1, "seed-a").to_pylist()
        + assign_split(pa.chunked_array([ids[3000:5000], ids[5000:]]), 0.1, "seed-a").to_pylist()
    )
    assert whole == reversed_ == batched
    assert set(whole) == {"train", "validation"}
    assert 0.08 < whole.count("validation") / len(ids) < 0.12
    # the seed matters; the extremes are exact
    assert assign_split(pa.array(ids), 0.1, "seed-b").to_pylist() != whole
    assert set(assign_split(pa.array(ids[:100]), 0.0, "s").to_pylist()) == {"train"}
    assert set(assign_split(pa.array(ids[:100]), 1.0, "s").to_pylist()) == {"validation"}
    assert assign_split(pa.array(["x", None]), 0.5, "s").to_pylist()[1] is None
    with pytest.raises(ValueError):
        assign_split(pa.array(ids[:2]), 1.5, "s")


# --------------------------------------------------------------------------------------------
# build_training_examples
# --------------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)


class _Conversations:
    """Builds a CONVERSATIONS_CLEAN table row by row."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def msg(self, cid: str, turn: int, role: str, content: str, lang: str = "en") -> None:
        self.rows.append(
            {
                "event_id": f"{cid}-m{turn}",
                "event_type": "message",
                "conversation_id": cid,
                "turn_index": turn,
                "role": role,
                "content": content,
                "language": lang,
                "event_time": T0 + timedelta(minutes=turn),
            }
        )

    def feedback(self, cid: str, rating: int, minute: int) -> None:
        self.rows.append(
            {
                "event_id": f"{cid}-f{minute}",
                "event_type": "feedback",
                "conversation_id": cid,
                "rating": rating,
                "event_time": T0 + timedelta(minutes=minute),
            }
        )

    def table(self) -> pa.Table:
        rows = [
            {
                "quality_score": 0.9,
                "pii_redactions": 0,
                "content_hash": "h",
                "user_id": "u",
                "source_file": "f",
                "source_line": i + 1,
                **r,
            }
            for i, r in enumerate(self.rows)
        ]
        return pa.Table.from_pylist(rows, schema=schemas.CONVERSATIONS_CLEAN)


@pytest.fixture
def conversations() -> pa.Table:
    c = _Conversations()
    # kept: latest rating 5 (an earlier 2 is overridden); rows arrive out of turn order
    c.msg("keep", 1, "assistant", "Use sorted(xs) or xs.sort().")
    c.msg("keep", 0, "user", "How do I sort a list?")
    c.feedback("keep", 2, 5)
    c.feedback("keep", 5, 9)
    # kept after repair: two user messages merged, trailing unanswered user message dropped,
    # the conversation's own system message replaced by the configured prompt
    c.msg("repair", 0, "system", "old prompt")
    c.msg("repair", 1, "user", "I have a dict.")
    c.msg("repair", 2, "user", "How do I iterate over it?")
    c.msg("repair", 3, "assistant", "for key, value in d.items(): ...")
    c.msg("repair", 4, "user", "thanks")
    c.feedback("repair", 4, 10)
    # low rating: the latest feedback (2) wins over an earlier 5
    c.msg("low", 0, "user", "q")
    c.msg("low", 1, "assistant", "a")
    c.feedback("low", 5, 3)
    c.feedback("low", 2, 8)
    # no feedback at all
    c.msg("nofb", 0, "user", "q")
    c.msg("nofb", 1, "assistant", "a")
    # non-English message
    c.msg("fr", 0, "user", "Comment trier une liste ?", lang="fr")
    c.msg("fr", 1, "assistant", "Utilisez sorted().", lang="fr")
    c.feedback("fr", 5, 3)
    # incomplete: no assistant answer at all
    c.msg("noans", 0, "user", "hello?")
    c.msg("noans", 1, "user", "anyone?")
    c.feedback("noans", 5, 3)
    # invalid format: a role the chat format does not allow
    c.msg("badrole", 0, "user", "q")
    c.msg("badrole", 1, "tool", "tool output")
    c.msg("badrole", 2, "assistant", "a")
    c.feedback("badrole", 5, 4)
    # feedback for a conversation whose messages are not in this partition
    c.feedback("elsewhere", 5, 1)
    return c.table()


def test_build_training_examples_selection(conversations: pa.Table) -> None:
    config = TrainingConfig(system_prompt="SYS", split_seed="s", validation_fraction=0.5)
    result = build_training_examples(conversations, config, count=words)

    assert result.rejected == {
        **dict.fromkeys(REJECTION_REASONS, 0),
        "conversations_seen": 7,
        "no_feedback": 1,
        "low_rating": 1,
        "non_english": 1,
        "incomplete": 1,
        "invalid_format": 1,
        "kept": 2,
    }
    log = {r["conversation_id"]: r["outcome"] for r in result.log.to_pylist()}
    assert log == {
        "keep": "kept",
        "repair": "kept",
        "low": "low_rating",
        "nofb": "no_feedback",
        "fr": "non_english",
        "noans": "incomplete",
        "badrole": "invalid_format",
    }
    r = result.rejected
    assert r["conversations_seen"] == r["kept"] + sum(r[k] for k in REJECTION_REASONS)
    assert result.info["orphan_feedback"] == 1
    assert result.info["messages_merged"] == 2  # repair's two user messages, noans' two
    assert result.info["trailing_user_dropped"] == 2  # repair's "thanks", noans' merged turn
    assert result.info["system_messages_dropped"] == 1

    examples = result.examples
    assert examples.schema == EXAMPLES
    assert examples.select(schemas.TRAINING_EXAMPLES.names).schema == schemas.TRAINING_EXAMPLES
    rows = {row["example_id"]: row for row in examples.to_pylist()}
    assert list(rows) == ["keep", "repair"]

    keep = rows["keep"]
    assert json.loads(keep["messages_json"]) == {
        "messages": [
            {"role": "system", "content": "SYS"},
            {"role": "user", "content": "How do I sort a list?"},
            {"role": "assistant", "content": "Use sorted(xs) or xs.sort()."},
        ]
    }
    assert keep["conversation_id"] == "keep" and keep["rating"] == 5 and keep["n_turns"] == 2
    # contents (1 + 5 + 5 words) + a role word and 3 tokens per message + 3 per example
    assert keep["n_tokens"] == 1 + 5 + 5 + 3 * (1 + 3) + 3
    for row in rows.values():  # Arrow's JSON is json.dumps' byte for byte
        assert row["messages_json"] == json.dumps(
            json.loads(row["messages_json"]), ensure_ascii=False
        )
    assert keep["event_time"] == T0  # the first message's time
    assert keep["split"] in ("train", "validation")

    repair = json.loads(rows["repair"]["messages_json"])["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant"]
    assert repair[0]["content"] == "SYS"
    assert repair[1]["content"] == "I have a dict.\n\nHow do I iterate over it?"
    for row in rows.values():
        assert validate_chat_example(json.loads(row["messages_json"])) == []

    # split comes from assign_split on the example id: same answer in any batch
    expected = assign_split(examples["example_id"], 0.5, "s").to_pylist()
    assert examples["split"].to_pylist() == expected


def test_training_thresholds_languages_and_token_limit(conversations: pa.Table) -> None:
    lenient = TrainingConfig(min_rating=2, languages=("en", "fr"))
    r = build_training_examples(conversations, lenient, count=words).rejected
    assert r["low_rating"] == 0 and r["non_english"] == 0 and r["kept"] == 4

    # examples over the context limit are rejected as such (keep: 26 tokens, repair: 38)
    tight = TrainingConfig(system_prompt="SYS", max_tokens=30)
    result = build_training_examples(conversations, tight, count=words)
    assert result.rejected["kept"] == 1 and result.rejected["over_context_limit"] == 1
    assert result.rejected["invalid_format"] == 1


def test_undetermined_language_option() -> None:
    c = _Conversations()
    c.msg("c", 0, "user", "How do I read a file in Python?")
    c.msg("c", 1, "assistant", "Use open(path).read().")
    c.msg("c", 2, "user", "thx", lang="und")
    c.msg("c", 3, "assistant", "You're welcome.")
    c.feedback("c", 5, 9)
    table = c.table()
    assert (
        build_training_examples(table, TrainingConfig(), count=words).rejected["non_english"] == 1
    )
    kept = build_training_examples(
        table, TrainingConfig(allow_undetermined_language=True), count=words
    )
    assert kept.rejected["kept"] == 1


def test_build_training_examples_default_tokenizer_and_empty_input() -> None:
    c = _Conversations()
    c.msg("c", 0, "user", "How do I sort a list?")
    c.msg("c", 1, "assistant", "Use sorted().")
    c.feedback("c", 4, 3)
    result = build_training_examples(c.table())
    row = result.examples.to_pylist()[0]
    assert json.loads(row["messages_json"])["messages"][0]["content"] == DEFAULT_SYSTEM_PROMPT
    assert row["n_tokens"] > 10

    empty = build_training_examples(schemas.CONVERSATIONS_CLEAN.empty_table())
    assert empty.examples.num_rows == 0 and empty.examples.schema == EXAMPLES
    assert empty.rejected["conversations_seen"] == 0 and empty.rejected["kept"] == 0


@pytest.mark.parametrize("rows_per_batch", [1, 2, 3, 7, 1000])
def test_a_day_built_in_chunks_of_whole_conversations_equals_the_day_built_whole(
    conversations: pa.Table, rows_per_batch: int
) -> None:
    """The asset reads a day in record batches; no conversation is cut, nothing changes."""
    config = TrainingConfig(system_prompt="SYS", split_seed="s", validation_fraction=0.5)
    day = conversations.sort_by([("conversation_id", "ascending"), ("event_time", "ascending")])
    whole = build_training_examples(day, config, count=words)
    chunks = list(whole_conversations(day.to_batches(max_chunksize=rows_per_batch)))
    seen = [set(c["conversation_id"].to_pylist()) for c in chunks]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    assert sum(c.num_rows for c in chunks) == day.num_rows
    parts = [build_training_examples(c, config, count=words) for c in chunks]
    examples = pa.concat_tables([p.examples for p in parts]).sort_by("example_id")
    assert examples.equals(whole.examples)
    for reason in ("conversations_seen", "kept", *REJECTION_REASONS):
        assert sum(p.rejected[reason] for p in parts) == whole.rejected[reason], reason
