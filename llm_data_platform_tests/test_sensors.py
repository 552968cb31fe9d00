"""Landing sensors: a tick lists (never reads) files and asks for one staging run naming them;
a staging run's touched days become raw runs. Nothing missed, nothing requested twice."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from llm_data_platform.defs.ingest.assets import raw_asset
from llm_data_platform.defs.ingest.sensors import (
    LandingCursor,
    landing_sensor,
    plan_tick,
    raw_after_staging,
)
from llm_data_platform.defs.ingest.staging import staging_asset
from llm_data_platform.defs.partitions import build_partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.streaming import landing_source, line_reader

PARTITIONS = build_partitions("2026-01-05")
stage_conversations = staging_asset("conversations", PARTITIONS)
compact_conversations = raw_asset("conversations", "raw_conversations", PARTITIONS)
conversations_sensor = landing_sensor("conversations", max_files=200, interval_seconds=30)
documents_sensor = landing_sensor("documents", max_files=200, interval_seconds=30)


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
    lake = LakeResource(root=os.path.join(landing.path, "..", "lake"))
    resources = {"landing": landing, "lake": lake}
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        return sensor(context)


def _files_of(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["stage_conversations"]["config"]["files"]


@pytest.fixture
def no_reading(monkeypatch):
    """A tick must not open landing files: reading them is the staging run's job."""

    def refuse(*args, **kwargs):
        raise AssertionError("the sensor read a landing file")

    monkeypatch.setattr(landing_source, "content_hash", refuse)
    monkeypatch.setattr(line_reader, "read_lines", refuse)


def test_a_tick_requests_one_staging_run_for_the_new_files(tmp_path, no_reading):
    landing = LandingFolderResource(path=str(tmp_path))
    _write(tmp_path, "a.jsonl", [_event(1, "2026-01-05"), _event(2, "2026-01-06")])
    _write(tmp_path, "b.jsonl", [_event(3, "2026-01-05"), "{not json"], mtime=1767830400.0)

    first = _tick(conversations_sensor, landing, None)
    assert isinstance(first, dg.SensorResult)
    (request,) = first.run_requests
    assert sorted(_files_of(request)) == ["a.jsonl", "b.jsonl"]
    assert request.partition_key is None  # the days are known once the files are parsed

    # nothing new: the same files are never requested again
    assert isinstance(_tick(conversations_sensor, landing, first.cursor), dg.SkipReason)

    # a new file → a run naming only it, under another run key
    time.sleep(0.01)
    _write(tmp_path, "c.jsonl", [_event(4, "2026-01-06")])
    third = _tick(conversations_sensor, landing, first.cursor)
    assert [_files_of(r) for r in third.run_requests] == [["c.jsonl"]]
    assert third.run_requests[0].run_key != request.run_key


def test_a_rewrite_with_the_same_size_and_mtime_is_a_new_arrival(tmp_path, no_reading):
    landing = LandingFolderResource(path=str(tmp_path))
    path = _write(tmp_path, "a.jsonl", [_event(1, "2026-01-05")], mtime=1767600000.0)
    first = _tick(conversations_sensor, landing, None)
    size = path.stat().st_size
    time.sleep(0.01)
    path.write_text(_event(7, "2026-01-05") + "\n")  # same length, other bytes
    os.utime(path, (1767600000.0, 1767600000.0))
    assert path.stat().st_size == size and path.stat().st_mtime == 1767600000.0
    second = _tick(conversations_sensor, landing, first.cursor)
    assert [_files_of(r) for r in second.run_requests] == [["a.jsonl"]]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_a_burst_is_drained_in_order_over_several_ticks(tmp_path):
    landing = LandingFolderResource(path=str(tmp_path))
    for i in range(25):
        _write(tmp_path, f"f{i:03d}.jsonl", [_event(i, "2026-01-05")], mtime=1767600000 + i)
    files = landing.list_files("conversations")
    cursor, seen, ticks = LandingCursor(), [], 0
    while True:
        plan = plan_tick(landing.list_files("conversations"), cursor, 10)
        if not plan.files:
            break
        seen += [f.key for f in plan.files]
        cursor, ticks = plan.cursor, ticks + 1
        cursor = LandingCursor.parse(cursor.dump())  # through its serialised form
    assert ticks == 3
    assert seen == [f.key for f in files]  # every file once, in landing order


