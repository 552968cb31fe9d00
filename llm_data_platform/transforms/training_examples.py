"""Best conversations → chat fine-tuning examples.

Plain functions, no Dagster import.

:func:`build_training_examples` takes rows of ``schemas.CONVERSATIONS_CLEAN`` (messages with
``event_type == "message"`` and feedback with ``event_type == "feedback"``) and gives every
conversation that has at least one message exactly one outcome, checked in this order:

1. ``no_feedback`` — no feedback row with a rating;
2. ``low_rating`` — its *latest* feedback (``event_time``, then ``source_file``,
   ``source_line``, ``event_id``) rates it below ``config.min_rating``;
3. ``non_english`` — a message's ``language`` is not in ``config.languages`` (``"und"``/null
   count as not in it unless ``config.allow_undetermined_language``);
4. ``incomplete`` — after assembling the turns (below) it lacks a user or an assistant message;
5. ``invalid_format`` — :func:`training_format.validate_chat_example` finds a problem, or the
   example has more than ``config.max_tokens`` tokens;
6. otherwise it is ``kept`` and becomes one row of ``examples``.

Invariant (checked on every call): ``conversations_seen == kept + sum(rejected reasons)``.

Turn assembly (messages ordered by ``turn_index``, then ``event_time``, ``event_id``):
system messages of the conversation are dropped (the configured system prompt replaces them),
blank messages are dropped, **consecutive messages of the same role are merged** (contents joined
by a blank line) rather than rejecting the conversation — users often send a question in two
messages — and trailing user messages (a question nobody answered) are dropped so the example
ends with the assistant. A conversation may start with an assistant greeting. These
modifications are counted in ``TrainingResult.info``.
"""

from __future__ import annotations

import json
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform import schemas
from llm_data_platform.transforms.training_format import (
    assign_split,
    format_chat_example,
    validate_chat_example,
)

Counter = Callable[[Sequence[str]], list[int]]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant for the Python programming language and its standard library "
    "documentation. Answer accurately and concisely, show short runnable code examples when they "
    "help, name the modules and functions you rely on, and say so plainly when you are not sure."
)

REJECTION_REASONS = (
    "no_feedback",
    "low_rating",
    "non_english",
    "incomplete",
    "invalid_format",
)
UNDETERMINED_LANGUAGES = frozenset({"und", ""})

_REQUIRED = ("event_type", "conversation_id", "turn_index", "role", "content", "rating")
# what build_training_examples reads of a conversations_clean partition
COLUMNS = (
    *_REQUIRED,
    "event_id",
    "event_time",
    "language",
    "source_file",
    "source_line",
)


@dataclass(frozen=True)
class TrainingConfig:
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    min_rating: int = 4
    languages: tuple[str, ...] = ("en",)
    validation_fraction: float = 0.1
    split_seed: str = "llm-data-platform-split-v1"
    max_tokens: int | None = None  # per example (sum of message contents); None: no limit
    # Accept messages tagged "und" (too short to tell, e.g. "thanks!") when the conversation's
    # other messages are in ``languages``. Off by default: every message must be in ``languages``.
    allow_undetermined_language: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.languages, str):
            object.__setattr__(self, "languages", (self.languages,))
        else:
            object.__setattr__(self, "languages", tuple(self.languages))
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1], got {self.validation_fraction}"
            )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive or None, got {self.max_tokens}")


@dataclass
class TrainingResult:
    examples: pa.Table  # schemas.TRAINING_EXAMPLES, sorted by example_id
    # conversations_seen, one count per REJECTION_REASONS entry, kept
    rejected: dict[str, int]
    # Not part of the invariant: orphan_feedback (feedback of conversations without messages
    # here), messages_merged, trailing_user_dropped, system_messages_dropped,
    # blank_messages_dropped, messages_without_conversation.
    info: dict[str, int] = field(default_factory=dict)


def _col(table: pa.Table, name: str) -> list:
    return table[name].to_pylist() if name in table.column_names else [None] * table.num_rows


