"""Commit after durable, under a real SIGKILL: no event lost, none written twice.

``ingest_once`` promises that a batch's offsets are committed only once its files and its
``written`` ledger entry are durable, and that a restart completes whatever a crash cut short
(``written`` entries committed without re-reading, a ``writing`` entry re-written with the same
range under the same name). The Kafka tests elsewhere simulate the crash with an exception in
the same process; here the ingest runs in a subprocess that sends itself SIGKILL — no
``finally``, no executor shutdown, no consumer close, the writer thread stopped wherever it was —
the second time a stage of the write is reached (so at least one batch got through first):

- ``before_write``: the batch's ledger entry says ``writing``, none of its files exists;
- ``mid_write``: before its second file (one of its three day files is on disk);
- ``after_write_before_commit``: files and ``written`` entry durable, offsets not committed;
- ``after_commit``: offsets committed, ledger entry not yet settled.

A second subprocess then ingests to the end, with another batch size (an operator changing the
configuration between the crash and the restart: the unfinished batch must keep its range).
The test process then reads every Parquet file under ``raw/conversations_batches/`` itself and
checks: each produced event once across all batch files (0 duplicated, 0 lost), each row's
pointer leads back to its message's offset, batch ranges tile each partition without overlap,
lag 0, and no ledger entry is left ``writing`` or ``written``. With ``keep_committed_ledger``
(what ``StreamSourcesResource`` configures) the ledger holds one ``committed`` entry per batch,
the killed one included — no event day goes unreported — and ``acknowledge`` removes them all;
without it (two of the stages) nothing is left at all.

The brokers are librdkafka's mock cluster, started in this process and reached by the
subprocesses over 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.kafka_source import (
    KafkaSourceConfig,
    acknowledge,
    lag,
    pending_days,
    positions,
)
from llm_data_platform_tests.conftest import time_bound

STREAM = "conversations"
N_EVENTS = 1000
BATCH = 200  # the crashed run's batch size: ~8 batches over the mock cluster's 4 partitions
RESTART_BATCH = 300  # the restart's


QUIET = logging.getLogger("test.kafka.sigkill")
QUIET.setLevel(logging.CRITICAL)
STAGES = ["before_write", "mid_write", "after_write_before_commit", "after_commit"]


@pytest.fixture(autouse=True)
def bounded():
    with time_bound(150, "SIGKILL test"):
        yield


# The ingest process. argv[1]: JSON {config kwargs, lake root, stage or null, marker path}.
WORKER = r"""
import json, logging, os, signal, sys

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.kafka_source import KafkaSourceConfig, ingest_once, lag

args = json.loads(sys.argv[1])
quiet = logging.getLogger("worker.librdkafka")
quiet.setLevel(logging.CRITICAL)
config = KafkaSourceConfig(**args["config"], consumer_config={"logger": quiet})
lake = LakeResource(root=args["lake"])
stage = args["stage"]
batches = []  # identities seen at `stage`, in order


def fault(name, details):
    if name != stage:
        return
    if details["identity"] not in batches:
        batches.append(details["identity"])
    if len(batches) == 2 and (name != "mid_write" or details["index"] == 1):
        with open(args["marker"], "w") as f:
            json.dump({"identity": details["identity"], "details": details}, f)
        os.kill(os.getpid(), signal.SIGKILL)


reports = []
for _ in range(5):
    report = ingest_once(config, lake, fault=fault if stage else None)
    reports.append(
        {
            "messages": report.messages,
            "rows": report.rows,
            "stopped": report.stopped,
            "batches": [b.identity for b in report.batches],
            "recovered": report.recovered,
            "recovered_messages": report.recovered_messages,
        }
    )
    if not any(lag(config).values()):
        break
