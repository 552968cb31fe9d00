"""A Kafka ingest run's batches from lines to committed offsets: parse, encode, write, commit.

Parsing has no side effect and runs ahead: parser threads parse an open batch piece by piece
(``PARSE_PIECE`` lines) as it fills, then combine a closed batch's pieces (``combine_parsed``:
the same rows, hence the same file bytes, as parsing it whole) and encode its Parquet files.
One writer thread writes the batches in order (ledger entry ``writing``, files, ``written``);
the consuming thread commits each batch's offset, in the same order, once that is durable.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from confluent_kafka import Consumer

from llm_data_platform.streaming.kafka_config import (
    KafkaSourceConfig,
    batch_identity,
    batch_source,
)
from llm_data_platform.streaming.kafka_ledger import _ledger_done, _ledger_path
from llm_data_platform.streaming.kafka_messages import _batch_lines, _Messages
from llm_data_platform.streaming.kafka_offsets import _commit
from llm_data_platform.streaming.kafka_report import IngestReport
from llm_data_platform.streaming.microbatch import (
    EncodedBatch,
    FaultHook,
    MicroBatchResult,
    encode_parsed,
    safe_identity,
    write_encoded,
)
from llm_data_platform.streaming.parse import ParsedBatch, combine_parsed, parse_batch

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

PARSE_PIECE = 10_000  # lines of an open batch parsed at a time, while the rest is read


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


class _BatchPipeline:
    """The threads and the queue of closed batches of one run. After a failure no further
    batch is started, so the ledger of every partition holds written batches first, then at
    most one unfinished one: what the next run's recovery expects."""

    def __init__(
        self,
        config: KafkaSourceConfig,
        lake: LakeResource,
        consumer: Consumer,
        report: IngestReport,
        fault: FaultHook | None,
    ) -> None:
        self.config = config
        self.lake = lake
        self.consumer = consumer
        self.report = report
        self.fault = fault
        self.reasons: Counter[str] = Counter()
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ldp-kafka-writer")
        # Parsing is mostly Arrow and numpy work that releases the GIL: two threads keep both
        # cores busy once the reading is done. Pieces may finish out of order; ``encode`` takes
        # them in order, and the one writer writes the batches in order.
        self.parser = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ldp-kafka-parser")
        self.failed = threading.Event()
        self.in_flight: deque[_InFlight] = deque()

    # ---- parser threads (no side effects) ----------------------------------------------------
    def _parse(self, p: int, first: int, piece: _Messages) -> tuple[ParsedBatch, int, float]:
        """Parser thread: one piece of a batch (no side effects)."""
        config = self.config
        begun = time.perf_counter()
        lines, source, arrivals, rejected = _batch_lines(config.topic, p, first, piece)
        parsed = parse_batch(
            config.stream, lines, source, arrivals, rejected=rejected, bounds=config.bounds
        )
        return parsed, len(piece), time.perf_counter() - begun

    def _encode(self, p: int, first: int, last: int, pieces: list[Future]) -> EncodedBatch:
        """Parser thread: a closed batch's pieces → its files' bytes (no side effects).
        Its pieces were queued before it, so they are running or done: no deadlock."""
        topic = self.config.topic
        parts = [piece.result() for piece in pieces]
        encoded = encode_parsed(
            self.lake,
            self.config.stream,
            batch_identity(topic, p, first, last),
            batch_source(topic, p, first),
            combine_parsed([parsed for parsed, _, _ in parts]),
            sum(received for _, received, _ in parts),
        )
        encoded.seconds += sum(seconds for _, _, seconds in parts)
        return encoded

    # ---- the writer thread ---------------------------------------------------------------------
    def _write(
        self, p: int, first: int, last: int, encoding: Future, identity: str, path: str
    ) -> MicroBatchResult:
        """Writer thread: ledger entry, files, ledger entry marked written."""
        if self.failed.is_set():
            raise _Stopped(identity)
        try:
            entry = {
                "identity": safe_identity(identity),
                "topic": self.config.topic,
                "partition": p,
                "first": first,
                "last": last,
                "state": "writing",
            }
            self.lake.write_bytes(path, json.dumps(entry).encode())
            if self.fault is not None:
                self.fault("before_write", {"identity": identity, "partition": p})
            result = write_encoded(self.lake, encoding.result(), fault=self.fault)
            entry.update(state="written", days=result.days, rows=result.rows)
            self.lake.write_bytes(path, json.dumps(entry).encode())
            return result
        except BaseException:
            self.failed.set()
            raise

    # ---- the consuming thread ------------------------------------------------------------------
    def submit_piece(self, p: int, batch: _OpenBatch) -> None:
        """Hand the lines gathered since the last piece to a parser thread."""
        if len(batch.pending):
            batch.pieces.append(self.parser.submit(self._parse, p, batch.first, batch.pending))
            batch.pending = _Messages([], [], [])

    def flush(self, p: int, batch: _OpenBatch) -> None:
        """The batch's range is final: parse its last piece, queue its encoding and write."""
        config = self.config
        self.submit_piece(p, batch)
        first, last = batch.first, batch.last
        identity = batch_identity(config.topic, p, first, last)
        path = _ledger_path(self.lake, config, p, first)
        encoding = self.parser.submit(self._encode, p, first, last, batch.pieces)
        future = self.writer.submit(self._write, p, first, last, encoding, identity, path)
        entry = {
            "identity": safe_identity(identity),
            "partition": p,
            "first": first,
            "last": last,
        }
        self.in_flight.append(_InFlight(p, first, last, batch.count, identity, path, entry, future))
        while len(self.in_flight) > config.max_in_flight:
            self.settle(wait=True)

    def settle(self, wait: bool) -> None:
        """Commit finished batches in order; with ``wait``, wait for the oldest first."""
        in_flight = self.in_flight
        while in_flight and (wait or in_flight[0].future.done()):
            job = in_flight.popleft()
            wait = False
            result = job.future.result()  # a failed write raises here
            self._commit_batch(job, result)
            self._record(job, result)

    def drain(self) -> None:
        """Commit every queued batch, waiting for each."""
        while self.in_flight:
            self.settle(wait=True)

    def _commit_batch(self, job: _InFlight, result: MicroBatchResult) -> None:
        """The batch's files are durable: commit the offset after it, then settle its entry."""
        fault = self.fault
        if fault is not None:
            fault(
                "after_write_before_commit",
                {"identity": job.identity, "partition": job.partition},
            )
        _commit(self.consumer, self.config.topic, job.partition, job.last + 1)
        if fault is not None:
            fault("after_commit", {"identity": job.identity, "partition": job.partition})
        _ledger_done(self.lake, self.config, job.ledger, {**job.entry, "days": result.days})

    def _record(self, job: _InFlight, result: MicroBatchResult) -> None:
        report = self.report
        part = report.partitions[job.partition]
        part.committed = job.last + 1
        part.messages += job.messages
        report.batches.append(result)
        report.messages += job.messages
        report.rows += result.rows
        report.quarantined += result.quarantined
        report.late_events += result.late_events
        self.reasons.update(result.reasons)

    def shutdown(self) -> None:
        """Wait for the threads; a write under way waits for its pieces."""
        self.writer.shutdown(wait=True, cancel_futures=True)
        self.parser.shutdown(wait=True, cancel_futures=True)
