"""Checkpoint after durable, under a real SIGKILL: no Kinesis record lost, none written twice.

The ingest runs in a subprocess that sends itself SIGKILL — no ``finally``, nothing flushed
or closed — the second time a batch reaches a stage of its write (so one batch got through):

- ``before_write``: the batch's ledger entry says ``writing``, none of its files exists;
- ``mid_write``: before its second file (one of its three day files is on disk);
- ``after_write_before_commit``: files and ``written`` entry durable, checkpoint not moved;
- ``after_commit``: checkpoint moved, the ledger entry not yet settled.

A second subprocess ingests to the end with another batch size (the unfinished batch must keep
its range). The test process then reads every Parquet file under ``raw/conversations_batches/``
and checks: each record's event once (0 duplicated, 0 lost), batch ranges tile each shard's
sequence numbers without overlap, every checkpoint at its shard's last record, and the ledger
holds only ``committed`` entries, one per batch, the killed one included.

moto's Kinesis server runs in this process (``moto_endpoint``) and keeps the stream while the
subprocesses come and go; they reach it over 127.0.0.1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.kinesis_source import KinesisSourceConfig, pending_days, positions
from llm_data_platform_tests.conftest import time_bound
from llm_data_platform_tests.test_kafka_sigkill import events
from llm_data_platform_tests.test_streaming_kinesis import (
    STREAM,
    batch_files,
    kinesis_client,
    ledger_states,
    make_stream,
    put,
)

N_EVENTS = 900
BATCH = 120  # the killed run's batch size: ~8 batches over 3 shards
RESTART_BATCH = 170  # the restart's
STAGES = ["before_write", "mid_write", "after_write_before_commit", "after_commit"]

WORKER = r"""
import json, os, signal, sys

import boto3

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.kinesis_source import KinesisSourceConfig, ingest_once

args = json.loads(sys.argv[1])
client = boto3.client("kinesis", endpoint_url=args["endpoint"], region_name="us-east-1")
config = KinesisSourceConfig(**args["config"])
lake = LakeResource(root=args["lake"])
stage = args["stage"]
batches = []


def fault(name, details):
    if name != stage:
        return
    if details["identity"] not in batches:
        batches.append(details["identity"])
    if len(batches) == 2 and (name != "mid_write" or details["index"] == 1):
        with open(args["marker"], "w") as f:
            json.dump({"identity": details["identity"]}, f)
        os.kill(os.getpid(), signal.SIGKILL)


