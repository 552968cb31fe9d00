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
   (``write_encoded``, each file atomic), the entry is marked ``written``, and only then the
   offset ``last + 1`` is committed (synchronously); the entry is then removed. Batches are
   written by one writer thread, in order, while the next messages are read; commits follow
   in the same order. Parsing has no side effect and runs ahead: parser threads parse an open
   batch piece by piece (``PARSE_PIECE`` lines) as it fills, then combine a closed batch's
   pieces (``combine_parsed``: the same rows, hence the same file bytes, as parsing it whole)
   and encode its Parquet files; the writer only writes them.

Crash anywhere and restart: before the commit the group's offset still points at the batch's
first offset, so the batch is read again. A ``written`` ledger entry at that offset means the
files are complete: the offset is committed without re-reading. A ``writing`` entry fixes the
batch's range, so the re-read writes exactly the same files (same names, same bytes) and
completes the batch. Every event is therefore in the raw zone once per identity, and
``read_day`` de-duplicates by ``event_id`` whatever is replayed outside the ledger (a group
reset by an operator, two concurrent runs of the same group).

Malformed messages (bad JSON, missing fields, wrong types, oversize, undecodable bytes, null
values) are quarantined with the reason by ``parse_batch``; their offsets are committed
with the batch like any other.

Throughput: the consume loop does no per-message Python beyond unpacking each ``consume``
result into plain columns (``_unpack``, with cyclic GC paused so the short-lived ``Message``
objects never reach a collection); parsing and writing run on other threads.
"""

from __future__ import annotations

import bisect
import gc
import json
import logging
import posixpath
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
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
    EncodedBatch,
    FaultHook,
    LineColumns,
    MicroBatchResult,
    ParsedBatch,
    batch_table_names,
    combine_parsed,
    encode_parsed,
    parse_batch,
    safe_identity,
    write_encoded,
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
    max_in_flight: int = 4  # batches parsed and written while the next ones are read
    poll_timeout_s: float = 1.0  # one consume() call
    run_timeout_s: float = 45.0  # stop reading after this (what was read is still written)
    idle_timeout_s: float = 10.0  # give up on offsets below the watermark that never come
    metadata_timeout_s: float = 10.0
    # Keep each committed batch's ledger entry (state ``committed``, with its event days) until
    # ``acknowledge`` removes it: a sensor requests runs for ``pending_days`` and acknowledges
    # them, so even a crash between the commit and the run requests loses no trigger.
    keep_committed_ledger: bool = False
    consumer_config: Mapping[str, Any] = field(default_factory=dict)  # security.protocol, …
    # first and last day that exist as partitions: events outside are quarantined
    bounds: tuple[date, date] | None = None

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


@dataclass
class _Messages:
    """One partition's messages as parallel columns, in offset order. ``consume`` hands out
    ``Message`` objects; only these plain columns are kept (see ``_unpack``)."""

    offsets: list[int]
    values: list[bytes | None]
    stamps: list[int]  # message timestamps, epoch ms (-1: none)

    def __len__(self) -> int:
        return len(self.offsets)

    def extend(self, offsets: list[int], values: list[bytes | None], stamps: list[int]) -> None:
        self.offsets += offsets
        self.values += values
        self.stamps += stamps


@contextmanager
def _gc_paused():
    """Cyclic GC off while a ``consume`` result is unpacked. Each ``Message`` is a GC-tracked
    object: 10,000 of them at a time trigger collections that promote them, and every promotion
    brings the next full collection (over every object of the process) nearer — that cost
    dominated ingest. Unpacked into plain columns (ints, bytes) and released before GC is back
    on, they never reach a collection. Collections are only deferred, never skipped."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _unpack(messages: list[Message]):
    """(partitions as numpy, offsets, values, timestamps) of a ``consume`` result; a message
    carrying an error (other than a partition EOF) raises; EOF events are dropped."""
    errors = list(map(Message.error, messages))
    if errors.count(None) != len(errors):
        for error in errors:
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
        messages = [m for m, e in zip(messages, errors, strict=True) if e is None]
    parts = np.fromiter(map(Message.partition, messages), np.int64, len(messages))
    offsets = list(map(Message.offset, messages))
    values = list(map(Message.value, messages))
    stamps = [t for _, t in map(Message.timestamp, messages)]
    return parts, offsets, values, stamps


