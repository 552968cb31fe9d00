"""Kafka → raw micro-batches, exactly once in effect, against librdkafka's mock cluster.

The mock cluster is a real Kafka protocol endpoint on 127.0.0.1 (brokers started inside a
producer created with ``test.mock.num.brokers``); the platform's own consumer connects to it by
its bootstrap address, as it would to a real cluster. Topics are auto-created with the mock
cluster's default of 4 partitions. Each test produces from two producers with many keys, then
checks what the lake holds: every event once (distinct event ids and row counts, before and
after ``read_day``'s de-duplication), committed offsets at the end of the log.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.kafka_source import (
    KafkaSourceConfig,
    acknowledge,
    batch_identity,
    ingest_once,
    lag,
    pending_days,
)
from llm_data_platform.streaming.microbatch import batch_table_names, read_day_detailed
from llm_data_platform.streaming.producer import produce_synthetic
from llm_data_platform_tests.conftest import time_bound

STREAM = "conversations"

QUIET = logging.getLogger("test.librdkafka")
QUIET.setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def bounded():
    with time_bound(90, "Kafka streaming test"):
        yield


@pytest.fixture
def lake(tmp_path):
    return LakeResource(root=str(tmp_path / "lake"))


def _config(bootstrap: str, topic: str, **kw) -> KafkaSourceConfig:
    base = dict(
        bootstrap_servers=bootstrap,
        topic=topic,
        group_id=f"ldp-{topic}",
        stream=STREAM,
        poll_timeout_s=0.5,
        run_timeout_s=30,
        idle_timeout_s=5,
        consumer_config={"logger": QUIET},
    )
    base.update(kw)
    return KafkaSourceConfig(**base)


def _event(i: int, day_offset: int = 0) -> dict:
    ts = datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(days=day_offset, seconds=i)
    conversation = f"c{i // 4:05d}"
    if i % 4 == 3:
        return {
            "event_id": f"e{i:06d}",
            "type": "feedback",
            "conversation_id": conversation,
            "rating": 1 + i % 5,
            "user_id": f"u{i % 7}",
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
        }
    return {
        "event_id": f"e{i:06d}",
        "type": "message",
        "conversation_id": conversation,
        "turn": i % 4,
        "role": "user" if i % 2 == 0 else "assistant",
        "content": f"message {i} about lists and tuples",
        "user_id": f"u{i % 7}",
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
    }


def produce(bootstrap: str, topic: str, values: list[bytes | None], keys: list[str] | None = None):
    """From two producers (half each), keyed; returns (partition, offset) per value."""
    where: dict[int, tuple[int, int]] = {}
    producers = [
        Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 3_000_000, "logger": QUIET})
        for _ in range(2)
    ]
    for i, value in enumerate(values):

        def delivered(err, msg, i=i):
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        key = (keys[i] if keys else f"c{i // 4:05d}").encode()
        producers[i % 2].produce(topic, key=key, value=value, on_delivery=delivered)
    for p in producers:
        assert p.flush(20) == 0
    return [where[i] for i in range(len(values))]


def events(n: int, start: int = 0) -> list[bytes]:
    # three event days, so batches span several day files (late events included)
    return [json.dumps(_event(i, day_offset=i % 3)).encode() for i in range(start, start + n)]


def lake_days(lake: LakeResource) -> list[str]:
    days = set()
    for table in batch_table_names(STREAM):
        days.update(lake.list_partitions_any("raw", table, "dt"))
    return sorted(days)


def lake_state(lake: LakeResource):
    """(rows before dedup, distinct event ids, rows after read_day, event-file names)."""
    received = 0
    ids: list[str] = []
    names = set()
    for day in lake_days(lake):
        result = read_day_detailed(lake, STREAM, day)
        received += result.received_rows
        ids += result.rows["event_id"].to_pylist()
        names.update(result.batches)
    return received, len(set(ids)), len(ids), names


def run_until_caught_up(config, lake, runs: int = 20):
    reports = []
    for _ in range(runs):
        report = ingest_once(config, lake)
        reports.append(report)
        if not any(lag(config).values()):
            return reports
    raise AssertionError(f"not caught up after {runs} runs")


def test_every_event_once_across_partitions_and_bounded_runs(bootstrap, lake):
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    produced = events(3000)
    produce(bootstrap, topic, produced)
    config = _config(bootstrap, topic, max_messages=1000, batch_messages=300)
    assert sum(lag(config).values()) == 3000

    reports = run_until_caught_up(config, lake)
    assert len(reports) >= 3  # max_messages bounds each run
    assert all(r.messages <= 1000 for r in reports)
    assert reports[0].stopped == "max_messages"
    assert sum(r.rows for r in reports) == 3000
    partitions_used = {p for r in reports for p, part in r.partitions.items() if part.messages}
    assert len(partitions_used) >= 3  # the mock cluster's 4 partitions, many keys
    received, distinct, kept, names = lake_state(lake)
    assert (received, distinct, kept) == (3000, 3000, 3000)
    assert all(n.startswith(f"kafka-{topic}-") for n in names)
    assert set(lag(config).values()) == {0}

    # nothing new: a run reads nothing and writes nothing
    idle = ingest_once(config, lake)
    assert (idle.messages, idle.batches) == (0, [])
    # new arrivals: only they are read
    produce(bootstrap, topic, events(500, start=3000))
    more = ingest_once(config, lake)
    assert more.messages == 500
    assert lake_state(lake)[:3] == (3500, 3500, 3500)


def test_reads_up_to_the_watermarks_taken_at_the_start(bootstrap, lake):
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, events(400))
    config = _config(bootstrap, topic, batch_messages=50)
    late_arrivals = []

    def produce_during_the_run(stage, details):
        if stage == "before_write" and not late_arrivals:
            late_arrivals.append(produce(bootstrap, topic, events(100, start=400)))

    report = ingest_once(config, lake, fault=produce_during_the_run)
    assert late_arrivals and report.messages == 400
    assert sum(lag(config).values()) == 100
    assert ingest_once(config, lake).messages == 100
    assert lake_state(lake)[:3] == (500, 500, 500)


def test_crash_after_write_before_commit_restarts_exactly_once(bootstrap, lake):
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, events(1200))
    config = _config(bootstrap, topic, batch_messages=100)
    crashed = []

    def crash(stage, details):
        if stage == "after_write_before_commit" and len(crashed) < 1:
            crashed.append(details["identity"])
            raise RuntimeError("killed between write and commit")

    with pytest.raises(RuntimeError, match="between write and commit"):
        ingest_once(config, lake, fault=crash)
    files_after_crash = lake_state(lake)[3]
    assert crashed[0] in files_after_crash  # the batch's files are in the lake
    assert sum(lag(config).values()) == 1200  # but its offsets are not committed

    report = ingest_once(config, lake)
    assert crashed[0] in report.recovered  # committed from the ledger, not re-read
    assert report.recovered_messages >= 100
    assert report.messages + report.recovered_messages == 1200
    received, distinct, kept, names = lake_state(lake)
    assert (received, distinct, kept) == (1200, 1200, 1200)
    assert files_after_crash <= names
    assert set(lag(config).values()) == {0}


def test_crash_after_write_then_new_arrivals_then_restart(bootstrap, lake):
    """New events arrive while the run is down: the restart recovers, then reads them too."""
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, events(600))
    config = _config(bootstrap, topic, batch_messages=1000)

    def crash(stage, details):
        if stage == "after_write_before_commit":
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        ingest_once(config, lake, fault=crash)
    produce(bootstrap, topic, events(300, start=600))
    run_until_caught_up(config, lake)
    received, distinct, kept, _ = lake_state(lake)
    assert (received, distinct, kept) == (900, 900, 900)


def test_crash_mid_write_leaves_nothing_partial_and_restart_completes(bootstrap, lake, monkeypatch):
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, events(900))
    config = _config(bootstrap, topic, batch_messages=200)
    writing = []

    def torn_fsync(fd):  # the power goes out while the second file's bytes are being written
        os.ftruncate(fd, max(1, os.fstat(fd).st_size // 2))
        raise OSError("power lost mid-write")

    def crash_mid_write(stage, details):
        if stage == "mid_write" and details["index"] == 1 and not writing:
            writing.append(details["identity"])
            monkeypatch.setattr(os, "fsync", torn_fsync)

    with pytest.raises(OSError, match="power lost"):
        ingest_once(config, lake, fault=crash_mid_write)
    monkeypatch.undo()

    # a half-written temp file is on disk, but no reader sees it; every visible file is whole
    root = lake.path("raw")
    temp_files, visible = [], []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            (temp_files if name.startswith(".") else visible).append(os.path.join(dirpath, name))
    assert temp_files
    for path in visible:
        if path.endswith(".parquet"):
            pq.read_table(path)  # complete: readable
    assert sum(lag(config).values()) == 900

    # more arrivals and a bigger batch size before the restart: the crashed batch keeps its
    # range (ledger), so it is completed under the same name, not re-cut into a new one
    produce(bootstrap, topic, events(100, start=900))
    run_until_caught_up(_config(bootstrap, topic, batch_messages=500), lake)
    received, distinct, kept, names = lake_state(lake)
    assert writing[0] in names
    assert (received, distinct, kept) == (1000, 1000, 1000)


def test_crash_after_commit_loses_no_run_trigger(bootstrap, lake):
    """With the ledger kept until acknowledged, the days to refresh survive any crash."""
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, events(600))
    config = _config(bootstrap, topic, batch_messages=100, keep_committed_ledger=True)
    crashed = []

    def crash(stage, details):
        if stage == "after_commit" and not crashed:
            crashed.append(details["identity"])
            raise RuntimeError("killed after the commit, before anything was requested")

    with pytest.raises(RuntimeError):
        ingest_once(config, lake, fault=crash)
    assert sum(lag(config).values()) <= 500  # that batch's offsets are committed
    run_until_caught_up(config, lake)
    pending = pending_days(lake, config)
    identities = {i for ids in pending.values() for i in ids}
    assert crashed[0] in identities  # still waiting for its runs to be requested
    assert set(pending) == set(lake_days(lake))
    assert acknowledge(lake, config, identities) == len(identities)
    assert pending_days(lake, config) == {}
    assert lake_state(lake)[:3] == (600, 600, 600)


def test_malformed_messages_are_quarantined_and_offsets_advance(bootstrap, lake):
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    good = events(50)
    oversize = json.dumps(dict(_event(999), content="x" * 1_100_000)).encode()
    bad: dict[str, bytes | None] = {
        "invalid JSON": b'{"event_id": "b1", "type": "message", ',
        "field 'turn'": json.dumps(dict(_event(1000), turn="two")).encode(),
        "field 'conversation_id'": json.dumps(
            {k: v for k, v in _event(1001).items() if k != "conversation_id"}
        ).encode(),
        "exceeds": oversize,
        "not valid UTF-8": b'{"event_id": "\xff\xfe\xfa"}',
        "null message value": None,
        "a JSON list": b"[1, 2, 3]",
    }
    values = good + list(bad.values())
    where = produce(bootstrap, topic, values, keys=[f"k{i % 9}" for i in range(len(values))])
    config = _config(bootstrap, topic)
    report = ingest_once(config, lake)

    assert report.messages == len(values)
    assert (report.rows, report.quarantined) == (50, len(bad))
    assert set(lag(config).values()) == {0}  # offsets advanced past the bad messages
    quarantine = []
    for day in lake_days(lake):
        quarantine += read_day_detailed(lake, STREAM, day).quarantine.to_pylist()
    assert len(quarantine) == len(bad)
    for (expected, value), (partition, offset) in zip(bad.items(), where[len(good) :], strict=True):
        rows = [
            q
            for q in quarantine
            if q["source_file"].startswith(f"kafka://{topic}/{partition}/")
            and int(q["source_file"].rsplit("/", 1)[1]) + q["source_line"] - 1 == offset
        ]
        assert len(rows) == 1, expected  # the pointer leads back to the message's offset
        assert expected in rows[0]["reason"]
        if value is not None and len(value) < 10_000:
            assert rows[0]["record"] == value.decode("utf-8", "replace")
    reasons = Counter(report.reasons)
    assert reasons["invalid JSON"] == 1 and sum(reasons.values()) == len(bad)


def test_batch_names_are_offset_ranges(bootstrap, lake):
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, events(40), keys=["one-key"] * 40)  # one partition
    report = ingest_once(_config(bootstrap, topic, batch_messages=25), lake)
    assert [b.identity for b in report.batches] == [
        batch_identity(topic, p, first, last)
        for p in [next(p for p, r in report.partitions.items() if r.messages)]
        for first, last in [(0, 24), (25, 39)]
    ]


def test_synthetic_producer_into_kafka(bootstrap, lake):
    topic = f"chat-{uuid.uuid4().hex[:8]}"
    sent = produce_synthetic(
        f"kafka://{bootstrap}/{topic}",
        rate=400,
        duration=1.0,
        kafka_config={"logger": QUIET},
        malformed_fraction=0.05,
    )
    assert sent.kind == "kafka" and sent.events == 400
    report = ingest_once(_config(bootstrap, topic), lake)
    assert report.messages == 400
    assert report.rows + report.quarantined == 400
    assert report.quarantined == sent.malformed


# ---- Arrow's JSON reader and json.loads give the same rows under the same rules -----------
def _tricky_lines() -> list[bytes]:
    message = _event(0)
    feedback = _event(3)

    def dumps(obj) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode()

    lines = [dumps(message), dumps(feedback)]
    variants = {
        "turn": [0, 9999, 10000, -1, 1.0, True, "1", None, 10**30],
        "rating": [0, 1, 5, 6, True, 5.0, None],
        "role": ["user", "assistant", "system", "USER", "", None, 3],
        "content": ["", None, 3, ["x"], "é\u2028\x00ok", "\U0001f600"],
        "type": ["message", "feedback", "Message", None, 1],
        "user_id": ["u", 5, None, ""],
        "event_id": [" ", "\u2003", "\x1c", "\u200b", " e ", "", None, 7],
        "conversation_id": ["\t", "c", "\u3000x", None],
        "timestamp": [
            "2026-01-05T10:00:00Z",
            "2026-01-05T10:00:00.5Z",
            "2026-01-05T10:00:00.123456+05:30",
            "2026-01-05T23:30:00-23:59",
            "2026-01-05T10:00:00",
            "2026-01-05",
            " 2026-01-05T10:00:00Z",
            "2026-01-05T10:00:00.1234567Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-01-05T24:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "2026-01-05T10:00:00z",
            "2026-01-05 10:00:00Z",
            20260105,
            None,
        ],
    }
    for base in (message, feedback):
        for key, values in variants.items():
            for value in values:
                lines.append(dumps({**base, key: value}))
            lines.append(dumps({k: v for k, v in base.items() if k != key}))
    text = dumps(message).decode()
    lines += [
        text.replace('{"event_id"', '{"event_id": "dup", "event_id"', 1).encode(),
        text.replace("{", '{"x": 1, "x": 2, ', 1).encode(),
        text.replace("{", '{"nested": {"a": [1, {"b": null}]}, ', 1).encode(),
        *[text.replace("{", '{"n": ' + s + ", ", 1).encode() for s in ("NaN", "Infinity")],
        *[text.replace("{", '{"n": ' + s + ", ", 1).encode() for s in ("-Infinity", "Inf")],
        *[text.replace("{", '{"n": ' + s + ", ", 1).encode() for s in ("-Inf", "-NaN", "1E400")],
        text.replace("}", ", }").encode(),
        text.replace('"', "'").encode(),
        b"\xef\xbb\xbf" + text.encode(),
        b" " + text.encode(),
        text.encode() + b" ",
        text.encode() + b"\n",
        text.replace(", ", ",\n", 1).encode(),
        text.replace(", ", ",\r", 1).encode(),
        text.encode() + text.encode(),
        text.encode() + b"\nnull",
        b"null",
        b"\nnull",
        b"[]",
        b'"s"',
        b"",
        b"   ",
        b"[" * 5000 + b"]" * 5000,
        text.replace("message 0", "\\ud800 lone").encode(),
        text.replace("message 0", "\\ud83d\\ude00 pair").encode(),
        text.replace("message 0", "caf\xc3").encode(),
        text.replace("message 0", "\xed\xa0\x80").encode(),
        text.replace("message 0", "x" * 1_000_001).encode(),
        text.replace("message 0", "\\u00e9\\/\\t").encode(),
        text.replace("message 0", "\x01").encode(),
    ]
    return lines


def _both_paths(lines: list[bytes], arrivals):
    from llm_data_platform.streaming.parse import parse_batch

    numbered = list(enumerate(lines, start=1))
    fast = parse_batch(STREAM, numbered, "kafka://t/0/00000000000000000000", arrivals)
    slow = parse_batch(STREAM, numbered, "kafka://t/0/00000000000000000000", arrivals, fast=False)
    return fast, slow


@pytest.mark.parametrize("bisect_down_to", [128, 1])
def test_arrow_reader_equals_json_loads_on_edge_cases(bisect_down_to, monkeypatch):
    import pyarrow as pa

    from llm_data_platform.streaming import parse

    # down to 1: every line Arrow can read is read by Arrow, the odd ones too
    monkeypatch.setattr(parse, "_BISECT_MIN", bisect_down_to)
    lines = _tricky_lines() * 3  # blocks of good and bad lines, bisected down
    lines += [json.dumps(_event(i)).encode() for i in range(1000)]
    base = datetime(2026, 1, 6, 23, 59, 59, 900_000, tzinfo=UTC)
    times = [base + timedelta(milliseconds=i) for i in range(len(lines))]  # two arrival days
    for arrivals in (base, times, pa.array(times, pa.timestamp("us", tz="UTC"))):
        fast, slow = _both_paths(lines, arrivals)
        assert fast.fast_rows > (800 if bisect_down_to > 1 else 1000)  # the bulk went fast
        assert slow.fast_rows == 0
        assert fast.rows.equals(slow.rows)
        assert fast.row_days.equals(slow.row_days)
        assert fast.quarantine.equals(slow.quarantine)
        assert fast.quarantine_days.equals(slow.quarantine_days)
        assert fast.rows.num_rows + fast.quarantine.num_rows == len(lines)


def test_records_that_break_json_loads_are_quarantined_not_raised():
    fast, _ = _both_paths(
        [
            b"[" * 5000 + b"]" * 5000,
            json.dumps(dict(_event(1), timestamp="0001-01-01T00:00:00+01:00")).encode(),
            json.dumps(_event(2)).encode().replace(b"message 2", b"\\ud800"),
        ],
        datetime(2026, 1, 6, tzinfo=UTC),
    )
    reasons = fast.quarantine["reason"].to_pylist()
    assert fast.rows.num_rows == 0 and len(reasons) == 3
    assert reasons[0] == "invalid JSON: nested too deeply"
    assert reasons[1].startswith("unparseable timestamp")
    assert "surrogate" in reasons[2]


def test_arrow_reader_equals_json_loads_on_mutated_lines(monkeypatch):
    """Random byte edits of valid events (seeded): both paths agree line for line."""
    import random

    from llm_data_platform.streaming import parse

    monkeypatch.setattr(parse, "_BISECT_MIN", 1)
    rng = random.Random(20260105)
    alphabet = b'{}[]":,0123456789.eE+-tfnul \\/aZT\x00\xff\xc3\xa9\t'
    lines = []
    for _ in range(4000):
        value = bytearray(json.dumps(_event(rng.randrange(10**5), rng.randrange(3))).encode())
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            op, pos = rng.randrange(3), rng.randrange(len(value) + 1)
            char = alphabet[rng.randrange(len(alphabet))]
            if op == 0 and pos < len(value):
                value[pos] = char
            elif op == 1:
                value.insert(pos, char)
            elif pos < len(value):
                del value[pos]
        lines.append(bytes(value))
    fast, slow = _both_paths(lines, datetime(2026, 1, 6, tzinfo=UTC))
    assert fast.fast_rows > 1000
    assert fast.rows.equals(slow.rows) and fast.row_days.equals(slow.row_days)
    assert fast.quarantine.equals(slow.quarantine)
    assert fast.quarantine_days.equals(slow.quarantine_days)