report = ingest_once(config, lake, client, fault=fault if stage else None)
print(json.dumps({
    "records": report.records,
    "batches": [b.identity for b in report.batches],
    "recovered": report.recovered,
    "recovered_records": report.recovered_records,
    "stopped": report.stopped,
}))
"""


@pytest.fixture(autouse=True)
def bounded():
    with time_bound(150, "Kinesis SIGKILL test"):
        yield


def _run_worker(tmp_path: Path, endpoint: str, config: dict, lake: Path, stage: str | None):
    script = tmp_path / "kinesis_worker.py"
    script.write_text(WORKER)
    marker = tmp_path / f"killed-at-{stage}.json"
    args = {"endpoint": endpoint, "config": config, "lake": str(lake), "stage": stage}
    args["marker"] = str(marker)
    done = subprocess.run(  # on timeout, run() kills the child it started, then raises
        [sys.executable, str(script), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=str(tmp_path),
    )
    return done, marker


@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_at_each_stage_then_restart_every_record_once(stage, moto_endpoint, tmp_path):
    client = kinesis_client(moto_endpoint)
    name = make_stream(client)
    produced = events(N_EVENTS)  # three event days: each batch writes three day files
    ids = [json.loads(v)["event_id"] for v in produced]
    where = dict(zip(ids, put(client, name, produced), strict=True))
    lake_root = tmp_path / "lake"
    lake = LakeResource(root=str(lake_root))
    base = {"stream_name": name, "stream": STREAM, "keep_committed_ledger": True}
    config = KinesisSourceConfig(**base)

    # 1. the ingest is killed the second time a batch reaches `stage`
    killed, marker = _run_worker(
        tmp_path, moto_endpoint, {**base, "batch_records": BATCH}, lake_root, stage
    )
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert killed.stdout == ""  # it never got to report
    victim = json.loads(marker.read_text())["identity"]
    folder = lake_root / "raw" / f"{STREAM}_batches" / "_ledger"
    entries = {
        e["identity"]: e for e in (json.loads(p.read_text()) for p in folder.rglob("*.json"))
    }
    entry = entries[victim]
    victim_files = [p for p in batch_files(lake_root, f"{STREAM}_batches") if p.stem == victim]
    checkpoint = {s: c for s, (c, _) in positions(config, lake, client).items()}[entry["shard"]]
    behind = int(checkpoint or 0) < int(entry["last"])
    if stage == "before_write":
        assert entry["state"] == "writing" and victim_files == [] and behind
    elif stage == "mid_write":
        assert entry["state"] == "writing" and len(victim_files) == 1 and behind  # 1 of 3
    elif stage == "after_write_before_commit":
        assert entry["state"] == "written" and len(victim_files) == 3 and behind
    else:
        assert entry["state"] == "written" and len(victim_files) == 3
        assert checkpoint == entry["last"]  # checkpointed, the ledger not yet settled
    for path in batch_files(lake_root, f"{STREAM}_batches"):
        pq.read_table(path)  # every visible file is whole, even after SIGKILL

    # 2. a restart (another batch size) runs to the end
    restart, _ = _run_worker(
        tmp_path, moto_endpoint, {**base, "batch_records": RESTART_BATCH}, lake_root, None
    )
    assert restart.returncode == 0, restart.stderr[-4000:]
    report = json.loads(restart.stdout)
    if stage in {"before_write", "mid_write"}:
        assert victim in report["batches"]  # its range was kept: the same name, completed
    elif stage == "after_write_before_commit":
        assert victim in report["recovered"] and victim not in report["batches"]
    else:
        assert victim not in report["recovered"] + report["batches"]

    # 3. what the lake holds, file by file: every record's event once, ranges tiling shards
    seen: Counter[str] = Counter()
    spans: dict[str, list[tuple[int, int]]] = {}
    for path in batch_files(lake_root, f"{STREAM}_batches"):
        table = pq.read_table(path, columns=["event_id", "source_file"])
        seen.update(table["event_id"].to_pylist())
        for source in set(table["source_file"].to_pylist()):
            shard = source.split("/")[3]
            first, last = path.stem.removeprefix(f"kinesis-{name}-{shard}-").split("-")
            if (int(first), int(last)) not in spans.get(shard, []):
                spans.setdefault(shard, []).append((int(first), int(last)))
    duplicated = {i: n for i, n in seen.items() if n > 1}
    lost = set(ids) - set(seen)
    assert (len(duplicated), len(lost)) == (0, 0), (sorted(duplicated)[:5], sorted(lost)[:5])
    assert sum(seen.values()) == N_EVENTS
    sequences: dict[str, list[int]] = {}
    for shard, seq in where.values():
        sequences.setdefault(shard, []).append(int(seq))
    assert set(spans) == set(sequences)
    for shard, ranges in spans.items():  # batch ranges tile the shard, no overlap
        ranges.sort()
        held = sorted(sequences[shard])
        assert ranges[0][0] == held[0] and ranges[-1][1] == held[-1], (shard, ranges)
        inside = [sum(a <= s <= b for a, b in ranges) for s in held]
        assert set(inside) == {1}, (shard, ranges)
    last = {shard: str(max(seqs)) for shard, seqs in sequences.items()}
    assert positions(config, lake, client) == {s: (last[s], None) for s in last}

    # 4. the ledger: one committed entry per batch, the killed one included
    assert set(ledger_states(lake_root)) == {"committed"}
    pending = {i for batch in pending_days(config, lake).values() for i in batch}
    assert pending == {p.stem for p in batch_files(lake_root, f"{STREAM}_batches")}
    assert victim in pending
