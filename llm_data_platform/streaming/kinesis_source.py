"""Kinesis stream → raw micro-batches, exactly once in effect (boto3, no Dagster import).

One ``ingest_once`` call is one bounded run over every shard of one stream:

1. Per shard, the checkpoint (``kinesis_ledger``: the last sequence number staged durably)
   gives the shard iterator: ``AFTER_SEQUENCE_NUMBER`` it, ``TRIM_HORIZON`` without one.
2. Records are grouped into micro-batches of at most ``batch_records``, named by their
   sequence range: ``kinesis-<stream>-<shard>-<first>-<last>``. ``source_file`` is
   ``kinesis://<stream>/<shard>/<first>`` and ``source_line`` the record's position in the
   batch (1-based): a pointer back to the original record (read ``AT_SEQUENCE_NUMBER`` first).
3. Per batch: a ledger entry fixes the range (``writing``), the files are written (each
   atomic), the entry is marked ``written``, and only then the checkpoint advances to
   ``last``; the entry is then settled (kept ``committed`` until acknowledged, or removed).

Crash anywhere and restart: before the checkpoint moves, the shard is read again after the old
one. A ``written`` entry there means the files are complete: the checkpoint advances without
writing. A ``writing`` entry pins the range, so the re-read cuts the batch at the same last
sequence number and writes the same files (same names, same bytes) — whatever the restart's
batch size. A record is therefore in the raw zone once per identity, and ``read_day``
de-duplicates by ``event_id`` whatever is replayed outside the ledger.

Malformed records (bad JSON, missing fields, oversize, undecodable bytes) are quarantined with
the reason by ``parse_batch`` and checkpointed with their batch like any other.

Not handled: resharding order (a child shard is read beside its parent, not after it) and a
checkpoint older than the stream's retention (the iterator then starts at the trim horizon;
what was trimmed is gone and is not counted).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from llm_data_platform.streaming import kinesis_ledger as ledger
from llm_data_platform.streaming.microbatch import (
    FaultHook,
    MicroBatchResult,
    safe_identity,
    write_microbatch,
)
from llm_data_platform.streaming.parse import LineColumns

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

_SEQUENCE = itemgetter("SequenceNumber")
_DATA = itemgetter("Data")
_ARRIVAL = itemgetter("ApproximateArrivalTimestamp")
THROTTLED = {"ProvisionedThroughputExceededException", "LimitExceededException"}


@dataclass(frozen=True)
class KinesisSourceConfig:
    stream_name: str
    consumer: str = "llm-data-platform"  # names the checkpoints: one reader of the stream
    stream: str = "conversations"
    max_records: int = 100_000  # per ingest run, all shards together
    batch_records: int = 10_000  # per micro-batch (bounds memory)
    get_records_limit: int = 10_000  # per GetRecords call (the API's maximum)
    run_timeout_s: float = 300.0  # stop reading after this (what was read is still written)
    empty_pause_s: float = 0.2  # between reads that returned nothing (5 reads/s per shard)
    throttle_retries: int = 8
    # Keep each checkpointed batch's ledger entry (``committed``, with its event days) until
    # ``acknowledge``: a crash between the checkpoint and the run's report loses no day.
    keep_committed_ledger: bool = False
    # first and last day that exist as partitions: events outside are quarantined
    bounds: tuple[date, date] | None = None


def batch_identity(name: str, shard: str, first: str, last: str) -> str:
    return f"kinesis-{name}-{shard}-{first}-{last}"


def batch_source(name: str, shard: str, first: str) -> str:
    return f"kinesis://{name}/{shard}/{first}"


@dataclass
class ShardReport:
    shard: str
    start: str | None  # the checkpoint this run read after
    checkpoint: str | None  # the checkpoint after the run
    records: int = 0
    ended: bool = False  # a closed shard read to its end


@dataclass
class KinesisReport:
    stream_name: str
    consumer: str
    stream: str
    records: int = 0
    rows: int = 0
    quarantined: int = 0
    late_events: int = 0
    batches: list[MicroBatchResult] = field(default_factory=list)
    shards: dict[str, ShardReport] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)  # written, not checkpointed: now are
    recovered_records: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    stopped: str = "caught_up"  # caught_up | max_records | timeout | no_stream
    seconds: float = 0.0


def describe(report: KinesisReport) -> str:
    """One line for logs."""
    return (
        f"kinesis {report.stream_name}: {report.records} records → {report.rows} rows, "
        f"{report.quarantined} quarantined in {len(report.batches)} batches over "
        f"{len(report.shards)} shards; {len(report.recovered)} recovered "
        f"({report.stopped}, {report.seconds:.1f}s)"
    )


# ---- the client -------------------------------------------------------------------------------
def list_shards(client: Any, name: str) -> list[str]:
    """Shard ids of the stream (paginated), [] when the stream does not exist."""
    from botocore.exceptions import ClientError

    shards: list[str] = []
    kwargs: dict[str, Any] = {"StreamName": name}
    try:
        while True:
            page = client.list_shards(**kwargs)
            shards += [s["ShardId"] for s in page["Shards"]]
            if not page.get("NextToken"):
                return sorted(shards)
            kwargs = {"NextToken": page["NextToken"]}
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise


def _iterator(client: Any, name: str, shard: str, after: str | None) -> str:
    kwargs: dict[str, Any] = {"StreamName": name, "ShardId": shard}
    if after is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
    return client.get_shard_iterator(**kwargs)["ShardIterator"]


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


# ---- one shard --------------------------------------------------------------------------------
@dataclass
class _Open:
    """The batch being filled: it starts after ``after``; a crashed run's range is pinned."""

    after: str | None
    pin: tuple[str, str] | None = None  # (first, last) of a crashed run's unfinished batch
    sequences: list[str] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)  # arrival, epoch seconds


