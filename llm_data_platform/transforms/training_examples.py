"""Best conversations → chat fine-tuning examples, with a recorded outcome for every one.

Plain functions, no Dagster import; Arrow and numpy over the whole chunk (no Python per row).

:func:`build_training_examples` takes rows of ``schemas.CONVERSATIONS_CLEAN`` (messages with
``event_type == "message"`` and feedback with ``event_type == "feedback"``) and gives every
conversation that has at least one message exactly one outcome, the first rule that applies
in ``REJECTION_REASONS`` order (a rule switched off by its setting never applies):

1. ``no_feedback`` — no feedback row with a rating;
2. ``low_rating`` — its *latest* feedback (``event_time``, then ``source_file``,
   ``source_line``, ``event_id``) rates it below ``min_rating``;
3. ``non_english`` — a message's ``language`` is not in ``languages`` (``"und"``/null count as
   not in it unless ``allow_undetermined_language``, and then one message must be in it);
4. ``pii_redacted`` — a message had PII replaced (``pii_redactions > 0``) and
   ``allow_pii_redacted`` is off: placeholders like ``[EMAIL]`` would be learnt as answers;
5. ``low_quality`` — the mean ``quality_score`` of its messages is below ``min_quality``;
6. ``incomplete`` — after assembling the turns (below) it lacks a user or an assistant turn;
7. ``unresolved`` — with ``require_resolved``, a trailing user turn nobody answered asks a
   question (holds a ``?``); an unanswered "thanks!" is trimmed, not a reason;
8. ``invalid_format`` — a role other than user/assistant, or it does not end with the assistant;
9. ``length`` — fewer than ``min_turns`` or more than ``max_turns`` turns;
10. ``over_context_limit`` — more than ``max_tokens`` tokens of the target model; with
    ``over_limit="truncate"`` its oldest turns are dropped instead (a user turn first) while
    the rest fits, and only a conversation whose last exchange alone is too long is rejected;
11. otherwise it is ``kept`` and becomes one row of ``examples``.

Invariant (checked on every call): ``conversations_seen == kept + sum(rejected reasons)``;
``log`` holds one row per conversation seen with its outcome.

Turn assembly (messages ordered by ``turn_index``, then ``event_time``, ``event_id``): system
messages are dropped (the template's system prompt replaces them), blank messages are dropped,
consecutive messages of the same role are merged (joined by a blank line), and trailing user
messages are dropped so the example ends with the assistant. Counted in ``info`` (over the
conversations that reach assembly).

Tokens are the target model's (``transforms/target_tokenizer``), counted as a chat request:
per message content + role + 3, plus 3 per example, the template's system and few-shot turns
included. ``messages_json`` is written by Arrow string kernels and equals
``json.dumps(example, ensure_ascii=False)`` byte for byte.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform import schemas
from llm_data_platform.transforms.groups import whole_groups
from llm_data_platform.transforms.target_tokenizer import count_tokens
from llm_data_platform.transforms.training_format import (
    assign_split,
    format_chat_example,
    validate_chat_example,
)
from llm_data_platform.transforms.training_turns import (
    OUTCOMES,
    REJECTION_REASONS,
    Conversations,
    Counter,
    Turns,
    any_per_group_of,
    as_numpy,
    decide,
    fit_context,
    is_role,
    messages_json,
    only_undecided,
    token_costs,
)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant for the Python programming language and its standard library "
    "documentation. Answer accurately and concisely, show short runnable code examples when they "
    "help, name the modules and functions you rely on, and say so plainly when you are not sure."
)

UNDETERMINED_LANGUAGES = ("und", "")
OVER_LIMIT_RULES = ("drop", "truncate")

# The examples table: the lake contract plus the conversation's quality, for ranking.
EXAMPLES = schemas.TRAINING_EXAMPLES.append(pa.field("quality_score", pa.float32()))
# One row per conversation seen: what became of it and why (the training_selection_log).
SELECTION_LOG = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("outcome", pa.string()),  # "kept" or the reason it was not
        ("detail", pa.string()),  # e.g. the example it duplicates, turns truncated
        ("rating", pa.int8()),
        ("quality_score", pa.float32()),
        ("n_turns", pa.int32()),
        ("n_tokens", pa.int32()),  # null when rejected before tokens were counted
        ("event_time", schemas.TS),
    ]
)

_REQUIRED = ("event_type", "conversation_id", "turn_index", "role", "content", "rating")
# what build_training_examples reads of a conversations_clean partition
COLUMNS = (
    *_REQUIRED,
    "event_id",
    "event_time",
    "language",
    "quality_score",
    "pii_redactions",
    "source_file",
    "source_line",
)
_INFO_KEYS = (
    "orphan_feedback",
    "messages_merged",
    "trailing_user_dropped",
    "system_messages_dropped",
    "blank_messages_dropped",
    "messages_without_conversation",
    "truncated",
    "turns_truncated",
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
    max_tokens: int | None = None  # per example, target-model tokens; None: no limit
    over_limit: str = "drop"  # or "truncate" (oldest turns first)
    encoding: str = "o200k_base"  # the target model's
    # Accept messages tagged "und" (too short to tell, e.g. "thanks!") when the conversation's
    # other messages are in ``languages``. Off by default: every message must be in ``languages``.
    allow_undetermined_language: bool = False
    allow_pii_redacted: bool = True
    min_quality: float = 0.0  # mean quality_score of the conversation's messages
    require_resolved: bool = False
    min_turns: int = 2
    max_turns: int = 0  # 0: no limit

    def __post_init__(self) -> None:
        languages = (self.languages,) if isinstance(self.languages, str) else self.languages
        object.__setattr__(self, "languages", tuple(languages))
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1], got {self.validation_fraction}"
            )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive or None, got {self.max_tokens}")
        if self.over_limit not in OVER_LIMIT_RULES:
            raise ValueError(f"over_limit must be one of {OVER_LIMIT_RULES}: {self.over_limit!r}")
        prefix = format_chat_example(self.system_prompt, [*self.few_shot, ("assistant", "x")])
        errors = validate_chat_example(prefix)
        if errors:
            raise ValueError(f"the template's system prompt / few-shot turns: {errors[0]}")


@dataclass
class TrainingResult:
    examples: pa.Table  # EXAMPLES, sorted by example_id
    rejected: dict[str, int]  # conversations_seen, one count per REJECTION_REASONS, kept
    info: dict[str, int] = field(default_factory=dict)  # _INFO_KEYS; not in the invariant
    log: pa.Table = field(default_factory=SELECTION_LOG.empty_table)  # one row per conversation


def _sorted(table: pa.Table, keys: list[tuple[str, str]]) -> pa.Table:
    keys = [(k, order) for k, order in keys if k in table.column_names]
    if not keys or table.num_rows == 0:
        return table
    return table.take(pc.sort_indices(table, sort_keys=keys))  # nulls last (Arrow's default)


def _column(table: pa.Table, name: str, type_: pa.DataType) -> pa.ChunkedArray:
    if name in table.column_names:
        return table[name]
    return pa.chunked_array([pa.nulls(table.num_rows, type_)], type_)


def _latest_ratings(feedback: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(conversation ids, their latest rating), one per rated conversation."""
    feedback = feedback.filter(
        pc.and_(pc.is_valid(feedback["rating"]), pc.is_valid(feedback["conversation_id"]))
    )
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
    ids = feedback["conversation_id"].combine_chunks()
    first = _run_starts(ids)
    return ids.filter(first), feedback["rating"].combine_chunks().filter(first)


