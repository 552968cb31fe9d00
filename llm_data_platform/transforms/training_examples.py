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
from llm_data_platform.transforms.groups import whole_groups
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
    template: str = ""  # <id>@<version> recorded on every example ("" when set by hand)
    few_shot: tuple[tuple[str, str], ...] = ()  # turns placed before each conversation
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


# TrainingResult.info keys, in order; every one present (zero when nothing happened)
_INFO_KEYS = (
    "orphan_feedback",
    "messages_merged",
    "trailing_user_dropped",
    "system_messages_dropped",
    "blank_messages_dropped",
    "messages_without_conversation",
    "over_token_limit",
)


@dataclass(frozen=True)
class _MessageColumns:
    """Message rows (sorted by conversation, then turn) as Python lists, so a conversation is
    a ``[lo:hi]`` slice of each."""

    conversation_ids: list
    roles: list
    contents: list
    languages: list
    event_times: list


@dataclass(frozen=True)
class _Candidate:
    """A conversation that passed every check but the token limit (counted in one batch)."""

    conversation_id: str
    example: dict
    n_turns: int
    rating: int
    first_time: object


def _sorted_messages(clean: pa.Table, event_type: pa.ChunkedArray) -> _MessageColumns:
    """The message rows in turn order, so grouping and turn assembly need one pass."""
    messages = _sorted(
        clean.filter(pc.equal(event_type, "message")),
        [
            ("conversation_id", "ascending"),
            ("turn_index", "ascending"),
            ("event_time", "ascending"),
            ("event_id", "ascending"),
        ],
    )
    return _MessageColumns(
        conversation_ids=_col(messages, "conversation_id"),
        roles=_col(messages, "role"),
        contents=_col(messages, "content"),
        languages=_col(messages, "language"),
        event_times=_col(messages, "event_time"),
    )


def _group_by_conversation(conv_ids: list, info: Tally[str]) -> list[tuple[str, int, int]]:
    """(conversation_id, lo, hi) per run of equal ids; rows without an id are only counted,
    since they cannot be tied to feedback."""
    groups: list[tuple[str, int, int]] = []
    start = 0
    for i in range(1, len(conv_ids) + 1):
        if i == len(conv_ids) or conv_ids[i] != conv_ids[start]:
            if conv_ids[start] is None:
                info["messages_without_conversation"] += i - start
            else:
                groups.append((conv_ids[start], start, i))
            start = i
    return groups


def _judge_conversation(
    cid: str,
    lo: int,
    hi: int,
    messages: _MessageColumns,
    rating: int | None,
    config: TrainingConfig,
    allowed_languages: set[str],
    info: Tally[str],
) -> str | _Candidate:
    """The first rejection reason that applies (in ``REJECTION_REASONS`` order, token limit
    aside), or the candidate example; the order decides which reason a conversation counts as."""
    if rating is None:
        return "no_feedback"
    if rating < config.min_rating:
        return "low_rating"
    if not _languages_ok(
        messages.languages[lo:hi], allowed_languages, config.allow_undetermined_language
    ):
        return "non_english"
    turns = _assemble_turns(messages.roles[lo:hi], messages.contents[lo:hi], info)
    turn_roles = {role for role, _ in turns}
    if "user" not in turn_roles or "assistant" not in turn_roles:
        return "incomplete"
    example = format_chat_example(config.system_prompt, [*config.few_shot, *turns])
    if validate_chat_example(example):
        return "invalid_format"
    first_time = min((t for t in messages.event_times[lo:hi] if t is not None), default=None)
    return _Candidate(cid, example, len(turns), rating, first_time)


def _candidate_token_counts(candidates: list[_Candidate], count: Counter) -> list[int]:
    """Tokens per candidate example, counted in one batch (the tokenizer is fastest that way)."""
    texts: list[str] = []
    bounds: list[tuple[int, int]] = []
    for candidate in candidates:
        lo = len(texts)
        texts.extend(m["content"] for m in candidate.example["messages"])
        bounds.append((lo, len(texts)))
    token_counts = list(count(texts)) if texts else []
    return [int(sum(token_counts[lo:hi])) for lo, hi in bounds]