class _ShardRun:
    """Reads one shard after its checkpoint and writes its batches, checkpointing each."""

    def __init__(self, run: _Run, shard: str) -> None:
        self.run = run
        self.config = run.config
        self.shard = shard
        self.checkpoint = run.checkpoint(shard)
        self.report = run.report.shards.setdefault(shard, ShardReport(shard, self.checkpoint, None))

    def recover(self) -> tuple[str, str] | None:
        """Checkpoint what a crashed run wrote but did not checkpoint; the pinned range of its
        unfinished batch, if it left one."""
        while True:
            path = self.run.ledger_path(self.shard, self.checkpoint)
            entry = ledger.read_entry(self.run.lake, path)
            if entry is None or entry.get("state") == "committed":
                return None
            if entry["state"] != "written":
                return entry["first"], entry["last"]
            self._advance(entry["last"], path, entry)
            self.run.report.recovered.append(entry["identity"])
            self.run.report.recovered_records += int(entry.get("records", 0))

    def ingest(self, budget: int, deadline: float) -> int:
        """Read up to ``budget`` records (a pinned batch is completed whatever the budget);
        returns how many were read."""
        config, client = self.config, self.run.client
        pin = self.recover()  # first: it may move the checkpoint
        batch = _Open(self.checkpoint, pin)
        iterator = _iterator(client, config.stream_name, self.shard, self.checkpoint)
        read = 0
        while iterator and (batch.pin or (read < budget and time.monotonic() < deadline)):
            limit = config.get_records_limit
            if not batch.pin:
                limit = min(limit, budget - read)
            response = self._get_records(iterator, limit, batch)
            records = response["Records"]
            iterator = response.get("NextShardIterator")
            batch = self._take(batch, records)
            read += len(records)
            if not records and response.get("MillisBehindLatest", 0) == 0:
                if batch.pin:  # the pinned range is gone (trimmed): the pin is void
                    batch.pin = None
                break
            if not records:
                time.sleep(config.empty_pause_s)
        if iterator is None:
            self.report.ended = True
        if batch.sequences:
            self._write(batch)
        self.report.records += read
        self.report.checkpoint = self.checkpoint
        return read

    def _get_records(self, iterator: str, limit: int, batch: _Open) -> dict:
        """GetRecords, backing off while throttled; an iterator that expired (5 minutes
        unused) is taken again after the last record read."""
        from botocore.exceptions import ClientError

        for attempt in range(self.config.throttle_retries):
            try:
                return self.run.client.get_records(ShardIterator=iterator, Limit=max(1, limit))
            except ClientError as exc:
                code = _code(exc)
                if code not in THROTTLED | {"ExpiredIteratorException"}:
                    raise
                if attempt == self.config.throttle_retries - 1:
                    raise
                if code == "ExpiredIteratorException":
                    after = batch.sequences[-1] if batch.sequences else self.checkpoint
                    name = self.config.stream_name
                    iterator = _iterator(self.run.client, name, self.shard, after)
                else:
                    time.sleep(min(5.0, 0.2 * 2**attempt))
        raise AssertionError("unreachable")

    def _take(self, batch: _Open, records: list[dict]) -> _Open:
        """Add one GetRecords result, a slice per batch (columns, no per-record branching);
        write each batch when it is full or its pinned end is reached."""
        while records:
            if batch.pin and not batch.sequences and records[0]["SequenceNumber"] != batch.pin[0]:
                batch.pin = None  # the shard moved under us (retention): the pin is void
            if batch.pin:
                end = int(batch.pin[1])
                n = next(
                    (k + 1 for k, r in enumerate(records) if int(r["SequenceNumber"]) >= end),
                    len(records),
                )
                full = int(records[n - 1]["SequenceNumber"]) >= end
            else:
                n = min(len(records), self.config.batch_records - len(batch.sequences))
                full = len(batch.sequences) + n >= self.config.batch_records
            piece, records = records[:n], records[n:]
            batch.sequences += map(_SEQUENCE, piece)
            batch.values += map(_DATA, piece)
            batch.stamps += (t.timestamp() for t in map(_ARRIVAL, piece))
            if full:
                self._write(batch)
                batch = _Open(self.checkpoint)
        return batch

    def _write(self, batch: _Open) -> None:
        """Ledger entry ``writing``, the files, ``written``; then the checkpoint."""
        run, config = self.run, self.config
        first, last = batch.sequences[0], batch.sequences[-1]
        identity = batch_identity(config.stream_name, self.shard, first, last)
        path = run.ledger_path(self.shard, batch.after)
        entry = {
            "identity": safe_identity(identity),
            "shard": self.shard,
            "after": batch.after,
            "first": first,
            "last": last,
            "records": len(batch.sequences),
            "state": "writing",
        }
        ledger.write_entry(run.lake, path, entry)
        run.hook("before_write", {"identity": identity, "shard": self.shard})
        result = write_microbatch(
            run.lake,
            config.stream,
            identity,
            LineColumns(list(range(1, len(batch.values) + 1)), batch.values),
            batch_source(config.stream_name, self.shard, first),
            _arrivals(batch.stamps),
            fault=run.fault,
            bounds=config.bounds,
        )
        entry.update(state="written", days=result.days, rows=result.rows)
        ledger.write_entry(run.lake, path, entry)
        run.hook("after_write_before_commit", {"identity": identity, "shard": self.shard})
        self._advance(last, path, entry)
        run.record(result, len(batch.sequences))

    def _advance(self, last: str, path: str, entry: dict) -> None:
        """The batch is durable: move the checkpoint past it, then settle its entry."""
        run = self.run
        ledger.write_checkpoint(
            run.lake,
            self.config.stream,
            self.config.consumer,
            self.config.stream_name,
            self.shard,
            last,
        )
        self.checkpoint = last
        run.hook("after_commit", {"identity": entry["identity"], "shard": self.shard})
        ledger.settle_entry(run.lake, path, entry, self.config.keep_committed_ledger)