def _run_starts(ids: pa.Array) -> pa.Array:
    """True where a row starts a run of equal values (``ids`` sorted)."""
    if len(ids) == 0:
        return pa.array([], pa.bool_())
    differs = pc.fill_null(pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)), True)
    return pa.concat_arrays([pa.array([True]), differs.cast(pa.bool_())])


def _conversations(messages: pa.Table, ratings: tuple[pa.Array, pa.Array]) -> Conversations:
    cids = messages["conversation_id"].combine_chunks()
    starts = _run_starts(cids).to_numpy(zero_copy_only=False)
    group = np.cumsum(starts) - 1
    ids = cids.filter(pa.array(starts))
    n = len(ids)
    where = as_numpy(pc.index_in(ids, value_set=ratings[0]), -1)
    rating = np.full(n, -1, np.int64)
    if len(ratings[1]):
        rating = np.where(
            where >= 0, as_numpy(ratings[1], 0).astype(np.int64)[np.maximum(where, 0)], -1
        )
    scores = _column(messages, "quality_score", pa.float32())
    valid = as_numpy(pc.is_valid(scores), False)
    total = np.bincount(group, weights=np.where(valid, as_numpy(scores, 0.0), 0.0), minlength=n)
    scored = np.bincount(group, weights=valid, minlength=n)
    quality = np.divide(total, scored, out=np.zeros(n), where=scored > 0)
    times = pc.fill_null(messages["event_time"].cast(pa.int64()), np.iinfo(np.int64).max)
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, group, times.to_numpy())
    first_time = pa.array(first, pa.int64(), mask=first == np.iinfo(np.int64).max)
    code = np.zeros(n, np.int8)
    return Conversations(ids, group, rating, quality, first_time.cast(schemas.TS), code)


def _any_per_group(conv: Conversations, rows: np.ndarray) -> np.ndarray:
    return np.bincount(conv.group, weights=rows, minlength=len(conv.ids)) > 0