def _batch_lines(topic: str, partition: int, first: int, batch: _Messages):
    """(lines, source, arrival times, rejected) of a batch starting at offset ``first`` (or of
    a piece of it); line number = offset - first + 1; null values (tombstones) are
    ``rejected``: quarantined with their reason."""
    offsets = batch.offsets
    stamps = pa.array(batch.stamps, pa.int64())
    if pc.min(stamps).as_py() < 0:  # no timestamp (old message format): arrival = now
        stamps = pc.if_else(pc.less(stamps, 0), int(time.time() * 1000), stamps)
    arrivals = stamps.cast(pa.timestamp("ms", tz="UTC"))
    values = batch.values
    numbers = (np.asarray(offsets, dtype=np.int64) - (first - 1)).tolist()
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


def positions(config: KafkaSourceConfig) -> dict[int, tuple[int, int]]:
    """partition -> (group's committed offset or -1, high watermark): a snapshot a sensor can
    compare and name runs by (cheap: metadata calls only, no message is read)."""
    consumer = Consumer(consumer_settings(config))
    try:
        partitions = _partitions(consumer, config)
        return {
            p: (committed, high)
            for p, (committed, _, high) in _offsets(consumer, config, partitions).items()
        }
    finally:
        consumer.close()


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


PARSE_PIECE = 10_000  # lines of an open batch parsed at a time, while the rest is read


