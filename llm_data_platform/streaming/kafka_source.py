"""Kafka topic → raw micro-batches, exactly once in effect (confluent-kafka, no Dagster import).

One ``ingest_once`` call is one bounded run of a consumer group over one topic:

1. Take, per partition, the group's committed offset and the high watermark *at the start of
   the run*; the run reads ``[committed, high)`` (from the log start when nothing is committed),
   at most ``max_messages`` in all, shared fairly between partitions.
2. Messages are grouped per partition into micro-batches of at most ``batch_messages``,
   named by their offset range: ``kafka-<topic>-<partition>-<first>-<last>`` (20-digit offsets,
   like Kafka's own segment files). ``source_file`` is ``kafka://<topic>/<partition>/<first>``
   and ``source_line`` is ``offset - first + 1``: a pointer back to the original message.
3. Per batch: a ledger entry records the range (state ``writing``), the files are written
   (``write_microbatch``, each file atomic), the entry is marked ``written``, and only then the
   offset ``last + 1`` is committed (synchronously); the entry is then removed. Batches are
   written by one writer thread, in order, while the next messages are read; commits follow
   in the same order.

Crash anywhere and restart: before the commit the group's offset still points at the batch's
first offset, so the batch is read again. A ``written`` ledger entry at that offset means the
files are complete: the offset is committed without re-reading. A ``writing`` entry fixes the
batch's range, so the re-read writes exactly the same files (same names, same bytes) and
completes the batch. Every event is therefore in the raw zone once per identity, and
``read_day`` de-duplicates by ``event_id`` whatever is replayed outside the ledger (a group
reset by an operator, two concurrent runs of the same group).

Malformed messages (bad JSON, missing fields, wrong types, oversize, undecodable bytes, null
values) are quarantined with the reason by ``write_microbatch``; their offsets are committed
with the batch like any other.
"""

from __future__ import annotations

import bisect
import json
import logging
import posixpath
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from llm_data_platform.streaming.microbatch import (
    ZONE,
    FaultHook,
    LineColumns,
    MicroBatchResult,
    batch_table_names,
    safe_identity,
    write_microbatch,
)

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

log = logging.getLogger(__name__)

OFFSET_WIDTH = 20
NULL_VALUE = "null message value (a tombstone or an empty produce)"


@dataclass(frozen=True)
class KafkaSourceConfig:
    bootstrap_servers: str
    topic: str
    group_id: str
    stream: str = "conversations"
    max_messages: int = 100_000  # per ingest run, all partitions together
    batch_messages: int = 25_000  # per micro-batch (bounds memory)
    max_in_flight: int = 2  # batches written while the next ones are read
    poll_timeout_s: float = 1.0  # one consume() call
    run_timeout_s: float = 45.0  # stop reading after this (what was read is still written)
    idle_timeout_s: float = 10.0  # give up on offsets below the watermark that never come
    metadata_timeout_s: float = 10.0
    # Keep each committed batch's ledger entry (state ``committed``, with its event days) until
    # ``acknowledge`` removes it: a sensor requests runs for ``pending_days`` and acknowledges
    # them, so even a crash between the commit and the run requests loses no trigger.
    keep_committed_ledger: bool = False
    consumer_config: Mapping[str, Any] = field(default_factory=dict)  # security.protocol, …

    @classmethod
    def from_url(cls, url: str, group_id: str, **kwargs: Any) -> KafkaSourceConfig:
        """``kafka://host:port[,host:port]/topic``."""
        parsed = urlparse(url)
        topic = parsed.path.strip("/")
        if parsed.scheme != "kafka" or not parsed.netloc or not topic:
            raise ValueError(f"Expected kafka://host:port/topic, got {url!r}")
        return cls(bootstrap_servers=parsed.netloc, topic=topic, group_id=group_id, **kwargs)


def consumer_settings(config: KafkaSourceConfig) -> dict[str, Any]:
    return {
        "bootstrap.servers": config.bootstrap_servers,
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "client.id": f"ldp-{config.stream}-ingest",
        # librdkafka ≥ 2.x pauses fetching for fetch.queue.backoff.ms (1 s) whenever its local
        # queue is full: a bulk reader wants it short. The queue itself bounds memory.
        "fetch.queue.backoff.ms": 20,
        "queued.max.messages.kbytes": 32_768,
        "logger": logging.getLogger("llm_data_platform.streaming.librdkafka"),
        **dict(config.consumer_config),
    }


@dataclass
class PartitionReport:
    partition: int
    start: int  # first offset this run read from
    high_watermark: int  # at the start of the run
    target: int  # exclusive bound of this run (≤ high_watermark unless recovering)
    committed: int  # the group's offset after the run
    messages: int = 0
    lost_to_retention: int = 0  # committed offset had already been deleted by retention