def _example_rows(
    candidates: list[_Candidate],
    token_totals: list[int],
    max_tokens: int | None,
    rejected: Tally[str],
    info: Tally[str],
    template: str = "",
) -> dict[str, list]:
    """Columns of ``schemas.TRAINING_EXAMPLES`` for the candidates within the token limit;
    those over it are counted as ``invalid_format``."""
    rows: dict[str, list] = {name: [] for name in schemas.TRAINING_EXAMPLES.names}
    for candidate, n_tokens in zip(candidates, token_totals, strict=True):
        if max_tokens is not None and n_tokens > max_tokens:
            rejected["invalid_format"] += 1
            info["over_token_limit"] += 1
            continue
        rejected["kept"] += 1
        rows["example_id"].append(candidate.conversation_id)
        rows["conversation_id"].append(candidate.conversation_id)
        rows["messages_json"].append(json.dumps(candidate.example, ensure_ascii=False))
        rows["n_turns"].append(candidate.n_turns)
        rows["n_tokens"].append(n_tokens)
        rows["rating"].append(candidate.rating)
        rows["split"].append(None)
        rows["event_time"].append(candidate.first_time)
        rows["template"].append(template)
    return rows


def _examples_table(rows: dict[str, list], config: TrainingConfig) -> pa.Table:
    """The examples with their train/validation split, sorted by example_id so output is
    deterministic."""
    examples = pa.Table.from_pydict(rows, schema=schemas.TRAINING_EXAMPLES)
    if examples.num_rows:
        split = assign_split(examples["example_id"], config.validation_fraction, config.split_seed)
        examples = examples.set_column(
            examples.schema.get_field_index("split"),
            schemas.TRAINING_EXAMPLES.field("split"),
            split,
        )
        examples = examples.sort_by([("example_id", "ascending")])
    return examples


def _checked_counts(rejected: Tally[str]) -> dict[str, int]:
    """``TrainingResult.rejected``, after checking that every conversation has one outcome."""
    counts = {
        "conversations_seen": int(rejected["conversations_seen"]),
        **{reason: int(rejected[reason]) for reason in REJECTION_REASONS},
        "kept": int(rejected["kept"]),
    }
    if counts["conversations_seen"] != counts["kept"] + sum(counts[r] for r in REJECTION_REASONS):
        raise RuntimeError(f"training example selection lost track of conversations: {counts}")
    return counts


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
    messages = _sorted_messages(clean, event_type)
    ratings = _latest_ratings(clean.filter(pc.equal(event_type, "feedback")))

    info: Tally[str] = Tally()
    rejected: Tally[str] = Tally()
    allowed_languages = set(config.languages)
    groups = _group_by_conversation(messages.conversation_ids, info)
    seen = {cid for cid, _, _ in groups}
    info["orphan_feedback"] = sum(1 for cid in ratings if cid not in seen)

    candidates: list[_Candidate] = []
    for cid, lo, hi in groups:
        rejected["conversations_seen"] += 1
        outcome = _judge_conversation(
            cid, lo, hi, messages, ratings.get(cid), config, allowed_languages, info
        )
        if isinstance(outcome, str):
            rejected[outcome] += 1
        else:
            candidates.append(outcome)

    token_totals = _candidate_token_counts(candidates, count)
    rows = _example_rows(
        candidates, token_totals, config.max_tokens, rejected, info, config.template or None
    )
    examples = _examples_table(rows, config)
    counts = _checked_counts(rejected)
    return TrainingResult(
        examples=examples, rejected=counts, info={k: int(info.get(k, 0)) for k in _INFO_KEYS}
    )


def whole_conversations(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Tables of whole conversations from batches of a table sorted by conversation."""
    return whole_groups(batches, "conversation_id")


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
