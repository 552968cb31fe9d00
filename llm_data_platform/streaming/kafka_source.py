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

This module plans a run and reads it; the rest lives beside it: ``kafka_config`` (settings,
batch names), ``kafka_offsets`` (watermarks, commits, ``lag``), ``kafka_ledger``,
``kafka_messages`` (consume results as columns), ``kafka_pipeline`` (parse, encode, write,
commit) and ``kafka_report``.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from llm_data_platform.streaming.kafka_config import (
    OFFSET_WIDTH as OFFSET_WIDTH,
)
from llm_data_platform.streaming.kafka_config import (
    KafkaSourceConfig,
    batch_identity,
    batch_source,
    consumer_settings,
)
from llm_data_platform.streaming.kafka_ledger import (
    _ledger_done,
    _ledger_path,
    _ledger_read,
    _settle_committed_entries,
    acknowledge,
    pending_days,
)
from llm_data_platform.streaming.kafka_messages import NULL_VALUE as NULL_VALUE
from llm_data_platform.streaming.kafka_messages import _gc_paused, _unpack
from llm_data_platform.streaming.kafka_offsets import (
    _commit,
    _offsets,
    _partitions,
    _share,
    lag,
    positions,
)
from llm_data_platform.streaming.kafka_pipeline import PARSE_PIECE, _BatchPipeline, _OpenBatch
from llm_data_platform.streaming.kafka_report import IngestReport, PartitionReport, describe
from llm_data_platform.streaming.microbatch import FaultHook

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

log = logging.getLogger(__name__)


# ---- planning: where each partition's read starts and ends -------------------------------------
@dataclass
class _RunPlan:
    """Per partition: the first offset to read, the exclusive bound of this run, and the range
    of a crashed run's unfinished batch (written again with exactly that range)."""

    partitions: list[int]
    start: dict[int, int]
    target: dict[int, int]
    forced: dict[int, tuple[int, int]]


def _plan_run(
    consumer: Consumer,
    lake: LakeResource,
    config: KafkaSourceConfig,
    partitions: list[int],
    report: IngestReport,
) -> _RunPlan:
    """Settle the ledger, commit what a crashed run wrote, then share this run's budget."""
    offsets = _offsets(consumer, config, partitions)
    _settle_committed_entries(lake, config, offsets)
    start: dict[int, int] = {}
    forced: dict[int, tuple[int, int]] = {}  # partition -> (first, last) of an unfinished batch
    for p, (committed, low, high) in offsets.items():
        begin, lost = _start_offset(config, p, committed, low, high)
        begin, unfinished = _recover_written(consumer, lake, config, report, p, begin, high)
        if unfinished is not None:
            forced[p] = unfinished
        start[p] = begin
        report.partitions[p] = PartitionReport(p, begin, high, begin, begin, 0, lost)
    highs = {p: offsets[p][2] for p in partitions}
    target = _targets(config, partitions, start, highs, forced, report)
    return _RunPlan(partitions, start, target, forced)


def _start_offset(
    config: KafkaSourceConfig, p: int, committed: int, low: int, high: int
) -> tuple[int, int]:
    """(first offset to read, messages lost to retention): the committed offset, else the log
    start; never below the log start, never above the watermark."""
    begin = committed if committed >= 0 else low
    lost = 0
    if begin < low:
        lost, begin = low - begin, low
        log.warning("%s[%d]: %d messages deleted by retention", config.topic, p, lost)
    return min(begin, high), lost


def _recover_written(
    consumer: Consumer,
    lake: LakeResource,
    config: KafkaSourceConfig,
    report: IngestReport,
    p: int,
    begin: int,
    high: int,
) -> tuple[int, tuple[int, int] | None]:
    """Commit the batches a crashed run wrote but did not commit; returns the offset after
    them and the (first, last) range of its unfinished batch, if it left one."""
    while begin < high:
        path = _ledger_path(lake, config, p, begin)
        entry = _ledger_read(lake, path)
        if entry is None:
            break
        if entry.get("state") != "written":
            return begin, (entry["first"], entry["last"])
        _commit(consumer, config.topic, p, entry["last"] + 1)
        report.recovered.append(entry["identity"])
        report.recovered_messages += entry["last"] - entry["first"] + 1
        for day in entry.get("days", {}):
            report.recovered_days.setdefault(day, []).append(entry["identity"])
        _ledger_done(lake, config, path, entry)
        begin = entry["last"] + 1
    return begin, None


def _targets(
    config: KafkaSourceConfig,
    partitions: list[int],
    start: dict[int, int],
    highs: dict[int, int],
    forced: dict[int, tuple[int, int]],
    report: IngestReport,
) -> dict[int, int]:
    """partition -> exclusive bound of this run: a fair share of ``max_messages``, stretched to
    the end of an unfinished batch (whose range must not change)."""
    share = _share({p: highs[p] - start[p] for p in partitions}, config.max_messages)
    target: dict[int, int] = {}
    for p in partitions:
        bound = start[p] + share[p]
        if p in forced:
            bound = max(bound, min(forced[p][1] + 1, highs[p]))
        target[p] = bound
        report.partitions[p].target = bound
    if sum(highs[p] - target[p] for p in partitions) > 0:
        report.stopped = "max_messages"
    return target