@dataclass
class IngestReport:
    topic: str
    group_id: str
    stream: str
    messages: int = 0
    rows: int = 0
    quarantined: int = 0
    late_events: int = 0
    batches: list[MicroBatchResult] = field(default_factory=list)
    partitions: dict[int, PartitionReport] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)  # written, uncommitted: now committed
    recovered_days: dict[str, list[str]] = field(default_factory=dict)  # their event days
    recovered_messages: int = 0
    first_message_seconds: float | None = None  # start-up: until the first message arrived
    reasons: dict[str, int] = field(default_factory=dict)
    stopped: str = "caught_up"  # caught_up | max_messages | timeout | idle | no_topic
    seconds: float = 0.0

    @property
    def lag_before(self) -> dict[int, int]:
        return {p: r.high_watermark - r.start for p, r in self.partitions.items()}

    @property
    def lag_after(self) -> dict[int, int]:
        """Lag left against the start-of-run watermarks (new arrivals not counted)."""
        return {p: max(0, r.high_watermark - r.committed) for p, r in self.partitions.items()}

    @property
    def days(self) -> dict[str, list[str]]:
        """Event day → identities of the batches this run wrote or recovered for it: the daily
        partitions to refresh (a crashed run never got to request its days)."""
        out: dict[str, list[str]] = {}
        for batch in self.batches:
            for day in batch.days:
                out.setdefault(day, []).append(batch.identity)
        for day, identities in self.recovered_days.items():
            out.setdefault(day, []).extend(identities)
        return {d: sorted(set(ids)) for d, ids in sorted(out.items())}


def _batch_lines(topic: str, partition: int, batch: list[Message], offsets: list[int]):
    """(lines, source, arrival times, rejected) of a batch; line number = offset - first + 1;
    null values (tombstones) are ``rejected``: quarantined with their reason."""
    first = offsets[0]
    stamps = pa.array([m.timestamp()[1] for m in batch], pa.int64())
    if pc.min(stamps).as_py() < 0:  # no timestamp (old message format): arrival = now
        stamps = pc.if_else(pc.less(stamps, 0), int(time.time() * 1000), stamps)
    arrivals = stamps.cast(pa.timestamp("ms", tz="UTC"))
    values = [m.value() for m in batch]
    numbers = [o - first + 1 for o in offsets]
    rejected: list[tuple[int, bytes, str, datetime]] = []
    if None in values:
        keep = [v is not None for v in values]
        times = arrivals.to_pylist()
        rejected = [
            (number, b"", NULL_VALUE, when)
            for number, when, k in zip(numbers, times, keep, strict=True)
            if not k
        ]
        numbers = [n for n, k in zip(numbers, keep, strict=True) if k]
        values = [v for v, k in zip(values, keep, strict=True) if k]
        arrivals = arrivals.filter(pa.array(keep))
    lines = LineColumns(numbers, values)
    return lines, batch_source(topic, partition, first), arrivals, rejected


def batch_identity(topic: str, partition: int, first: int, last: int) -> str:
    return f"kafka-{topic}-{partition}-{first:0{OFFSET_WIDTH}d}-{last:0{OFFSET_WIDTH}d}"


def batch_source(topic: str, partition: int, first: int) -> str:
    return f"kafka://{topic}/{partition}/{first:0{OFFSET_WIDTH}d}"


# ---- ledger ----------------------------------------------------------------------------------
def _ledger_path(lake: LakeResource, config: KafkaSourceConfig, partition: int, first: int) -> str:
    events_table, _ = batch_table_names(config.stream)
    return lake.path(
        ZONE,
        events_table,
        "_ledger",
        "kafka",
        safe_identity(config.group_id),
        safe_identity(config.topic),
        f"p={partition}",
        f"{first:0{OFFSET_WIDTH}d}.json",
    )


def _ledger_read(lake: LakeResource, path: str) -> dict | None:
    data = lake.read_bytes(path)
    return json.loads(data) if data else None


def _ledger_delete(lake: LakeResource, path: str) -> None:
    fs, _ = lake.filesystem()
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):  # already gone; a stale entry below the offset is inert
        log.debug("ledger entry %s not deleted", path)


def _ledger_done(lake: LakeResource, config: KafkaSourceConfig, path: str, entry: dict) -> None:
    """A batch's offsets are committed: drop its entry, or keep it for ``pending_days``."""
    if config.keep_committed_ledger:
        done = {**entry, "topic": config.topic, "state": "committed"}
        lake.write_bytes(path, json.dumps(done).encode())
    else:
        _ledger_delete(lake, path)