@dataclass
class _OpenBatch:
    """A partition's batch being filled. Its range becomes final when it is closed (full,
    its pinned end reached, or the run's end); its lines are parsed piece by piece meanwhile,
    by the parser threads, so parsing overlaps reading."""

    first: int
    pin: int | None  # the last offset of a crashed run's unfinished batch: this batch ends there
    last: int = -1
    count: int = 0
    pending: _Messages = field(default_factory=lambda: _Messages([], [], []))
    pieces: list[Future] = field(default_factory=list)


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

    Consuming, parsing and writing overlap: open batches are parsed piece by piece by parser
    threads (pure work), closed batches are written by one writer thread, in order, while the
    next messages are read (at most ``max_in_flight`` closed batches wait); each batch's offset is
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
    # Parsing is mostly Arrow and numpy work that releases the GIL: two threads keep both cores
    # busy once the reading is done. Pieces may finish out of order; ``encode`` takes them in
    # order, and the one writer writes the batches in order.
    parser = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ldp-kafka-parser")
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
        opened: dict[int, _OpenBatch] = {}  # partition -> the batch being filled

        def parse(p: int, first: int, piece: _Messages) -> tuple[ParsedBatch, int, float]:
            """Parser thread: one piece of a batch (no side effects)."""
            begun = time.perf_counter()
            lines, source, arrivals, rejected = _batch_lines(config.topic, p, first, piece)
            parsed = parse_batch(
                config.stream, lines, source, arrivals, rejected=rejected, bounds=config.bounds
            )
            return parsed, len(piece), time.perf_counter() - begun

        def encode(p: int, first: int, last: int, pieces: list[Future]) -> EncodedBatch:
            """Parser thread: a closed batch's pieces → its files' bytes (no side effects).
            Its pieces were queued before it, so they are running or done: no deadlock."""
            parts = [piece.result() for piece in pieces]
            encoded = encode_parsed(
                lake,
                config.stream,
                batch_identity(config.topic, p, first, last),
                batch_source(config.topic, p, first),
                combine_parsed([parsed for parsed, _, _ in parts]),
                sum(received for _, received, _ in parts),
            )
            encoded.seconds += sum(seconds for _, _, seconds in parts)
            return encoded

        def write(
            p: int, first: int, last: int, encoding: Future, identity: str, path: str
        ) -> MicroBatchResult:
            """Writer thread: ledger entry, files, ledger entry marked written."""
            if failed.is_set():
                raise _Stopped(identity)
            try:
                entry = {
                    "identity": safe_identity(identity),
                    "topic": config.topic,
                    "partition": p,
                    "first": first,
                    "last": last,
                    "state": "writing",
                }
                lake.write_bytes(path, json.dumps(entry).encode())
                if fault is not None:
                    fault("before_write", {"identity": identity, "partition": p})
                result = write_encoded(lake, encoding.result(), fault=fault)
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

        def flush(p: int, batch: _OpenBatch) -> None:
            """The batch's range is final: parse its last piece, queue its encoding and write."""
            submit_piece(p, batch)
            first, last = batch.first, batch.last
            identity = batch_identity(config.topic, p, first, last)
            path = _ledger_path(lake, config, p, first)
            encoding = parser.submit(encode, p, first, last, batch.pieces)
            future = writer.submit(write, p, first, last, encoding, identity, path)
            entry = {
                "identity": safe_identity(identity),
                "partition": p,
                "first": first,
                "last": last,
            }
            in_flight.append(_InFlight(p, first, last, batch.count, identity, path, entry, future))
            while len(in_flight) > config.max_in_flight:
                settle(wait=True)

        def submit_piece(p: int, batch: _OpenBatch) -> None:
            if len(batch.pending):
                batch.pieces.append(parser.submit(parse, p, batch.first, batch.pending))
                batch.pending = _Messages([], [], [])

        def take(p: int, offsets: list[int], values: list, stamps: list[int]) -> None:
            """Add a run of one partition's messages (offset order) to its open batch; close
            batches when full; hand their lines to the parser a piece at a time."""
            done = offsets[-1] >= target[p] - 1
            if offsets[-1] >= target[p]:
                k = bisect.bisect_left(offsets, target[p])
                offsets, values, stamps = offsets[:k], values[:k], stamps[:k]
            while offsets:
                batch = opened.get(p)
                if batch is None:
                    pinned = forced.pop(p, None)
                    if pinned is not None and offsets[0] != pinned[0]:
                        pinned = None  # the log moved under us (retention): the pin is void
                    batch = opened[p] = _OpenBatch(offsets[0], pinned[1] if pinned else None)
                if batch.pin is not None:  # a crashed run's unfinished batch: same range
                    n = bisect.bisect_right(offsets, batch.pin)
                    full = offsets[-1] >= batch.pin
                else:
                    n = min(len(offsets), config.batch_messages - batch.count)
                    full = batch.count + n >= config.batch_messages
                if n:
                    batch.pending.extend(offsets[:n], values[:n], stamps[:n])
                    batch.count += n
                    batch.last = offsets[n - 1]
                    if len(batch.pending) >= PARSE_PIECE:
                        submit_piece(p, batch)
                    offsets, values, stamps = offsets[n:], values[n:], stamps[n:]
                if not full:
                    break
                flush(p, opened.pop(p))
            if done:
                finish(p)

        def finish(p: int) -> None:
            batch = opened.pop(p, None)
            if batch is not None and batch.count:
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
            with _gc_paused():
                messages = consumer.consume(num_messages=10_000, timeout=config.poll_timeout_s)
                parts, offsets, values, stamps = _unpack(messages)
                del messages
            if not offsets:
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
            # runs of one partition (librdkafka hands messages out fetch by fetch)
            edges = (np.flatnonzero(parts[1:] != parts[:-1]) + 1).tolist()
            for a, b in zip([0, *edges], [*edges, len(parts)], strict=True):
                p = int(parts[a])
                if p in active:
                    take(p, offsets[a:b], values[a:b], stamps[a:b])
        for p in sorted(opened):
            batch = opened.pop(p)
            if batch.count:
                flush(p, batch)
        while in_flight:
            settle(wait=True)
    except BaseException:
        failed.set()  # no new batch starts; the one being written finishes (or fails) alone
        raise
    finally:
        writer.shutdown(wait=True, cancel_futures=True)  # a write under way waits for its pieces
        parser.shutdown(wait=True, cancel_futures=True)
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
    "positions",
]