print(json.dumps(reports))
"""


def events(n: int) -> list[bytes]:
    """Valid events over three event days (every batch spans three day files)."""
    out = []
    for i in range(n):
        when = datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(days=i % 3, seconds=i)
        event = {
            "event_id": f"e{i:06d}",
            "type": "message",
            "conversation_id": f"c{i // 4:05d}",
            "turn": i % 4,
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"message {i} about lists and tuples",
            "user_id": f"u{i % 7}",
            "timestamp": when.isoformat().replace("+00:00", "Z"),
        }
        out.append(json.dumps(event).encode())
    return out


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    """(partition, offset) of each value; many keys, so every partition gets some."""
    where: dict[int, tuple[int, int]] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "logger": QUIET})
    for i, value in enumerate(values):

        def delivered(err, msg, i=i):
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        producer.produce(topic, key=f"c{i // 4:05d}".encode(), value=value, on_delivery=delivered)
    assert producer.flush(20) == 0
    return [where[i] for i in range(len(values))]


def _run_worker(tmp_path: Path, config: dict, lake_root: str, stage: str | None):
    script = tmp_path / "ingest_worker.py"
    script.write_text(WORKER)
    marker = tmp_path / f"killed-at-{stage}.json"
    args = {"config": config, "lake": lake_root, "stage": stage, "marker": str(marker)}
    done = subprocess.run(  # on timeout, run() kills the child it started, then raises
        [sys.executable, str(script), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    return done, marker


def _ledger(lake_root: Path) -> list[dict]:
    folder = lake_root / "raw" / f"{STREAM}_batches" / "_ledger"
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


def _batch_files(lake_root: Path, table: str) -> list[Path]:
    """Every visible Parquet file of the table (writers' hidden temp files skipped)."""
    return sorted(
        p for p in (lake_root / "raw" / table).glob("dt=*/*.parquet") if not p.name.startswith(".")
    )


@pytest.mark.parametrize(
    ("stage", "keep_ledger"),
    [
        *((stage, True) for stage in STAGES),
        ("after_write_before_commit", False),
        ("after_commit", False),
    ],
)
def test_sigkill_at_each_stage_then_restart_every_event_once(
    stage, keep_ledger, bootstrap, tmp_path
):
    topic = f"kill-{stage.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    produced = events(N_EVENTS)  # three event days: each batch writes three day files
    where = _produce(bootstrap, topic, produced)
    ids = [json.loads(v)["event_id"] for v in produced]
    lake_root = tmp_path / "lake"
    base = dict(
        bootstrap_servers=bootstrap,
        topic=topic,
        group_id=f"ldp-{topic}",
        stream=STREAM,
        poll_timeout_s=0.5,
        run_timeout_s=30,
        idle_timeout_s=5,
        keep_committed_ledger=keep_ledger,
    )
    config = KafkaSourceConfig(**base, consumer_config={"logger": QUIET})
    high = {p: h for p, (_, h) in positions(config).items()}
    assert sum(high.values()) == N_EVENTS and len([h for h in high.values() if h]) >= 3

    # 1. the ingest is killed the second time it reaches `stage`
    killed, marker = _run_worker(tmp_path, {**base, "batch_messages": BATCH}, str(lake_root), stage)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert killed.stdout == ""  # it never got to report
    victim = json.loads(marker.read_text())["identity"]
    entries = {e["identity"]: e for e in _ledger(lake_root)}
    left = sum(lag(config).values())
    assert left > 0  # the run did not finish
    victim_files = [p for p in _batch_files(lake_root, f"{STREAM}_batches") if p.stem == victim]
    committed_to = {p: c for p, (c, _) in positions(config).items()}
    part, first, last = (
        entries[victim]["partition"],
        entries[victim]["first"],
        entries[victim]["last"],
    )
    if stage == "before_write":
        assert entries[victim]["state"] == "writing" and victim_files == []
        assert committed_to[part] <= first
    elif stage == "mid_write":
        assert entries[victim]["state"] == "writing" and len(victim_files) == 1  # 1 file of 3
        assert committed_to[part] <= first
    elif stage == "after_write_before_commit":
        assert entries[victim]["state"] == "written" and len(victim_files) == 3
        assert committed_to[part] <= first  # durable, but its offsets not committed
        assert left < N_EVENTS  # the batch before it was committed
    else:
        assert entries[victim]["state"] == "written" and len(victim_files) == 3
        assert committed_to[part] == last + 1  # committed, the ledger not yet settled
    for path in _batch_files(lake_root, f"{STREAM}_batches"):
        pq.read_table(path)  # every visible file is whole, even after SIGKILL

    # 2. a restart (another batch size) runs to the end
    restart, _ = _run_worker(
        tmp_path, {**base, "batch_messages": RESTART_BATCH}, str(lake_root), None
    )
    assert restart.returncode == 0, restart.stderr[-4000:]
    reports = json.loads(restart.stdout)
    rewritten = {i for r in reports for i in r["batches"]}
    recovered = {i for r in reports for i in r["recovered"]}
    if stage in {"before_write", "mid_write"}:
        assert victim in rewritten  # its range was kept: the same name, completed
    elif stage == "after_write_before_commit":
        assert victim in recovered and victim not in rewritten  # committed from the ledger
    else:
        assert victim not in recovered | rewritten  # already committed: not read again
    assert sum(r["messages"] + r["recovered_messages"] for r in reports) == left

    # 3. what the lake holds, read file by file: every event once
    seen: Counter[str] = Counter()
    offsets_of: dict[str, tuple[int, int]] = {}
    ranges: dict[int, list[tuple[int, int]]] = {}
    names = set()
    for path in _batch_files(lake_root, f"{STREAM}_batches"):
        names.add(path.stem)
        table = pq.read_table(path, columns=["event_id", "source_file", "source_line"])
        for row in table.to_pylist():
            seen[row["event_id"]] += 1
            _, _, topic_name, p, start = row["source_file"].split("/")
            assert topic_name == topic
            offsets_of[row["event_id"]] = (int(p), int(start) + row["source_line"] - 1)
    for name in names:
        p, first_offset, last_offset = name.removeprefix(f"kafka-{topic}-").split("-")
        ranges.setdefault(int(p), []).append((int(first_offset), int(last_offset)))
    duplicated = {i: n for i, n in seen.items() if n > 1}
    lost = set(ids) - set(seen)
    assert (len(duplicated), len(lost)) == (0, 0), (sorted(duplicated)[:5], sorted(lost)[:5])
    assert set(seen) == set(ids) and sum(seen.values()) == N_EVENTS
    assert offsets_of == dict(zip(ids, where, strict=True))  # pointers back to the offsets
    assert set(ranges) == {p for p, h in high.items() if h}
    for p, spans in ranges.items():  # batch ranges tile the partition's log, no overlap
        spans.sort()
        assert spans[0][0] == 0 and spans[-1][1] == high[p] - 1, (p, spans)
        assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:], strict=False)), (p, spans)
    assert _batch_files(lake_root, f"{STREAM}_batches_quarantine") == []  # all events valid
    assert set(lag(config).values()) == {0}

    # 4. the ledger: no batch left writing or written. Kept until acknowledged (what
    # StreamSourcesResource configures): one committed entry per batch, the killed one included,
    # so no day goes unreported; acknowledging removes them. Not kept: nothing is left.
    lake = LakeResource(root=str(lake_root))
    states = Counter(e["state"] for e in _ledger(lake_root))
    if not keep_ledger:
        assert states == {} and pending_days(lake, config) == {}
        return
    assert set(states) == {"committed"}, states
    pending = pending_days(lake, config)
    identities = {i for batch_ids in pending.values() for i in batch_ids}
    assert identities == names and victim in identities
    assert sorted(pending) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert acknowledge(lake, config, identities) == len(names)
    assert _ledger(lake_root) == [] and pending_days(lake, config) == {}