# ---- reading: the consume loop ------------------------------------------------------------------
class _BacklogReader:
    """Reads each partition up to its target and closes its batches (full, at a crashed run's
    pinned end, or at the target), handing them to the pipeline."""

    def __init__(
        self,
        config: KafkaSourceConfig,
        consumer: Consumer,
        pipeline: _BatchPipeline,
        plan: _RunPlan,
        report: IngestReport,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.pipeline = pipeline
        self.report = report
        self.target = plan.target
        self.forced = plan.forced
        self.active = {p for p in plan.partitions if plan.target[p] > plan.start[p]}
        self.opened: dict[int, _OpenBatch] = {}  # partition -> the batch being filled

    def read(self, started: float, clock: Callable[[], float]) -> None:
        """Consume until every partition reached its target, the run's time is up, or nothing
        arrives for ``idle_timeout_s``."""
        config, report = self.config, self.report
        deadline = started + config.run_timeout_s
        last_progress = clock()
        while self.active:
            self.pipeline.settle(wait=False)
            if clock() > deadline:
                report.stopped = "timeout"
                break
            with _gc_paused():
                messages = self.consumer.consume(num_messages=10_000, timeout=config.poll_timeout_s)
                parts, offsets, values, stamps = _unpack(messages)
                del messages
            if not offsets:
                self._finish_past_gaps()
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
                if p in self.active:
                    self.take(p, offsets[a:b], values[a:b], stamps[a:b])

    def _finish_past_gaps(self) -> None:
        """Offsets below the watermark that are never delivered (transaction markers,
        compacted gaps): the consumer's position tells when a partition is done."""
        topic, target = self.config.topic, self.target
        for tp in self.consumer.position([TopicPartition(topic, p) for p in self.active]):
            p = tp.partition
            if tp.offset >= target[p]:
                self.finish(p)
                self.pipeline.drain()  # the gap is committed only after what precedes it
                if self.report.partitions[p].committed < target[p]:
                    _commit(self.consumer, topic, p, target[p])
                    self.report.partitions[p].committed = target[p]

    def take(self, p: int, offsets: list[int], values: list, stamps: list[int]) -> None:
        """Add a run of one partition's messages (offset order) to its open batch; close
        batches when full; hand their lines to the parser a piece at a time."""
        target = self.target[p]
        done = offsets[-1] >= target - 1
        if offsets[-1] >= target:
            k = bisect.bisect_left(offsets, target)
            offsets, values, stamps = offsets[:k], values[:k], stamps[:k]
        while offsets:
            batch = self.opened.get(p)
            if batch is None:
                batch = self.opened[p] = self._open(p, offsets[0])
            n, full = self._room(batch, offsets)
            if n:
                batch.pending.extend(offsets[:n], values[:n], stamps[:n])
                batch.count += n
                batch.last = offsets[n - 1]
                if len(batch.pending) >= PARSE_PIECE:
                    self.pipeline.submit_piece(p, batch)
                offsets, values, stamps = offsets[n:], values[n:], stamps[n:]
            if not full:
                break
            self.pipeline.flush(p, self.opened.pop(p))
        if done:
            self.finish(p)

    def _open(self, p: int, first: int) -> _OpenBatch:
        """A new batch from ``first``; a crashed run's unfinished batch there keeps its range."""
        pinned = self.forced.pop(p, None)
        if pinned is not None and first != pinned[0]:
            pinned = None  # the log moved under us (retention): the pin is void
        return _OpenBatch(first, pinned[1] if pinned else None)

    def _room(self, batch: _OpenBatch, offsets: list[int]) -> tuple[int, bool]:
        """How many of ``offsets`` go into ``batch``, and whether it is full then."""
        if batch.pin is not None:  # a crashed run's unfinished batch: same range
            return bisect.bisect_right(offsets, batch.pin), offsets[-1] >= batch.pin
        n = min(len(offsets), self.config.batch_messages - batch.count)
        return n, batch.count + n >= self.config.batch_messages

    def finish(self, p: int) -> None:
        """The partition reached its target: close its batch and stop fetching it."""
        batch = self.opened.pop(p, None)
        if batch is not None and batch.count:
            self.pipeline.flush(p, batch)
        self.active.discard(p)
        self.consumer.pause([TopicPartition(self.config.topic, p)])

    def close_open_batches(self) -> None:
        """The reading stopped: what was read is still written."""
        for p in sorted(self.opened):
            batch = self.opened.pop(p)
            if batch.count:
                self.pipeline.flush(p, batch)


# ---- the run ------------------------------------------------------------------------------------
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
    lake.filesystem()  # resolve the lake's filesystem once, before the writer thread uses it
    consumer = Consumer(consumer_settings(config))
    pipeline = _BatchPipeline(config, lake, consumer, report, fault)
    try:
        partitions = _partitions(consumer, config)
        if not partitions:
            report.stopped = "no_topic"
            return report
        plan = _plan_run(consumer, lake, config, partitions, report)
        reader = _BacklogReader(config, consumer, pipeline, plan, report)
        if not reader.active:
            return report
        consumer.assign(
            [TopicPartition(config.topic, p, plan.start[p]) for p in sorted(reader.active)]
        )
        reader.read(started, clock)
        reader.close_open_batches()
        pipeline.drain()
    except BaseException:
        pipeline.failed.set()  # no new batch starts; the one being written finishes (or fails)
        raise
    finally:
        pipeline.shutdown()  # a write under way waits for its pieces
        consumer.close()
        report.reasons = dict(pipeline.reasons)
        report.seconds = clock() - started
    return report


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