def _sorted(table: pa.Table, keys: list[tuple[str, str]]) -> pa.Table:
    keys = [(k, order) for k, order in keys if k in table.column_names]
    if not keys or table.num_rows == 0:
        return table
    return table.take(pc.sort_indices(table, sort_keys=keys))  # nulls last (Arrow's default)


def _latest_ratings(feedback: pa.Table) -> dict[str, int]:
    feedback = feedback.filter(pc.is_valid(feedback["rating"]))
    feedback = _sorted(
        feedback,
        [
            ("conversation_id", "ascending"),
            ("event_time", "descending"),
            ("source_file", "descending"),
            ("source_line", "descending"),
            ("event_id", "descending"),
        ],
    )
    latest: dict[str, int] = {}
    for cid, rating in zip(
        _col(feedback, "conversation_id"), _col(feedback, "rating"), strict=True
    ):
        if cid is not None and cid not in latest:
            latest[cid] = int(rating)
    return latest


def build_training_examples(
    clean: pa.Table, config: TrainingConfig | None = None, count: Counter | None = None
) -> TrainingResult:
    """Chat fine-tuning examples from one partition of ``conversations_clean``."""
    config = config or TrainingConfig()
    if count is None:
        from llm_data_platform.transforms.tokenizer import count_tokens

        count = count_tokens
    missing = [c for c in _REQUIRED if c not in clean.column_names]
    if missing:
        raise ValueError(f"conversations table lacks column(s) {missing}")

    event_type = pc.fill_null(clean["event_type"], "")
    messages = _sorted(
        clean.filter(pc.equal(event_type, "message")),
        [
            ("conversation_id", "ascending"),
            ("turn_index", "ascending"),
            ("event_time", "ascending"),
            ("event_id", "ascending"),
        ],
    )
    ratings = _latest_ratings(clean.filter(pc.equal(event_type, "feedback")))

    info: Tally[str] = Tally()
    rejected: Tally[str] = Tally()
    languages = set(config.languages)

    # Group the (sorted) message rows by conversation.
    conv_ids = _col(messages, "conversation_id")
    roles = _col(messages, "role")
    contents = _col(messages, "content")
    langs = _col(messages, "language")
    times = _col(messages, "event_time")
    groups: list[tuple[str, int, int]] = []
    start = 0
    for i in range(1, len(conv_ids) + 1):
        if i == len(conv_ids) or conv_ids[i] != conv_ids[start]:
            if conv_ids[start] is None:
                info["messages_without_conversation"] += i - start
            else:
                groups.append((conv_ids[start], start, i))
            start = i
    seen = {cid for cid, _, _ in groups}
    info["orphan_feedback"] = sum(1 for cid in ratings if cid not in seen)

    candidates: list[tuple[str, dict, int, int, object]] = []  # id, example, n_turns, rating, t0
    for cid, lo, hi in groups:
        rejected["conversations_seen"] += 1
        rating = ratings.get(cid)
        if rating is None:
            rejected["no_feedback"] += 1
            continue
        if rating < config.min_rating:
            rejected["low_rating"] += 1
            continue
        if not _languages_ok(langs[lo:hi], languages, config.allow_undetermined_language):
            rejected["non_english"] += 1
            continue
        turns = _assemble_turns(roles[lo:hi], contents[lo:hi], info)
        turn_roles = {role for role, _ in turns}
        if "user" not in turn_roles or "assistant" not in turn_roles:
            rejected["incomplete"] += 1
            continue
        example = format_chat_example(config.system_prompt, turns)
        if validate_chat_example(example):
            rejected["invalid_format"] += 1
            continue
        first_time = min((t for t in times[lo:hi] if t is not None), default=None)
        candidates.append((cid, example, len(turns), rating, first_time))

    # Token counts of all candidate examples in one batch.
    texts: list[str] = []
    bounds: list[tuple[int, int]] = []
    for _, example, _, _, _ in candidates:
        lo = len(texts)
        texts.extend(m["content"] for m in example["messages"])
        bounds.append((lo, len(texts)))
    token_counts = list(count(texts)) if texts else []
    rows: dict[str, list] = {name: [] for name in schemas.TRAINING_EXAMPLES.names}
    for (cid, example, n_turns, rating, first_time), (lo, hi) in zip(
        candidates, bounds, strict=True
    ):
        n_tokens = int(sum(token_counts[lo:hi]))
        if config.max_tokens is not None and n_tokens > config.max_tokens:
            rejected["invalid_format"] += 1
            info["over_token_limit"] += 1
            continue
        rejected["kept"] += 1
        rows["example_id"].append(cid)
        rows["conversation_id"].append(cid)
        rows["messages_json"].append(json.dumps(example, ensure_ascii=False))
        rows["n_turns"].append(n_turns)
        rows["n_tokens"].append(n_tokens)
        rows["rating"].append(rating)
        rows["split"].append(None)
        rows["event_time"].append(first_time)

    examples = pa.Table.from_pydict(rows, schema=schemas.TRAINING_EXAMPLES)
    if examples.num_rows:
        split = assign_split(examples["example_id"], config.validation_fraction, config.split_seed)
        examples = examples.set_column(
            examples.schema.get_field_index("split"),
            schemas.TRAINING_EXAMPLES.field("split"),
            split,
        )
        examples = examples.sort_by([("example_id", "ascending")])

    counts = {
        "conversations_seen": int(rejected["conversations_seen"]),
        **{reason: int(rejected[reason]) for reason in REJECTION_REASONS},
        "kept": int(rejected["kept"]),
    }
    if counts["conversations_seen"] != counts["kept"] + sum(counts[r] for r in REJECTION_REASONS):
        raise RuntimeError(f"training example selection lost track of conversations: {counts}")
    info_keys = (
        "orphan_feedback",
        "messages_merged",
        "trailing_user_dropped",
        "system_messages_dropped",
        "blank_messages_dropped",
        "messages_without_conversation",
        "over_token_limit",
    )
    return TrainingResult(
        examples=examples, rejected=counts, info={k: int(info.get(k, 0)) for k in info_keys}
    )