def _apply_row_rules(conv: Conversations, messages: pa.Table, config: TrainingConfig) -> None:
    """Rules 1-5, decided on the message rows."""
    decide(conv, "no_feedback", conv.rating < 0)
    decide(conv, "low_rating", conv.rating < config.min_rating)
    langs = messages["language"] if "language" in messages.column_names else None
    if langs is not None:
        allowed = as_numpy(pc.is_in(langs, value_set=pa.array(config.languages)), False)
        blank = pc.fill_null(langs, "")
        und = as_numpy(pc.is_in(blank, value_set=pa.array(UNDETERMINED_LANGUAGES)), False)
        bad = ~allowed & ~(config.allow_undetermined_language & und)
        wrong = _any_per_group(conv, bad)
        if config.allow_undetermined_language:
            wrong |= ~_any_per_group(conv, allowed)
        decide(conv, "non_english", wrong)
    if not config.allow_pii_redacted:
        redacted = as_numpy(_column(messages, "pii_redactions", pa.int32()), 0) > 0
        decide(conv, "pii_redacted", _any_per_group(conv, redacted))
    decide(conv, "low_quality", conv.quality < config.min_quality)


def _assemble(
    conv: Conversations, messages: pa.Table, config: TrainingConfig, info: Tally[str]
) -> Turns:
    """Turn assembly (merge, trim) for the conversations still undecided, then rules 6-8."""
    eligible = conv.undecided()[conv.group]
    role = pc.fill_null(messages["role"], "").combine_chunks()
    content = pc.fill_null(messages["content"], "").combine_chunks()
    system = as_numpy(pc.equal(role, "system"), False) & eligible
    blank = ~system & eligible & as_numpy(pc.equal(pc.utf8_trim_whitespace(content), ""), True)
    info["system_messages_dropped"] += int(system.sum())
    info["blank_messages_dropped"] += int(blank.sum())
    keep = eligible & ~system & ~blank
    group, role, content = conv.group[keep], role.filter(keep), content.filter(keep)
    role_code = role.dictionary_encode().indices.to_numpy(zero_copy_only=False)
    new_turn = np.ones(len(group), bool)
    new_turn[1:] = (group[1:] != group[:-1]) | (role_code[1:] != role_code[:-1])
    info["messages_merged"] += int((~new_turn).sum())
    starts = np.flatnonzero(new_turn)
    offsets = pa.array(np.append(starts, len(group)).astype(np.int32))
    merged = pc.binary_join(pa.ListArray.from_arrays(offsets, content), "\n\n")
    turns = Turns(group[starts], role.filter(pa.array(new_turn)), merged)
    return _trim_trailing_users(conv, turns, config, info)


def _trim_trailing_users(
    conv: Conversations, turns: Turns, config: TrainingConfig, info: Tally[str]
) -> Turns:
    n = len(conv.ids)
    position = np.arange(len(turns.group))
    is_user = is_role(turns.role, "user")
    last_other = np.full(n, -1)
    np.maximum.at(last_other, turns.group[~is_user], position[~is_user])
    trailing = position > last_other[turns.group]
    info["trailing_user_dropped"] += int(trailing.sum())
    asks = as_numpy(pc.match_substring(turns.content, "?"), False) & trailing
    kept = Turns(
        turns.group[~trailing],
        turns.role.filter(pa.array(~trailing)),
        turns.content.filter(pa.array(~trailing)),
    )
    user, answer = is_role(kept.role, "user"), is_role(kept.role, "assistant")
    users = np.bincount(kept.group, weights=user, minlength=n)
    answers = np.bincount(kept.group, weights=answer, minlength=n)
    others = np.bincount(kept.group, weights=~user & ~answer, minlength=n)
    count = np.bincount(kept.group, minlength=n)
    decide(conv, "incomplete", (users == 0) | (answers == 0))
    if config.require_resolved:
        decide(conv, "unresolved", any_per_group_of(asks, turns.group, n))
    decide(conv, "invalid_format", others > 0)
    too_long = (count > config.max_turns) if config.max_turns else np.zeros(n, bool)
    decide(conv, "length", (count < config.min_turns) | too_long)
    return kept