def test_each_sensor_watches_its_own_stream(tmp_path):
    landing = LandingFolderResource(path=str(tmp_path))
    folder = tmp_path / "documents"
    folder.mkdir(parents=True)
    (folder / "d.jsonl").write_text('{"event_id": "d1"}\n')
    result = _tick(documents_sensor, landing, None)
    (request,) = result.run_requests
    assert request.run_config["ops"]["stage_documents"]["config"]["files"] == ["d.jsonl"]
    assert isinstance(_tick(conversations_sensor, landing, None), dg.SkipReason)


def test_a_staging_run_becomes_runs_of_the_days_it_touched(tmp_path):
    from llm_data_platform.definitions import defs
    from llm_data_platform.resources.stream_sources import StreamSourcesResource

    landing = LandingFolderResource(path=str(tmp_path / "landing"))
    lake = LakeResource(root=str(tmp_path / "lake"))
    _write(tmp_path / "landing", "a.jsonl", [_event(1, "2026-01-05"), _event(2, "2026-01-07")])
    # an event dated before the first partition is quarantined under the first day
    _write(tmp_path / "landing", "b.jsonl", [_event(3, "2019-03-01")])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [stage_conversations],
        resources={"landing": landing, "lake": lake, "sources": StreamSourcesResource()},
        instance=instance,
        run_config=dg.RunConfig(ops={"stage_conversations": {"config": {"files": []}}}),
    )
    assert result.success
    sensor = raw_after_staging("conversations")
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    tick = sensor.evaluate_tick(context)
    requests = tick.run_requests
    assert sorted(r.partition_key for r in requests) == ["2026-01-05", "2026-01-07"]
    assert len({r.run_key for r in requests}) == 2
    # the cursor has moved past that staging: the next evaluation asks for nothing
    again = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, cursor=tick.cursor)
    )
    assert not again.run_requests


def test_versions_staged_already_need_no_run(tmp_path):
    """After `ldp demo` staged everything, `make dev`'s first tick asks for nothing."""
    landing = LandingFolderResource(path=str(tmp_path / "landing"))
    lake = LakeResource(root=str(tmp_path / "landing" / ".." / "lake"))
    _write(tmp_path / "landing", "a.jsonl", [_event(1, "2026-01-05")])
    _write(tmp_path / "landing", "b.jsonl", [_event(2, "2026-01-05")])
    landing.stage(lake, "conversations", "a.jsonl")
    result = _tick(conversations_sensor, landing, None)
    assert [_files_of(r) for r in result.run_requests] == [["b.jsonl"]]
    landing.stage(lake, "conversations", "b.jsonl")
    time.sleep(0.01)
    _write(tmp_path / "landing", "a.jsonl", [_event(3, "2026-01-05")])  # a new version
    again = _tick(conversations_sensor, landing, None)
    assert [_files_of(r) for r in again.run_requests] == [["a.jsonl"]]


def test_days_compacted_after_the_staging_are_not_requested_again(tmp_path):
    from llm_data_platform.definitions import defs
    from llm_data_platform.resources.io_manager import LakeIOManager
    from llm_data_platform.resources.stream_sources import StreamSourcesResource

    assets = [stage_conversations, compact_conversations]

    landing = LandingFolderResource(path=str(tmp_path / "landing"))
    lake = LakeResource(root=str(tmp_path / "lake"))
    resources = {
        "landing": landing,
        "lake": lake,
        "sources": StreamSourcesResource(),
        "io_manager": LakeIOManager(lake=lake),
    }
    _write(tmp_path / "landing", "a.jsonl", [_event(1, "2026-01-05"), _event(2, "2026-01-06")])
    instance = dg.DagsterInstance.ephemeral()
    staged = dg.materialize(
        assets,
        selection=["conversations_batches", "conversations_batches_quarantine"],
        resources=resources,
        instance=instance,
    )
    assert staged.success
    compacted = dg.materialize(
        assets,
        selection=["raw_conversations", "raw_conversations_quarantine"],
        resources=resources,
        instance=instance,
        partition_key="2026-01-06",
    )
    assert compacted.success
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    tick = raw_after_staging("conversations").evaluate_tick(context)
    assert [r.partition_key for r in tick.run_requests] == ["2026-01-05"]


