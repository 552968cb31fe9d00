"""A raw day is the compaction of that day's micro-batches only: the landing history is never
read, other days' batches are never opened, and the out-of-core compaction (DuckDB) keeps the
same rows as the in-memory reference (first arrival wins)."""

from __future__ import annotations

import json
import os
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from llm_data_platform.defs.ingest.assets import raw_asset
from llm_data_platform.defs.ingest.staging import staging_asset
from llm_data_platform.defs.partitions import build_partitions
from llm_data_platform.resources.io_manager import LakeIOManager
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.resources.stream_sources import StreamSourcesResource
from llm_data_platform.streaming.compaction import compact_day
from llm_data_platform.streaming.microbatch import read_day_detailed, write_microbatch

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]

PARTITIONS = build_partitions("2026-01-05")
stage_conversations = staging_asset("conversations", PARTITIONS)
compact_conversations = raw_asset("conversations", "raw_conversations", PARTITIONS)


def _event(i: int, day: str, second: int = 0) -> dict:
    return {
        "event_id": f"e{i}",
        "type": "message",
        "conversation_id": f"c{i % 7}",
        "turn": i % 5,
        "role": "user",
        "content": f"question {i}",
        "timestamp": f"{day}T10:{second // 60:02d}:{second % 60:02d}Z",
    }


def _land(root: Path, name: str, events: list[dict]) -> None:
    path = root / "conversations" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def test_a_raw_day_reads_only_its_own_micro_batches(tmp_path, monkeypatch):
    landing = LandingFolderResource(path=str(tmp_path / "landing"))
    lake = LakeResource(root=str(tmp_path / "lake"))
    resources = {
        "landing": landing,
        "lake": lake,
        "sources": StreamSourcesResource(),
        "io_manager": LakeIOManager(lake=lake),
    }
    for d, day in enumerate(DAYS):
        _land(tmp_path / "landing", f"{day}.jsonl", [_event(d * 100 + i, day) for i in range(40)])
    assets = [stage_conversations, compact_conversations]
    staged = dg.materialize(
        assets,
        selection=["conversations_batches", "conversations_batches_quarantine"],
        resources=resources,
    )
    assert staged.success
    shutil.rmtree(tmp_path / "landing")  # the landing history is gone: raw does not need it
    opened: list[str] = []
    original = LakeResource.local_file

    def recording(self, path, workdir, **kwargs):
        opened.append(path)
        return original(self, path, workdir, **kwargs)

    monkeypatch.setattr(LakeResource, "local_file", recording)
    result = dg.materialize(
        assets,
        selection=["raw_conversations", "raw_conversations_quarantine"],
        resources=resources,
        partition_key=DAYS[1],
    )
    assert result.success
    raw = lake.read_partition("raw", "raw_conversations", DAYS[1])
    assert sorted(raw["event_id"].to_pylist()) == sorted(f"e{100 + i}" for i in range(40))
    assert opened and all(f"/conversations_batches/dt={DAYS[1]}/" in p for p in opened)


def test_out_of_core_compaction_keeps_the_first_arrival_like_the_reference(tmp_path):
    """Replays under other batch identities and arrival times: DuckDB and Arrow agree."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    rng = random.Random(7)
    base = datetime(2026, 1, 6, 12, tzinfo=UTC)
    for batch in range(6):
        ids = rng.sample(range(300), 120)  # many ids in several batches
        lines = [(n + 1, json.dumps(_event(i, DAYS[1], i)).encode()) for n, i in enumerate(ids)]
        arrived = base + timedelta(minutes=rng.randrange(0, 30))
        write_microbatch(lake, "conversations", f"b{batch}", lines, f"src{batch}", arrived)
    reference = read_day_detailed(lake, "conversations", DAYS[1])
    workdir = tmp_path / "work"
    os.makedirs(workdir)
    day = compact_day(lake, "conversations", DAYS[1], ["event_time", "event_id"], str(workdir))
    ours = pq.read_table(day.path)
    assert ours.schema.equals(reference.rows.schema)
    order = [("event_time", "ascending"), ("event_id", "ascending")]
    assert ours.to_pylist() == reference.rows.sort_by(order).to_pylist()
    assert day.duplicates == reference.duplicates > 0
    assert day.per_source == reference.per_source