def _arrivals(stamps: list[float]) -> pa.Array:
    """Arrival times (epoch seconds) as the millisecond UTC timestamps of the raw schema."""
    millis = pa.array([round(s * 1000) for s in stamps], pa.int64())
    return millis.cast(pa.timestamp("ms", tz="UTC"))


# ---- the run ------------------------------------------------------------------------------------
class _Run:
    """What the shards of one run share: the client, the lake, the report, the fault hook."""

    def __init__(
        self, config: KinesisSourceConfig, lake: LakeResource, client: Any, fault: FaultHook | None
    ) -> None:
        self.config = config
        self.lake = lake
        self.client = client
        self.fault = fault
        self.report = KinesisReport(config.stream_name, config.consumer, config.stream)

    def checkpoint(self, shard: str) -> str | None:
        c = self.config
        return ledger.read_checkpoint(self.lake, c.stream, c.consumer, c.stream_name, shard)

    def ledger_path(self, shard: str, after: str | None) -> str:
        c = self.config
        return ledger.ledger_path(self.lake, c.stream, c.consumer, c.stream_name, shard, after)

    def hook(self, stage: str, details: dict) -> None:
        if self.fault is not None:
            self.fault(stage, details)

    def record(self, result: MicroBatchResult, records: int) -> None:
        report = self.report
        report.batches.append(result)
        report.records += records
        report.rows += result.rows
        report.quarantined += result.quarantined
        report.late_events += result.late_events
        report.reasons.update(result.reasons)


