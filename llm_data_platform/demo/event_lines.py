"""Demo events as landing lines: JSON that stays one line, timestamps, deterministic ids."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time

_NAMESPACE = uuid.UUID("6f1c2a4e-8d0b-5e77-9a3c-2b1d4e5f6a70")

CONVERSATIONS = "conversations"
DOCUMENTS = "documents"

_UNICODE_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def _dumps(obj: object) -> str:
    text = json.dumps(obj, ensure_ascii=False)
    for raw, escaped in _UNICODE_LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _parse_ts(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def malformed_partition(line: str, arrival_day: date) -> date:
    """The event-day partition a malformed line is attributed to: the day of its "timestamp"
    if the line is a JSON object with a parseable ISO-8601 timestamp, else its arrival day."""
    try:
        obj = json.loads(line)
    except ValueError:
        return arrival_day
    ts = _parse_ts(obj.get("timestamp")) if isinstance(obj, dict) else None
    return ts.date() if ts is not None else arrival_day


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _at(day: date, t: time) -> datetime:
    return datetime.combine(day, t, tzinfo=UTC)


class _Ids:
    def __init__(self, scope: str):
        self.scope = scope
        self.n = 0

    def __call__(self, kind: str) -> str:
        self.n += 1
        return str(uuid.uuid5(_NAMESPACE, f"{self.scope}:{kind}:{self.n}"))