def test_two_stagings_in_one_tick_both_get_their_days(tmp_path):
    """The soak saw a staging finishing beside another lose its days (an asset sensor reads
    only the newest materialization of a tick): every staging since the cursor counts."""
    from llm_data_platform.definitions import defs
    from llm_data_platform.resources.stream_sources import StreamSourcesResource

    landing = LandingFolderResource(path=str(tmp_path / "landing"))
    lake = LakeResource(root=str(tmp_path / "lake"))
    resources = {"landing": landing, "lake": lake, "sources": StreamSourcesResource()}
    instance = dg.DagsterInstance.ephemeral()
    sensor = raw_after_staging("conversations")
    start = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert not start.run_requests
    for name, day in (("a.jsonl", "2026-01-05"), ("b.jsonl", "2026-01-06")):
        _write(tmp_path / "landing", name, [_event(hash(name) % 1000, day)])
        staged = dg.materialize(
            [stage_conversations],
            resources=resources,
            instance=instance,
            run_config=dg.RunConfig(ops={"stage_conversations": {"config": {"files": [name]}}}),
        )
        assert staged.success
    tick = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, cursor=start.cursor)
    )
    assert sorted(r.partition_key for r in tick.run_requests) == ["2026-01-05", "2026-01-06"]
    again = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, cursor=tick.cursor)
    )
    assert not again.run_requests


def _document(doc_id: str, day: str) -> str:
    return json.dumps(
        {
            "event_id": f"d-{doc_id}-{day}",
            "op": "upsert",
            "doc_id": doc_id,
            "format": "markdown",
            "content": f"# {doc_id}\n\nText of {doc_id}.",
            "updated_at": f"{day}T10:00:00Z",
        }
    )


def test_a_sync_named_with_its_day_is_staged_and_ingested_in_one_run(tmp_path, no_reading):
    """`ldp ingest-docs` names its landing file with its latest event day: the documents
    sensor asks for one run staging it and ingesting that day, from the listing alone."""
    from llm_data_platform.defs.ingest.jobs import sync_documents_job

    sync = sync_documents_job(PARTITIONS)
    sensor = landing_sensor("documents", max_files=200, interval_seconds=5, sync=(sync, PARTITIONS))
    landing = LandingFolderResource(path=str(tmp_path))
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "dirsync-20260106T100000Z-ab12-day-2026-01-06.jsonl").write_text("{}\n")
    first = _tick(sensor, landing, None)
    (request,) = first.run_requests
    assert (request.job_name, request.partition_key) == ("sync_documents_job", "2026-01-06")
    config = request.run_config["ops"]["stage_documents"]["config"]
    assert config["files"] == ["dirsync-20260106T100000Z-ab12-day-2026-01-06.jsonl"]

    # a file naming no day, or a day that is no partition: a staging run, days found by parsing
    time.sleep(0.01)
    (folder / "export.jsonl").write_text("{}\n")
    (second,) = _tick(sensor, landing, first.cursor).run_requests
    assert (second.job_name, second.partition_key) == ("stage_documents_job", None)
    time.sleep(0.01)
    (folder / "dirsync-20190101T100000Z-cd34-day-2019-01-01.jsonl").write_text("{}\n")
    (third,) = _tick(sensor, landing, first.cursor).run_requests
    assert (third.job_name, third.partition_key) == ("stage_documents_job", None)


def test_the_day_a_sync_run_ingests_itself_gets_no_second_run(tmp_path):
    """While a sync run of day D is between its staging and its compaction, the after-staging
    sensor asks for the file's other days only (a run of D would redo D behind it)."""
    from llm_data_platform.definitions import defs
    from llm_data_platform.resources.stream_sources import StreamSourcesResource

    stage_documents = staging_asset("documents", PARTITIONS)
    compact_documents = raw_asset("documents", "raw_documents", PARTITIONS)
    sync = dg.define_asset_job(
        "sync_documents_job",
        selection=[*stage_documents.keys, *compact_documents.keys],
        partitions_def=PARTITIONS.daily,
    )
    landing = LandingFolderResource(path=str(tmp_path / "landing"))
    lake = LakeResource(root=str(tmp_path / "lake"))
    folder = tmp_path / "landing" / "documents"
    folder.mkdir(parents=True)
    name = "dirsync-20260107T100000Z-ef56-day-2026-01-07.jsonl"
    (folder / name).write_text(
        _document("a.md", "2026-01-05") + "\n" + _document("b.md", "2026-01-07") + "\n"
    )
    instance = dg.DagsterInstance.ephemeral()
    job = dg.Definitions(
        assets=[stage_documents, compact_documents],
        jobs=[sync],
        resources={"landing": landing, "lake": lake, "sources": StreamSourcesResource()},
    ).resolve_job_def("sync_documents_job")
    staged = job.execute_in_process(  # its staging half: D is not compacted yet
        instance=instance,
        partition_key="2026-01-07",
        asset_selection=list(stage_documents.keys),
        run_config={"ops": {"stage_documents": {"config": {"files": [name]}}}},
    )
    assert staged.success
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    tick = raw_after_staging("documents").evaluate_tick(context)
    assert [(r.partition_key, r.job_name) for r in tick.run_requests] == [("2026-01-05", None)]