def ingest_once(
    config: KinesisSourceConfig,
    lake: LakeResource,
    client: Any,
    *,
    fault: FaultHook | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> KinesisReport:
    """Read every shard after its checkpoint (bounded) into raw micro-batches, checkpointing
    each batch once it is durable. ``client`` is a boto3 Kinesis client.

    ``fault(stage, details)`` is called at ``before_write``, ``mid_write`` (before each file
    of a batch), ``after_write_before_commit`` and ``after_commit``; raising there (or killing
    the process) simulates a crash at that point (tests).
    """
    started = clock()
    run = _Run(config, lake, client, fault)
    report = run.report
    shards = list_shards(client, config.stream_name)
    if not shards:
        report.stopped = "no_stream"
        return report
    c = config
    checkpoints = {s: run.checkpoint(s) for s in shards}
    ledger.settle_passed_entries(
        lake, c.stream, c.consumer, c.stream_name, checkpoints, c.keep_committed_ledger
    )
    deadline = time.monotonic() + config.run_timeout_s
    left = config.max_records
    for n, shard in enumerate(shards):
        share = -(-left // (len(shards) - n))  # the budget left, shared by the shards left
        left -= _ShardRun(run, shard).ingest(share, deadline)
        if time.monotonic() > deadline:
            report.stopped = "timeout"
            break
    if left <= 0 and report.stopped == "caught_up":
        report.stopped = "max_records"
    report.seconds = clock() - started
    return report


def positions(config: KinesisSourceConfig, lake: LakeResource, client: Any) -> dict:
    """shard → (checkpoint or None, sequence number of the first record after it or None): a
    snapshot a sensor can compare and name runs by (one GetRecords of one record per shard)."""
    c = config
    out = {}
    for shard in list_shards(client, config.stream_name):
        checkpoint = ledger.read_checkpoint(lake, c.stream, c.consumer, c.stream_name, shard)
        iterator = _iterator(client, config.stream_name, shard, checkpoint)
        records = client.get_records(ShardIterator=iterator, Limit=1)["Records"]
        out[shard] = (checkpoint, records[0]["SequenceNumber"] if records else None)
    return out


def pending_days(config: KinesisSourceConfig, lake: LakeResource) -> dict[str, list[str]]:
    """Event day → checkpointed batches not yet acknowledged (``keep_committed_ledger``)."""
    return ledger.pending_days(lake, config.stream, config.consumer, config.stream_name)


def acknowledge(config: KinesisSourceConfig, lake: LakeResource, identities: set[str]) -> int:
    """Forget checkpointed batches whose days are on record; returns how many."""
    c = config
    return ledger.acknowledge(lake, c.stream, c.consumer, c.stream_name, identities)
