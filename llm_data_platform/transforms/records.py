"""Parse landed JSONL lines into typed events; anything malformed becomes a quarantine row.

Every line ends up in exactly one of the two outputs, each tagged with the day partition it
belongs to: the event's own date when a timestamp can be read (late events go to their own
earlier day), else the day the file arrived.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from llm_data_platform import schemas

MAX_LINE_BYTES = 1_000_000
_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
MESSAGE_ROLES = {"system", "user", "assistant"}
DOCUMENT_FORMATS = {"html", "markdown", "text"}


class InvalidRecord(ValueError):
    """A record that cannot be accepted; the message is the quarantine reason."""


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise InvalidRecord("missing or non-string timestamp")
    text = value.strip().replace("Z", "+00:00") if value.endswith("Z") else value.strip()
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # naive times are taken as UTC, documented
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidRecord(f"unparseable timestamp {value!r}") from exc


def _require_str(obj: dict, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRecord(f"field {key!r} missing or not a non-empty string")
    return value


def conversation_event(obj: dict) -> dict:
    """Validate one conversations-stream event into a RAW_CONVERSATIONS row (no arrival cols)."""
    event_type = obj.get("type")
    row = {
        "event_id": _require_str(obj, "event_id"),
        "event_type": event_type,
        "conversation_id": _require_str(obj, "conversation_id"),
        "turn_index": None,
        "role": None,
        "content": None,
        "rating": None,
        "user_id": obj.get("user_id") if isinstance(obj.get("user_id"), str) else None,
        "event_time": parse_timestamp(obj.get("timestamp")),
    }
    if event_type == "message":
        turn, role, content = obj.get("turn"), obj.get("role"), obj.get("content")
        if not isinstance(turn, int) or isinstance(turn, bool) or not 0 <= turn < 10_000:
            raise InvalidRecord("field 'turn' missing or not an integer in 0..9999")
        if role not in MESSAGE_ROLES:
            raise InvalidRecord(f"field 'role' must be one of {sorted(MESSAGE_ROLES)}")
        if not isinstance(content, str):
            raise InvalidRecord("field 'content' missing or not a string")
        row.update(turn_index=turn, role=role, content=content)
    elif event_type == "feedback":
        rating = obj.get("rating")
        if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
            raise InvalidRecord("field 'rating' missing or not an integer in 1..5")
        row["rating"] = rating
    else:
        raise InvalidRecord("field 'type' must be 'message' or 'feedback'")
    return row


def document_event(obj: dict) -> dict:
    """Validate one documents-stream event into a RAW_DOCUMENTS row (no arrival cols)."""
    op = obj.get("op", "upsert")
    row = {
        "event_id": _require_str(obj, "event_id"),
        "doc_id": _require_str(obj, "doc_id"),
        "op": op,
        "format": None,
        "title": obj.get("title") if isinstance(obj.get("title"), str) else None,
        "content": None,
        "source_uri": obj.get("source_uri") if isinstance(obj.get("source_uri"), str) else None,
        "version": None,
        "updated_at": parse_timestamp(obj.get("updated_at")),
    }
    if op == "upsert":
        fmt = obj.get("format")
        if fmt not in DOCUMENT_FORMATS:
            raise InvalidRecord(f"field 'format' must be one of {sorted(DOCUMENT_FORMATS)}")
        content = obj.get("content")
        if not isinstance(content, str):
            raise InvalidRecord("field 'content' missing or not a string")
        row.update(
            format=fmt,
            content=content,
            version=hashlib.sha256(content.encode("utf-8")).hexdigest()[:16],
        )
    elif op != "delete":
        raise InvalidRecord("field 'op' must be 'upsert' or 'delete'")
    return row


@dataclass
class ParsedLines:
    """Rows and quarantine rows, each with its partition day (parallel lists)."""

    rows: list[dict] = field(default_factory=list)
    row_days: list[date] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    quarantine_days: list[date] = field(default_factory=list)

    def for_day(self, day: date) -> tuple[list[dict], list[dict]]:
        rows = [r for r, d in zip(self.rows, self.row_days, strict=True) if d == day]
        bad = [q for q, d in zip(self.quarantine, self.quarantine_days, strict=True) if d == day]
        return rows, bad

    def days(self) -> set[date]:
        return set(self.row_days) | set(self.quarantine_days)


def parse_lines(
    lines: Iterable[tuple[int, bytes]],
    *,
    source_file: str,
    arrived_at: datetime,
    validate: Callable[[dict], dict],
    json_time_key: str,
    row_time_key: str,
    max_line_bytes: int = MAX_LINE_BYTES,
    first_day: date | None = None,
    last_day: date | None = None,
) -> ParsedLines:
    """``first_day``/``last_day`` bound the days that exist as partitions: an event dated
    outside them is quarantined (never silently lost to a partition nobody can run)."""

    def clamp(day: date) -> date:
        if first_day and day < first_day:
            return first_day
        if last_day and day > last_day:
            return last_day
        return day

    parsed = ParsedLines()
    for number, raw in lines:
        text: str | None = None
        obj: Any = None
        try:
            if len(raw) > max_line_bytes:
                raise InvalidRecord(f"line of {len(raw)} bytes exceeds {max_line_bytes}")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRecord(f"not valid UTF-8 at byte {exc.start}") from exc
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidRecord(f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
            except RecursionError as exc:
                raise InvalidRecord("invalid JSON: nested too deeply") from exc
            if "\\u" in text and _LONE_SURROGATE.search(text):
                try:
                    json.dumps(obj, ensure_ascii=False).encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise InvalidRecord("a string holds a lone UTF-16 surrogate") from exc
            if not isinstance(obj, dict):
                raise InvalidRecord(f"a JSON {type(obj).__name__}, not an object")
            row = validate(obj)
            event_day = row[row_time_key].date()
            if clamp(event_day) != event_day:
                raise InvalidRecord(out_of_range_reason(event_day, first_day, last_day))
        except InvalidRecord as exc:
            day = arrived_at.date()
            if isinstance(obj, dict):
                with contextlib.suppress(InvalidRecord):
                    day = parse_timestamp(obj.get(json_time_key)).date()
            day = clamp(day)
            record = text if text is not None else raw[:max_line_bytes].decode("utf-8", "replace")
            if len(record) > 10_000:
                record = record[:10_000] + f"…[{len(raw)} bytes]"
            parsed.quarantine.append(
                {
                    "source_file": source_file,
                    "source_line": number,
                    "record": record,
                    "reason": str(exc),
                    "arrived_at": arrived_at,
                }
            )
            parsed.quarantine_days.append(day)
            continue
        row.update(source_file=source_file, source_line=number, arrived_at=arrived_at)
        parsed.rows.append(row)
        parsed.row_days.append(row[row_time_key].date())
    return parsed


def out_of_range_reason(day: date, first: date | None, last: date | None) -> str:
    return f"event day outside the partitioned range: {day} not in {first or '…'}..{last or '…'}"


def reason_family(reason: str) -> str:
    """For counting: 'invalid JSON: Expecting value at column 3' → 'invalid JSON'."""
    return reason.split(":")[0]


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def quarantine_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schemas.QUARANTINE)


@dataclass(frozen=True)
class StreamSpec:
    validate: Callable[[dict], dict]
    json_time_key: str
    row_time_key: str
    schema: pa.Schema
    max_line_bytes: int = MAX_LINE_BYTES


STREAMS: dict[str, StreamSpec] = {
    "conversations": StreamSpec(
        conversation_event, "timestamp", "event_time", schemas.RAW_CONVERSATIONS
    ),
    # whole documents travel in one line: up to 8 MB (a 5 MB page plus JSON escaping)
    "documents": StreamSpec(
        document_event, "updated_at", "updated_at", schemas.RAW_DOCUMENTS, 8_000_000
    ),
}