def whole_conversations(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Record batches of a table sorted by ``conversation_id`` → tables of whole
    conversations (a conversation cut by a batch boundary is carried into the next one), so
    a day is built a chunk at a time in bounded memory."""
    carry: pa.Table | None = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table])
        if table.num_rows == 0:
            continue
        ids = table["conversation_id"]
        last = ids[-1]
        if last.is_valid:
            cut = pc.index(ids, last).as_py()
        else:
            cut = len(ids) - int(pc.sum(pc.is_null(ids).cast(pa.int64())).as_py() or 0)
        if cut > 0:
            yield table.slice(0, cut)
        carry = table.slice(cut)
    if carry is not None and carry.num_rows:
        yield carry


def _languages_ok(langs: list, allowed: set[str], allow_undetermined: bool) -> bool:
    for lang in langs:
        if lang in allowed:
            continue
        if allow_undetermined and (lang is None or lang in UNDETERMINED_LANGUAGES):
            continue
        return False
    if allow_undetermined:  # at least one message must actually be in an allowed language
        return any(lang in allowed for lang in langs)
    return True


def _assemble_turns(roles: list, contents: list, info: Tally[str]) -> list[tuple[str, str]]:
    turns: list[tuple[str, str]] = []
    for role, content in zip(roles, contents, strict=True):
        if role == "system":
            info["system_messages_dropped"] += 1
            continue
        if content is None or not str(content).strip():
            info["blank_messages_dropped"] += 1
            continue
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n\n{content}")
            info["messages_merged"] += 1
            continue
        turns.append((role, content))
    while turns and turns[-1][0] == "user":
        turns.pop()
        info["trailing_user_dropped"] += 1
    return turns