def _ledger_entries(lake: LakeResource, config: KafkaSourceConfig) -> list[tuple[str, dict]]:
    import pyarrow.fs as pafs

    folder = posixpath.dirname(posixpath.dirname(_ledger_path(lake, config, 0, 0)))
    fs, _ = lake.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    out = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            entry = _ledger_read(lake, info.path)
            if entry is not None:
                out.append((info.path, entry))
    return out


def pending_days(lake: LakeResource, config: KafkaSourceConfig) -> dict[str, list[str]]:
    """Event day → identities of committed batches not yet acknowledged (with
    ``keep_committed_ledger``): the daily partitions a sensor still has to request."""
    out: dict[str, list[str]] = {}
    for _, entry in _ledger_entries(lake, config):
        if entry.get("state") == "committed":
            for day in entry.get("days", {}):
                out.setdefault(day, []).append(entry["identity"])
    return {day: sorted(ids) for day, ids in sorted(out.items())}


def acknowledge(lake: LakeResource, config: KafkaSourceConfig, identities: set[str]) -> int:
    """Forget committed batches whose runs have been requested; returns how many."""
    done = 0
    for path, entry in _ledger_entries(lake, config):
        if entry.get("state") == "committed" and entry.get("identity") in identities:
            _ledger_delete(lake, path)
            done += 1
    return done


# ---- offsets -----------------------------------------------------------------------------------
def _partitions(consumer: Consumer, config: KafkaSourceConfig) -> list[int]:
    meta = consumer.list_topics(config.topic, timeout=config.metadata_timeout_s)
    topic = meta.topics.get(config.topic)
    if topic is None or topic.error is not None:
        return []
    return sorted(topic.partitions)


def _offsets(
    consumer: Consumer, config: KafkaSourceConfig, partitions: list[int]
) -> dict[int, tuple[int, int, int]]:
    """partition -> (committed or -1, low watermark, high watermark), high taken now."""
    tps = [TopicPartition(config.topic, p) for p in partitions]
    committed = {
        tp.partition: tp.offset for tp in consumer.committed(tps, timeout=config.metadata_timeout_s)
    }
    out = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(config.topic, p), timeout=config.metadata_timeout_s, cached=False
        )
        out[p] = (committed.get(p, -1), low, high)
    return out


def lag(config: KafkaSourceConfig) -> dict[int, int]:
    """Messages per partition not yet committed by the group (what a sensor polls)."""
    consumer = Consumer(consumer_settings(config))
    try:
        partitions = _partitions(consumer, config)
        return {
            p: high - max(committed, low) if committed >= 0 else high - low
            for p, (committed, low, high) in _offsets(consumer, config, partitions).items()
        }
    finally:
        consumer.close()


