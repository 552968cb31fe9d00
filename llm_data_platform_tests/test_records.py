"""Landed lines → typed rows or quarantine rows with the reason; every line accounted for."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from llm_data_platform.streaming.parse import parse_batch

ARRIVED = datetime(2026, 1, 7, 23, 0, tzinfo=UTC)


@pytest.fixture(params=[True, False], ids=["arrow-reader", "json-loads"])
def fast(request) -> bool:
    return request.param


def _parse(lines: list[bytes], stream: str = "conversations", fast: bool = True, bounds=None):
    """Both readers must give the same answer: every test runs through each."""
    parsed = parse_batch(
        stream, list(enumerate(lines, start=1)), "f.jsonl", ARRIVED, fast=fast, bounds=bounds
    )
    return SimpleNamespace(
        rows=parsed.rows.to_pylist(),
        quarantine=parsed.quarantine.to_pylist(),
        row_days=parsed.row_days.to_pylist(),
        quarantine_days=parsed.quarantine_days.to_pylist(),
    )


def _msg(**over) -> bytes:
    event = {
        "event_id": "e1",
        "type": "message",
        "conversation_id": "c1",
        "turn": 0,
        "role": "user",
        "content": "hi",
        "timestamp": "2026-01-05T10:00:00Z",
    }
    event.update(over)
    return json.dumps(event).encode()


def test_good_and_bad_lines_are_all_accounted_for_with_reasons(fast):
    lines = [
        _msg(),
        b'{"event_id": "e2", "type": "mess',  # truncated JSON
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        _msg(event_id="e3", conversation_id=None),
        _msg(event_id="e4", type="feedback", rating="five"),
        _msg(event_id="e5", role="robot"),
        _msg(event_id="e6", timestamp="yesterday"),
    ]
    parsed = _parse(lines, fast=fast)
    assert len(parsed.rows) + len(parsed.quarantine) == len(lines)
    assert [r["event_id"] for r in parsed.rows] == ["e1"]
    reasons = [q["reason"] for q in parsed.quarantine]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1].startswith("not valid UTF-8")
    assert reasons[2] == "a JSON list, not an object"
    assert "conversation_id" in reasons[3]
    assert "rating" in reasons[4]
    assert "role" in reasons[5]
    assert "timestamp" in reasons[6]
    assert all(q["source_line"] > 1 and q["record"] for q in parsed.quarantine)


def test_partition_day_is_the_event_day_else_the_arrival_day(fast):
    parsed = _parse([_msg(), _msg(event_id="e2", rating=None, type="x"), b"garbage"], fast=fast)
    assert parsed.row_days == [date(2026, 1, 5)]
    # a bad record whose timestamp is readable belongs to its event day; garbage to arrival day
    assert parsed.quarantine_days == [date(2026, 1, 5), date(2026, 1, 7)]


def test_oversize_lines_and_out_of_range_days_are_quarantined(fast):
    big = _msg(content="x" * 1_000_000)
    parsed = _parse(
        [big, _msg(event_id="old", timestamp="2019-01-01T00:00:00Z")],
        fast=fast,
        bounds=(date(2026, 1, 5), date(2026, 1, 10)),
    )
    assert not parsed.rows
    assert "exceeds 1000000" in parsed.quarantine[0]["reason"]
    assert "outside the partitioned range" in parsed.quarantine[1]["reason"]
    assert parsed.quarantine_days[1] == date(2026, 1, 5)  # clamped into an existing partition


def test_document_events_get_a_content_version(fast):
    doc = {
        "event_id": "d1",
        "doc_id": "kb/a",
        "op": "upsert",
        "format": "markdown",
        "content": "# A\n\ntext",
        "updated_at": "2026-01-05T08:00:00+01:00",
    }
    parsed = _parse([json.dumps(doc).encode()], stream="documents", fast=fast)
    row = parsed.rows[0]
    assert len(row["version"]) == 16 and row["updated_at"].tzinfo is not None
    assert row["updated_at"].hour == 7  # normalised to UTC
    deleted = _parse(
        [
            json.dumps(
                {
                    "event_id": "d2",
                    "doc_id": "kb/a",
                    "op": "delete",
                    "updated_at": "2026-01-06T00:00:00Z",
                }
            ).encode()
        ],
        stream="documents",
        fast=fast,
    )
    assert deleted.rows[0]["version"] is None and deleted.rows[0]["op"] == "delete"


def test_hostile_lines_are_quarantined_not_fatal(fast):
    lines = [
        b"[" * 100_000 + b"]" * 100_000,  # nesting beyond the recursion limit
        _msg(timestamp="0001-01-01T00:00:00+01:00"),  # overflows when moved to UTC
        _msg(content="\ud800 alone"),  # json.dumps writes it as a lone \ud800 escape
        _msg(content="\U0001f600 fine"),  # written as a surrogate pair: a real character
    ]
    parsed = _parse(lines, fast=fast)
    assert [q["source_line"] for q in parsed.quarantine] == [1, 2, 3]
    assert "nested" in parsed.quarantine[0]["reason"]
    assert "timestamp" in parsed.quarantine[1]["reason"]
    assert "surrogate" in parsed.quarantine[2]["reason"]
    assert parsed.rows[0]["content"] == "😀 fine"
