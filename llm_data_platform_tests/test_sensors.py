"""Landing sensors: the right partitions, nothing missed, nothing requested twice."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg

from llm_data_platform.defs.ingest.sensors import (
    LandingCursor,
    landing_conversations_sensor,
    landing_documents_sensor,
    plan_tick,
)
from llm_data_platform.resources.landing import LandingFolderResource


def _event(i: int, day: str) -> str:
    return json.dumps(
        {
            "event_id": f"e{i}",
            "type": "message",
            "conversation_id": f"c{i}",
            "turn": 0,
            "role": "user",
            "content": "hello there",
            "timestamp": f"{day}T10:00:00Z",
        }
    )


def _write(folder: Path, name: str, lines: list[str], mtime: float | None = None) -> Path:
    path = folder / "conversations" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _tick(sensor, landing: LandingFolderResource, cursor: str | None):
    context = dg.build_sensor_context(cursor=cursor, resources={"landing": landing})
    return sensor(context)


def test_sensor_requests_the_event_days_of_new_files(tmp_path):
    landing = LandingFolderResource(path=str(tmp_path))
    _write(tmp_path, "a.jsonl", [_event(1, "2026-01-05"), _event(2, "2026-01-06")])
    # a late event for the 5th arrives in a later file; a malformed line with no timestamp
    # belongs to the file's arrival day
    arrival = 1767830400.0  # 2026-01-08T00:00:00Z
    _write(tmp_path, "b.jsonl", [_event(3, "2026-01-05"), "{not json"], mtime=arrival)

    first = _tick(landing_conversations_sensor, landing, None)
    assert isinstance(first, dg.SensorResult)
    by_partition = {r.partition_key: r for r in first.run_requests}
    assert set(by_partition) == {"2026-01-05", "2026-01-06", "2026-01-08"}
    assert by_partition["2026-01-05"].tags["ldp/files"] == "2"

    # nothing new: the same files are never requested again
    again = _tick(landing_conversations_sensor, landing, first.cursor)
    assert isinstance(again, dg.SkipReason)

    # a new file → only its day, with a run key that differs from the earlier one for that day
    time.sleep(0.01)
    _write(tmp_path, "c.jsonl", [_event(4, "2026-01-06")])
    third = _tick(landing_conversations_sensor, landing, first.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2026-01-06"]
    assert third.run_requests[0].run_key != by_partition["2026-01-06"].run_key


def test_a_rewritten_file_is_a_new_arrival(tmp_path):
    landing = LandingFolderResource(path=str(tmp_path))
    path = _write(tmp_path, "a.jsonl", [_event(1, "2026-01-05")])
    first = _tick(landing_conversations_sensor, landing, None)
    path.write_text(_event(1, "2026-01-05") + "\n" + _event(2, "2026-01-05") + "\n")
    os.utime(path, (path.stat().st_mtime + 1, path.stat().st_mtime + 1))
    second = _tick(landing_conversations_sensor, landing, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2026-01-05"]


def test_a_burst_is_drained_in_order_over_several_ticks(tmp_path):
    landing = LandingFolderResource(path=str(tmp_path))
    for i in range(25):
        _write(tmp_path, f"f{i:03d}.jsonl", [_event(i, "2026-01-05")], mtime=1767600000 + i)
    files = landing.list_files("conversations")
    cursor, seen, ticks = LandingCursor(), [], 0
    while True:
        plan = plan_tick(landing.list_files("conversations"), cursor, "conversations", 10)
        if not plan.files:
            break
        seen += [f.key for f in plan.files]
        cursor, ticks = plan.cursor, ticks + 1
        cursor = LandingCursor.parse(cursor.dump())  # through its serialised form
    assert ticks == 3
    assert seen == [f.key for f in files]  # every file once, in landing order


def test_document_sensor_reads_its_own_stream(tmp_path):
    landing = LandingFolderResource(path=str(tmp_path))
    folder = tmp_path / "documents"
    folder.mkdir(parents=True)
    (folder / "d.jsonl").write_text(
        json.dumps(
            {
                "event_id": "d1",
                "doc_id": "kb/a",
                "op": "upsert",
                "format": "text",
                "content": "Some text.",
                "updated_at": "2026-01-07T09:00:00Z",
            }
        )
        + "\n"
    )
    result = _tick(landing_documents_sensor, landing, None)
    assert [r.partition_key for r in result.run_requests] == ["2026-01-07"]
    assert isinstance(_tick(landing_conversations_sensor, landing, None), dg.SkipReason)


def test_events_outside_the_partitions_are_quarantined_not_requested(tmp_path):
    landing = LandingFolderResource(path=str(tmp_path))
    _write(tmp_path, "old.jsonl", [_event(1, "2019-03-01"), _event(2, "2026-01-06")])
    result = _tick(landing_conversations_sensor, landing, None)
    # the 2019 event has no partition: it is quarantined under the first day, not dropped
    assert sorted(r.partition_key for r in result.run_requests) == ["2026-01-05", "2026-01-06"]