def _share(available: dict[int, int], budget: int) -> dict[int, int]:
    """Split ``budget`` between partitions fairly (water-filling), never above what each has."""
    out = {p: 0 for p in available}
    left = {p: a for p, a in available.items() if a > 0}
    while budget > 0 and left:
        each = max(1, budget // len(left))
        for p in sorted(left):
            take = min(each, left[p], budget)
            out[p] += take
            left[p] -= take
            budget -= take
            if left[p] == 0:
                del left[p]
            if budget == 0:
                break
    return out


def _commit(consumer: Consumer, topic: str, partition: int, offset: int) -> None:
    result = consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    for tp in result or []:
        if tp.error is not None:
            raise KafkaException(tp.error)


# ---- the run -----------------------------------------------------------------------------------
@dataclass
class _InFlight:
    partition: int
    first: int
    last: int
    messages: int
    identity: str
    ledger: str
    entry: dict
    future: Future


class _Stopped(Exception):
    """A write job skipped because an earlier one failed (the run is going down)."""


def ingest_once(
    config: KafkaSourceConfig,
    lake: LakeResource,
    *,
    fault: FaultHook | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> IngestReport:
    """Read the group's backlog (as of now, bounded) into raw micro-batches and commit it.

    Consuming and writing overlap: batches are written by one writer thread, in order, while
    the next messages are read (at most ``max_in_flight`` batches wait); each batch's offset is
    committed by this thread once its files and its ``written`` ledger entry are durable. After
    a failure no further batch is started, so the ledger of every partition holds written
    batches first, then at most one unfinished one: what the next run's recovery expects.

    ``fault(stage, details)`` is called at ``before_write``, ``mid_write`` (before each file
    of a batch), ``after_write_before_commit`` and ``after_commit``; raising there simulates a
    crash at that point (tests).
    """
    started = clock()
    report = IngestReport(config.topic, config.group_id, config.stream)
    reasons: Counter[str] = Counter()
    lake.filesystem()  # resolve the lake's filesystem once, before the writer thread uses it
    consumer = Consumer(consumer_settings(config))
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ldp-kafka-writer")
    failed = threading.Event()
    in_flight: deque[_InFlight] = deque()
    try:
        partitions = _partitions(consumer, config)
        if not partitions:
            report.stopped = "no_topic"
            return report
        offsets = _offsets(consumer, config, partitions)
        # Entries of batches whose offsets were committed just before a crash: settle them.
        for path, entry in _ledger_entries(lake, config):
            committed = offsets.get(entry.get("partition"), (-1, 0, 0))[0]
            if entry.get("state") != "committed" and 0 <= entry["last"] < committed:
                if entry.get("state") == "written":
                    _ledger_done(lake, config, path, entry)
                else:
                    _ledger_delete(lake, path)

        start: dict[int, int] = {}
        forced: dict[int, tuple[int, int]] = {}  # partition -> (first, last) of an unfinished batch
        for p, (committed, low, high) in offsets.items():
            begin = committed if committed >= 0 else low
            lost = 0
            if begin < low:
                lost, begin = low - begin, low
                log.warning("%s[%d]: %d messages deleted by retention", config.topic, p, lost)
            begin = min(begin, high)
            # Recovery: batches a crashed run wrote but did not commit, then its unfinished one.
            while begin < high:
                path = _ledger_path(lake, config, p, begin)
                entry = _ledger_read(lake, path)
                if entry is None:
                    break
                if entry.get("state") == "written":
                    _commit(consumer, config.topic, p, entry["last"] + 1)
                    report.recovered.append(entry["identity"])
                    report.recovered_messages += entry["last"] - entry["first"] + 1
                    for day in entry.get("days", {}):
                        report.recovered_days.setdefault(day, []).append(entry["identity"])
                    _ledger_done(lake, config, path, entry)
                    begin = entry["last"] + 1
                    continue
                forced[p] = (entry["first"], entry["last"])
                break
            start[p] = begin
            report.partitions[p] = PartitionReport(p, begin, high, begin, begin, 0, lost)

        share = _share({p: offsets[p][2] - start[p] for p in partitions}, config.max_messages)
        target: dict[int, int] = {}
        for p in partitions:
            bound = start[p] + share[p]
            if p in forced:
                bound = max(bound, min(forced[p][1] + 1, offsets[p][2]))
            target[p] = bound
            report.partitions[p].target = bound
        if sum(offsets[p][2] - target[p] for p in partitions) > 0:
            report.stopped = "max_messages"

        active = {p for p in partitions if target[p] > start[p]}
        if not active:
            return report
        consumer.assign([TopicPartition(config.topic, p, start[p]) for p in sorted(active)])
        buffers: dict[int, list[Message]] = {p: [] for p in active}

        def write(p: int, batch: list[Message], identity: str, path: str) -> MicroBatchResult:
            """Writer thread: ledger entry, files, ledger entry marked written."""
            if failed.is_set():
                raise _Stopped(identity)
            try:
                offsets = [m.offset() for m in batch]
                entry = {
                    "identity": safe_identity(identity),
                    "topic": config.topic,
                    "partition": p,
                    "first": offsets[0],
                    "last": offsets[-1],
                    "state": "writing",
                }
                lake.write_bytes(path, json.dumps(entry).encode())
                if fault is not None:
                    fault("before_write", {"identity": identity, "partition": p})
                lines, source, arrivals, rejected = _batch_lines(config.topic, p, batch, offsets)
                result = write_microbatch(
                    lake,
                    config.stream,
                    identity,
                    lines,
                    source,
                    arrivals,
                    rejected=rejected,
                    fault=fault,
                )
                entry.update(state="written", days=result.days, rows=result.rows)
                lake.write_bytes(path, json.dumps(entry).encode())
                return result
            except BaseException:
                failed.set()
                raise

        def settle(wait: bool) -> None:
            """Commit finished batches in order; with ``wait``, wait for the oldest first."""
            while in_flight and (wait or in_flight[0].future.done()):
                job = in_flight.popleft()
                wait = False
                result = job.future.result()  # a failed write raises here
                if fault is not None:
                    fault(
                        "after_write_before_commit",
                        {"identity": job.identity, "partition": job.partition},
                    )
                _commit(consumer, config.topic, job.partition, job.last + 1)
                if fault is not None:
                    fault("after_commit", {"identity": job.identity, "partition": job.partition})
                _ledger_done(lake, config, job.ledger, {**job.entry, "days": result.days})
                part = report.partitions[job.partition]
                part.committed = job.last + 1
                part.messages += job.messages
                report.batches.append(result)
                report.messages += job.messages
                report.rows += result.rows
                report.quarantined += result.quarantined
                report.late_events += result.late_events
                reasons.update(result.reasons)

        def flush(p: int, batch: list[Message]) -> None:
            first, last = batch[0].offset(), batch[-1].offset()
            identity = batch_identity(config.topic, p, first, last)
            path = _ledger_path(lake, config, p, first)
            future = writer.submit(write, p, batch, identity, path)
            entry = {
                "identity": safe_identity(identity),
                "partition": p,
                "first": first,
                "last": last,
            }
            in_flight.append(_InFlight(p, first, last, len(batch), identity, path, entry, future))
            while len(in_flight) > config.max_in_flight:
                settle(wait=True)

        def take(p: int, run: list[Message]) -> None:
            """Add a run of one partition's messages (offset order); cut and write batches."""
            done = run[-1].offset() >= target[p] - 1
            if run[-1].offset() >= target[p]:
                run = run[: bisect.bisect_left([m.offset() for m in run], target[p])]
            buf = buffers[p] + run if buffers[p] else run
            while buf:
                pinned = forced.get(p)
                if pinned is not None and buf[0].offset() != pinned[0]:
                    forced.pop(p)  # the log moved under us (retention): the pin no longer applies
                    continue
                if pinned is not None:
                    if buf[-1].offset() < pinned[1]:
                        break
                    cut = bisect.bisect_right([m.offset() for m in buf], pinned[1])
                    forced.pop(p)
                elif len(buf) >= config.batch_messages:
                    cut = config.batch_messages
                else:
                    break
                batch, buf = buf[:cut], buf[cut:]
                flush(p, batch)
            buffers[p] = buf
            if done:
                finish(p)

        def finish(p: int) -> None:
            if buffers[p]:
                batch, buffers[p] = buffers[p], []
                flush(p, batch)
            active.discard(p)
            consumer.pause([TopicPartition(config.topic, p)])

        deadline = started + config.run_timeout_s
        last_progress = clock()
        while active:
            settle(wait=False)
            if clock() > deadline:
                report.stopped = "timeout"
                break
            messages = consumer.consume(num_messages=10_000, timeout=config.poll_timeout_s)
            if not messages:
                # Offsets below the watermark that are never delivered (transaction markers,
                # compacted gaps): the consumer's position tells when a partition is done.
                for tp in consumer.position([TopicPartition(config.topic, p) for p in active]):
                    p = tp.partition
                    if tp.offset >= target[p]:
                        finish(p)
                        while in_flight:  # the gap is committed only after what precedes it
                            settle(wait=True)
                        if report.partitions[p].committed < target[p]:
                            _commit(consumer, config.topic, p, target[p])
                            report.partitions[p].committed = target[p]
                if clock() - last_progress > config.idle_timeout_s:
                    report.stopped = "idle"
                    break
                continue
            if report.first_message_seconds is None:
                report.first_message_seconds = clock() - started
            last_progress = clock()
            if any(m.error() is not None for m in messages):
                for m in messages:
                    error = m.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                messages = [m for m in messages if m.error() is None]
            # runs of one partition (librdkafka hands messages out fetch by fetch)
            parts = [m.partition() for m in messages]
            edges = [i for i in range(1, len(parts)) if parts[i] != parts[i - 1]]
            for a, b in zip([0, *edges], [*edges, len(parts)], strict=True):
                if a < b and parts[a] in active:
                    take(parts[a], messages[a:b])
        for p in sorted(buffers):
            if buffers[p]:
                batch, buffers[p] = buffers[p], []
                flush(p, batch)
        while in_flight:
            settle(wait=True)
    except BaseException:
        failed.set()  # no new batch starts; the one being written finishes (or fails) alone
        raise
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        consumer.close()
        report.reasons = dict(reasons)
        report.seconds = clock() - started
    return report


def describe(report: IngestReport) -> str:
    """One line for logs."""
    return (
        f"{report.topic}: {report.messages} messages → {report.rows} rows, "
        f"{report.quarantined} quarantined in {len(report.batches)} batches "
        f"({report.stopped}, {report.seconds:.1f}s); lag left {sum(report.lag_after.values())}"
    )


__all__ = [
    "IngestReport",
    "KafkaSourceConfig",
    "PartitionReport",
    "acknowledge",
    "batch_identity",
    "batch_source",
    "consumer_settings",
    "describe",
    "ingest_once",
    "lag",
    "pending_days",
]
