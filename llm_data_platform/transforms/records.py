"""What a valid event is, per stream — the one definition every source and reader uses.

An event is first read into the stream's JSON schema (``json_schema``: one typed column per
field; a value of the wrong JSON type reads as null), by Arrow's JSON reader or, for the lines
it cannot take, by ``json.loads`` (``streaming/parse.py``). The rules below then run as Arrow
kernels on that table, in order; the first rule a row breaks is its quarantine reason. Valid
rows become the raw table's rows (``to_raw``). Timestamps are ISO 8601 (``Z`` or an offset;
naive times are taken as UTC).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform import schemas

TS = schemas.TS
MAX_LINE_BYTES = 1_000_000
MESSAGE_ROLES = ("assistant", "system", "user")
DOCUMENT_FORMATS = ("html", "markdown", "text")

# Characters str.strip() removes (str.isspace); a field is "non-empty" when it has another one.
NOT_PY_SPACE = (
    r"[^\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
    r"\x{202f}\x{205f}\x{3000}]"
)
# The one timestamp shape both datetime.fromisoformat and Arrow's cast read the same way;
# any other shape is parsed by ``parse_timestamp`` (Python), with the same result.
STRICT_TS = (
    r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
_STRICT = re.compile(STRICT_TS.replace(r"\d", "[0-9]"))


def parse_timestamp(value: Any) -> datetime | None:
    """One timestamp the Python way (None when unreadable)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    text = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # naive times are taken as UTC, documented
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def parse_timestamps(values: pa.Array) -> pa.Array:
    """Timestamps of a string column (null where unreadable): the strict shape by Arrow's
    cast, every other shape by ``parse_timestamp``, one value at a time (rare)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    strict = pc.fill_null(pc.match_substring_regex(values, STRICT_TS), False)
    out = pa.nulls(len(values), TS)
    if pc.any(strict).as_py():
        out = _cast_strict(pc.if_else(strict, values, pa.scalar(None, pa.string())))
        low = pa.scalar(datetime.min.replace(tzinfo=UTC), TS)
        high = pa.scalar(datetime.max.replace(tzinfo=UTC), TS)
        in_range = pc.and_(pc.greater_equal(out, low), pc.less_equal(out, high))
        out = pc.if_else(pc.fill_null(in_range, False), out, pa.scalar(None, TS))
    rest = pc.and_(pc.is_valid(values), pc.is_null(out))
    if pc.any(rest).as_py():
        python = [
            parse_timestamp(v) if r else None
            for v, r in zip(values.to_pylist(), rest.to_pylist(), strict=True)
        ]
        out = pc.coalesce(out, pa.array(python, TS))
    return out


def _cast_strict(kept: pa.Array) -> pa.Array:
    """Arrow's cast of strict-shaped timestamps; an impossible date (Feb 30) fails the whole
    cast, so those are left null here and read by ``parse_timestamp`` (which refuses them)."""
    try:
        return pc.cast(kept, TS)
    except pa.ArrowInvalid:
        pass
    day = pc.utf8_slice_codeunits(kept, 0, 10)
    day_ok = pc.is_valid(pc.strptime(day, "%Y-%m-%d", "s", error_is_null=True))
    try:
        return pc.cast(pc.if_else(day_ok, kept, pa.scalar(None, pa.string())), TS)
    except pa.ArrowInvalid:
        return pa.nulls(len(kept), TS)  # anything else odd: every value the Python way


def _text(column) -> pa.Array:
    """Non-empty string (not just whitespace), as str.strip() sees it."""
    return pc.fill_null(pc.match_substring_regex(column, NOT_PY_SPACE), False)


def _flag(values) -> pa.Array:
    return pc.fill_null(values, False)


def _between(column, low: int, high: int) -> pa.Array:
    return _flag(pc.and_(pc.greater_equal(column, low), pc.less_equal(column, high)))


Rule = tuple[str, Callable[[pa.Table], pa.Array]]  # (reason, row is valid)

CONVERSATION_RULES: list[Rule] = [
    ("field 'event_id' missing or not a non-empty string", lambda t: _text(t["event_id"])),
    (
        "field 'conversation_id' missing or not a non-empty string",
        lambda t: _text(t["conversation_id"]),
    ),  # noqa: E501
    ("timestamp", lambda t: pc.is_valid(t["__time"])),  # reason written per value below
    (
        "field 'type' must be 'message' or 'feedback'",
        lambda t: _flag(pc.is_in(t["type"], value_set=pa.array(["message", "feedback"]))),
    ),
    (
        "field 'turn' missing or not an integer in 0..9999",
        lambda t: pc.or_(pc.not_equal(t["type"], "message"), _between(t["turn"], 0, 9999)),
    ),
    (
        f"field 'role' must be one of {list(MESSAGE_ROLES)}",
        lambda t: pc.or_(
            pc.not_equal(t["type"], "message"),
            _flag(pc.is_in(t["role"], value_set=pa.array(MESSAGE_ROLES))),
        ),
    ),
    (
        "field 'content' missing or not a string",
        lambda t: pc.or_(pc.not_equal(t["type"], "message"), pc.is_valid(t["content"])),
    ),
    (
        "field 'rating' missing or not an integer in 1..5",
        lambda t: pc.or_(pc.not_equal(t["type"], "feedback"), _between(t["rating"], 1, 5)),
    ),
]

DOCUMENT_RULES: list[Rule] = [
    ("field 'event_id' missing or not a non-empty string", lambda t: _text(t["event_id"])),
    ("field 'doc_id' missing or not a non-empty string", lambda t: _text(t["doc_id"])),
    ("timestamp", lambda t: pc.is_valid(t["__time"])),
    (
        "field 'op' must be 'upsert' or 'delete'",
        lambda t: _flag(pc.is_in(t["op"], value_set=pa.array(["upsert", "delete"]))),
    ),
    (
        f"field 'format' must be one of {list(DOCUMENT_FORMATS)}",
        lambda t: pc.or_(
            pc.not_equal(t["op"], "upsert"),
            _flag(pc.is_in(t["format"], value_set=pa.array(DOCUMENT_FORMATS))),
        ),
    ),
    (
        "field 'content' missing or not a string",
        lambda t: pc.or_(pc.not_equal(t["op"], "upsert"), pc.is_valid(t["content"])),
    ),
]


def _timestamp_reason(value: str | None) -> str:
    if value is None or not value.strip():
        return "missing or non-string timestamp"
    return f"unparseable timestamp {value!r}"


def first_broken_rule(table: pa.Table, rules: list[Rule], time_field: str) -> pa.Array:
    """Per row, the reason of the first rule it breaks, or null when it is valid."""
    reasons = pa.nulls(table.num_rows, pa.string())
    for reason, valid in reversed(rules):
        reasons = pc.if_else(_flag(valid(table)), reasons, pa.scalar(reason))
    broken_time = pc.fill_null(pc.equal(reasons, "timestamp"), False)
    if pc.any(broken_time).as_py():  # a few rows: name the value in the reason
        values = table[time_field].to_pylist()
        fixed = [
            _timestamp_reason(values[i]) if bad else None
            for i, bad in enumerate(broken_time.to_pylist())
        ]
        reasons = pc.if_else(broken_time, pa.array(fixed, pa.string()), reasons)
    return reasons


def conversations_to_raw(t: pa.Table) -> dict[str, pa.Array]:
    """Valid rows (JSON schema + ``__time``) → RAW_CONVERSATIONS columns (no arrival cols)."""
    message = pc.equal(t["type"], "message")
    feedback = pc.invert(message)

    def when(mask, column, to=None):
        out = pc.if_else(mask, column, pa.scalar(None, column.type))
        return pc.cast(out, to) if to is not None else out

    return {
        "event_id": t["event_id"],
        "event_type": t["type"],
        "conversation_id": t["conversation_id"],
        "turn_index": when(message, t["turn"], pa.int32()),
        "role": when(message, t["role"]),
        "content": when(message, t["content"]),
        "rating": when(feedback, t["rating"], pa.int8()),
        "user_id": t["user_id"],
        "event_time": t["__time"],
    }


def content_version(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def documents_to_raw(t: pa.Table) -> dict[str, pa.Array]:
    """Valid rows → RAW_DOCUMENTS columns; ``version`` is the content hash (per document: the
    documents stream is low-volume, one hash per version)."""
    upsert = pc.equal(t["op"], "upsert")
    content = pc.if_else(upsert, t["content"], pa.scalar(None, pa.string()))
    versions = [None if c is None else content_version(c) for c in content.to_pylist()]
    return {
        "event_id": t["event_id"],
        "doc_id": t["doc_id"],
        "op": t["op"],
        "format": pc.if_else(upsert, t["format"], pa.scalar(None, pa.string())),
        "title": t["title"],
        "content": content,
        "source_uri": t["source_uri"],
        "version": pa.array(versions, pa.string()),
        "updated_at": t["__time"],
    }


def out_of_range_reason(day: date, first: date | None, last: date | None) -> str:
    return f"event day outside the partitioned range: {day} not in {first or '…'}..{last or '…'}"


def reason_family(reason: str) -> str:
    """For counting: 'invalid JSON: Expecting value at column 3' → 'invalid JSON'."""
    return reason.split(":")[0]


@dataclass(frozen=True)
class StreamSpec:
    """A stream: the JSON it receives, the rules of a valid event, its raw table."""

    json_schema: pa.Schema
    rules: list[Rule]
    to_raw: Callable[[pa.Table], dict[str, pa.Array]]
    json_time_key: str  # the timestamp field in the JSON
    row_time_key: str  # the event-time column of the raw table
    schema: pa.Schema  # the raw table
    max_line_bytes: int = MAX_LINE_BYTES
    defaults: tuple[tuple[str, str], ...] = ()  # field → value when the field is absent/null


STREAMS: dict[str, StreamSpec] = {
    "conversations": StreamSpec(
        json_schema=pa.schema(
            [
                ("event_id", pa.string()),
                ("type", pa.string()),
                ("conversation_id", pa.string()),
                ("turn", pa.int64()),
                ("role", pa.string()),
                ("content", pa.string()),
                ("rating", pa.int64()),
                ("user_id", pa.string()),
                ("timestamp", pa.string()),
            ]
        ),
        rules=CONVERSATION_RULES,
        to_raw=conversations_to_raw,
        json_time_key="timestamp",
        row_time_key="event_time",
        schema=schemas.RAW_CONVERSATIONS,
    ),
    # whole documents travel in one line: up to 8 MB (a 5 MB page plus JSON escaping)
    "documents": StreamSpec(
        json_schema=pa.schema(
            [
                ("event_id", pa.string()),
                ("doc_id", pa.string()),
                ("op", pa.string()),
                ("format", pa.string()),
                ("title", pa.string()),
                ("content", pa.string()),
                ("source_uri", pa.string()),
                ("updated_at", pa.string()),
            ]
        ),
        rules=DOCUMENT_RULES,
        to_raw=documents_to_raw,
        json_time_key="updated_at",
        row_time_key="updated_at",
        schema=schemas.RAW_DOCUMENTS,
        max_line_bytes=8_000_000,
        defaults=(("op", "upsert"),),
    ),
}