def _examples(
    conv: Conversations, turns: Turns, cost: np.ndarray, base: int, config: TrainingConfig
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The kept conversations' rows (in conversation id order), their turns and tokens."""
    kept = conv.undecided()
    conv.code[kept] = OUTCOMES.index("kept")
    index = np.cumsum(kept) - 1  # conversation -> its example's row
    group = index[turns.group]
    n = int(kept.sum())
    n_turns = np.bincount(group, minlength=n).astype(np.int32)
    tokens = (np.bincount(group, weights=cost, minlength=n) + base).astype(np.int32)
    ids = conv.ids.filter(pa.array(kept))
    columns = {
        "example_id": ids,
        "conversation_id": ids,
        "messages_json": messages_json(Turns(group, turns.role, turns.content), n, config),
        "n_turns": pa.array(n_turns),
        "n_tokens": pa.array(tokens),
        "rating": pa.array(conv.rating[kept].astype(np.int8)),
        "split": assign_split(ids, config.validation_fraction, config.split_seed),
        "event_time": conv.first_time.filter(pa.array(kept)),
        "template": pa.repeat(pa.scalar(config.template or None, pa.string()), n),
        "quality_score": pa.array(conv.quality[kept].astype(np.float32)),
    }
    all_turns = np.zeros(len(conv.ids), np.int32)
    all_tokens = np.zeros(len(conv.ids), np.int64)
    all_turns[kept], all_tokens[kept] = n_turns, tokens
    return pa.table(columns, schema=EXAMPLES), all_turns, all_tokens


def _checked_counts(code: np.ndarray) -> dict[str, int]:
    """``TrainingResult.rejected``, after checking that every conversation has one outcome."""
    tally = np.bincount(code, minlength=len(OUTCOMES))
    counts = {
        "conversations_seen": len(code) - int(tally[0]),
        **{reason: int(tally[OUTCOMES.index(reason)]) for reason in REJECTION_REASONS},
        "kept": int(tally[-1]),
    }
    if counts["conversations_seen"] != counts["kept"] + sum(counts[r] for r in REJECTION_REASONS):
        raise RuntimeError(f"training example selection lost track of conversations: {counts}")
    return counts


def build_training_examples(
    clean: pa.Table, config: TrainingConfig | None = None, count: Counter | None = None
) -> TrainingResult:
    """Chat fine-tuning examples from one chunk of whole conversations of
    ``conversations_clean``; ``count`` (texts -> tokens) defaults to the target tokenizer."""
    config = config or TrainingConfig()
    count = count or partial(count_tokens, encoding=config.encoding)
    missing = [c for c in _REQUIRED if c not in clean.column_names]
    if missing:
        raise ValueError(f"conversations table lacks column(s) {missing}")
    event_type = pc.fill_null(clean["event_type"], "")
    messages = clean.filter(pc.equal(event_type, "message"))
    info: Tally[str] = Tally({k: 0 for k in _INFO_KEYS})
    no_id = pc.is_null(messages["conversation_id"])
    info["messages_without_conversation"] = int(pc.sum(no_id.cast(pa.int64())).as_py() or 0)
    messages = _sorted(
        messages.filter(pc.invert(no_id)),
        [(k, "ascending") for k in ("conversation_id", "turn_index", "event_time", "event_id")],
    )
    ratings = _latest_ratings(clean.filter(pc.equal(event_type, "feedback")))
    conv = _conversations(messages, ratings)
    info["orphan_feedback"] = int(
        pc.sum(pc.invert(pc.is_in(ratings[0], value_set=conv.ids)).cast(pa.int64())).as_py() or 0
    )
    _apply_row_rules(conv, messages, config)
    turns = only_undecided(conv, _assemble(conv, messages, config, info))
    cost, base = token_costs(turns, config, count)
    turns, cost, cut = fit_context(conv, turns, cost, base, config, info)
    examples, n_turns, n_tokens = _examples(conv, turns, cost, base, config)
    counts = _checked_counts(conv.code)
    log = _log(conv, n_turns, n_tokens, cut)
    return TrainingResult(examples, counts, {k: int(info[k]) for k in _INFO_KEYS}, log)


def _log(
    conv: Conversations, n_turns: np.ndarray, n_tokens: np.ndarray, cut: np.ndarray
) -> pa.Table:
    kept = conv.code == OUTCOMES.index("kept")
    turns_cut = pa.array(cut).cast(pa.string())
    detail = pc.if_else(
        pa.array(kept & (cut > 0)),
        pc.binary_join_element_wise("truncated_turns:", turns_cut, ""),
        pa.scalar(None, pa.string()),
    )
    return pa.table(
        {
            "conversation_id": conv.ids,
            "outcome": pa.array(OUTCOMES, pa.string()).take(pa.array(conv.code)),
            "detail": detail,
            "rating": pa.array(conv.rating.astype(np.int8), mask=conv.rating < 0),
            "quality_score": pa.array(conv.quality.astype(np.float32)),
            "n_turns": pa.array(n_turns, mask=~kept),
            "n_tokens": pa.array(n_tokens.astype(np.int32), mask=~kept),
            "event_time": conv.first_time,
        },
        schema=SELECTION_LOG,
    )


def whole_conversations(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Tables of whole conversations from batches of a table sorted by conversation."""
    return whole_groups(batches, "conversation_id")
