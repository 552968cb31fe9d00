"""Micro-batches in the raw zone, named by their content identity.

A micro-batch is what one source delivers in one piece: a Kafka offset range of one partition,
one S3 object version, one landing file. Its lines are parsed by ``parse.parse_batch`` (the one
reader and rule set of every source) and written, per event day, as

    raw/<stream>_batches/dt=<day>/<identity>.parquet              (valid events)
    raw/<stream>_batches_quarantine/dt=<day>/<identity>.parquet   (rejected lines + reason)

Each file is written atomically (``LakeResource.write_bytes``: temp file + rename locally, one
PUT on S3), and its name is the batch's identity (``kafka-<topic>-<partition>-<first>-<last>``,
``s3-<sha of key+etag>``…): writing the same batch twice gives the same files with the same
bytes, never a second copy. A crash between two files of one batch leaves complete files only;
re-writing the batch completes it.

``read_day`` reads every micro-batch of a day and keeps each ``event_id`` once (the first
arrival), so replays under a different identity (an S3 object re-uploaded
with the same events, a re-read offset range) never double an event. That table is what the raw
asset compacts into its partition.

No Dagster import: ``lake`` is anything with LakeResource's ``path``/``filesystem``/
``write_bytes`` methods.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from llm_data_platform import schemas
from llm_data_platform.privacy.subjects import load_subjects, row_mask
from llm_data_platform.streaming.parse import LineColumns, ParsedBatch, parse_batch, spec_of

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

# A test hook: called with a stage name and details between the steps of a write; raising
# from it simulates a crash at that point.
FaultHook = Callable[[str, dict], None]

ZONE = "raw"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 160


def batch_table_names(stream: str) -> tuple[str, str]:
    """(events table, quarantine table) of a stream's micro-batches in the raw zone."""
    return f"{stream}_batches", f"{stream}_batches_quarantine"


def safe_identity(identity: str) -> str:
    """A file-name-safe, deterministic form of a batch identity.

    Kept as is when already safe (``[A-Za-z0-9._-]``, not hidden, not too long); otherwise the
    unsafe characters are replaced and a hash of the original is appended, so two identities
    never collide after sanitising.
    """
    if not identity:
        raise ValueError("A micro-batch identity must not be empty.")
    cleaned = _UNSAFE.sub("_", identity).lstrip("._")
    if cleaned == identity and len(identity) <= _MAX_NAME:
        return identity
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return f"{cleaned[: _MAX_NAME - 17] or 'batch'}-{digest}"


@dataclass
class MicroBatchResult:
    identity: str  # the file name stem (safe form)
    source: str  # source_file of its rows
    received: int  # lines handed in
    rows: int  # valid events written
    quarantined: int  # rejected lines written to quarantine
    days: dict[str, tuple[int, int]]  # day -> (rows, quarantined)
    files: list[str]  # lake URIs written
    bytes: int
    seconds: float
    late_events: int  # rows whose arrival day is after their event day
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine reason families
    fast_rows: int = 0  # rows parsed by the vectorised path
    forgotten: int = 0  # rows and lines of forgotten users, dropped (not written anywhere)


# Dictionary encoding only for columns that repeat a handful of values in a batch; ids, texts,
# line numbers and times are (nearly) unique, and zstd packs plain ids smaller and faster than
# a dictionary that grows to the page limit and falls back (measured on a 25,000-event batch).
_DICTIONARY = {
    "event_type",
    "role",
    "turn_index",
    "rating",
    "op",
    "format",
    "source_file",
    "reason",
}


# Free text: min/max statistics of it prune nothing and cost a comparison per value.
_NO_STATISTICS = {"content", "record", "title"}


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        compression="zstd",
        row_group_size=64_000,
        use_dictionary=[c for c in table.column_names if c in _DICTIONARY],
        write_statistics=[c for c in table.column_names if c not in _NO_STATISTICS],
    )
    return buffer.getvalue()


def write_microbatch(
    lake: LakeResource,
    stream: str,
    identity: str,
    lines: Sequence[tuple[int, bytes]] | LineColumns,
    source: str,
    arrived_at: datetime | Sequence[datetime] | pa.Array,
    *,
    rejected: Sequence[tuple[int, bytes, str, datetime]] = (),
    fault: FaultHook | None = None,
    bounds: tuple[date, date] | None = None,
) -> MicroBatchResult:
    """Parse ``lines`` ((line number, raw bytes)) and write the batch, one file per event day.

    ``source`` becomes every row's ``source_file`` and the line number its ``source_line``, a
    pointer back to the original bytes. ``arrived_at`` is one time for the whole batch or one per
    line (datetimes or an Arrow timestamp array). ``rejected`` are records the source already
    knows are bad ((line, raw bytes, reason, arrival time): a null Kafka value, an unreadable
    object); they are quarantined under their arrival day. Idempotent: the same inputs always
    write the same files, byte for byte.
    """
    started = time.perf_counter()
    parsed = parse_batch(stream, lines, source, arrived_at, rejected=rejected, bounds=bounds)
    received = len(lines) + len(rejected)
    return write_parsed(lake, stream, identity, source, parsed, received, fault, started)


def write_parsed(
    lake: LakeResource,
    stream: str,
    identity: str,
    source: str,
    parsed: ParsedBatch,
    received: int,
    fault: FaultHook | None = None,
    started: float | None = None,
) -> MicroBatchResult:
    """Write a parsed batch (``parse_batch``, or ``combine_parsed`` of its pieces): one file
    per event day and table (``encode_parsed`` then ``write_encoded``)."""
    started = time.perf_counter() if started is None else started
    encoded = encode_parsed(lake, stream, identity, source, parsed, received)
    return write_encoded(lake, encoded, fault, started)


@dataclass
class EncodedBatch:
    """A batch's files as Parquet bytes, not yet written (``encode_parsed``)."""

    name: str
    source: str
    received: int
    rows: int
    quarantined: int
    days: dict[str, tuple[int, int]]
    files: list[tuple[str, bytes]]  # (lake path, Parquet bytes), in write order
    late_events: int
    reasons: dict[str, int]
    fast_rows: int
    seconds: float  # spent encoding
    forgotten: int = 0


def encode_parsed(
    lake: LakeResource,
    stream: str,
    identity: str,
    source: str,
    parsed: ParsedBatch,
    received: int,
) -> EncodedBatch:
    """Split a parsed batch per event day and encode each file (no side effect: may run on
    any thread, ahead of the writes). The bytes depend on the rows only, not on how the batch
    was cut into pieces for parsing (each file's table is made contiguous before encoding)."""
    started = time.perf_counter()
    name = safe_identity(identity)
    events_table, quarantine_name = batch_table_names(stream)
    parsed, forgotten = _without_forgotten(lake, stream, parsed)

    files: list[tuple[str, bytes]] = []
    days: dict[str, tuple[int, int]] = {}
    all_days = sorted(
        set(pc.unique(parsed.row_days).to_pylist())
        | set(pc.unique(parsed.quarantine_days).to_pylist())
    )
    for day in all_days:
        key = day.isoformat()
        good, bad = parsed.rows, parsed.quarantine
        if len(all_days) > 1:
            good = good.filter(pc.equal(parsed.row_days, pa.scalar(day, pa.date32())))
            bad = bad.filter(pc.equal(parsed.quarantine_days, pa.scalar(day, pa.date32())))
        days[key] = (good.num_rows, bad.num_rows)
        if good.num_rows:
            path = lake.path(ZONE, events_table, f"dt={key}", f"{name}.parquet")
            files.append((path, _parquet_bytes(good.combine_chunks())))
        if bad.num_rows:
            path = lake.path(ZONE, quarantine_name, f"dt={key}", f"{name}.parquet")
            files.append((path, _parquet_bytes(bad.combine_chunks())))
    late = 0
    if parsed.rows.num_rows:
        arrived_days = pc.cast(parsed.rows["arrived_at"], pa.date32())
        late = pc.sum(pc.greater(arrived_days, parsed.row_days)).as_py() or 0
    reasons = Counter(r.split(":")[0] for r in parsed.quarantine["reason"].to_pylist())
    return EncodedBatch(
        name=name,
        source=source,
        received=received,
        rows=parsed.rows.num_rows,
        quarantined=parsed.quarantine.num_rows,
        days=days,
        files=files,
        late_events=late,
        reasons=dict(reasons),
        fast_rows=parsed.fast_rows,
        seconds=time.perf_counter() - started,
        forgotten=forgotten,
    )


def _without_forgotten(lake: LakeResource, stream: str, parsed: ParsedBatch) -> tuple:
    """The batch without the rows and quarantined lines of forgotten users (``ldp forget``):
    a late arrival or a replay of their data is dropped here, before anything is written."""
    if stream != "conversations":
        return parsed, 0
    subjects = load_subjects(lake)
    if not subjects:
        return parsed, 0
    rows_mask = row_mask(parsed.rows, subjects)
    lines_mask = row_mask(parsed.quarantine, subjects)
    dropped = 0
    rows, row_days = parsed.rows, parsed.row_days
    if rows_mask is not None and pc.any(rows_mask).as_py():
        dropped += int(pc.sum(rows_mask).as_py())
        rows, row_days = rows.filter(pc.invert(rows_mask)), row_days.filter(pc.invert(rows_mask))
    quarantine, quarantine_days = parsed.quarantine, parsed.quarantine_days
    if lines_mask is not None and pc.any(lines_mask).as_py():
        dropped += int(pc.sum(lines_mask).as_py())
        keep = pc.invert(lines_mask)
        quarantine, quarantine_days = quarantine.filter(keep), quarantine_days.filter(keep)
    if not dropped:
        return parsed, 0
    return replace(
        parsed, rows=rows, row_days=row_days, quarantine=quarantine, quarantine_days=quarantine_days
    ), dropped


def write_encoded(
    lake: LakeResource,
    encoded: EncodedBatch,
    fault: FaultHook | None = None,
    started: float | None = None,
) -> MicroBatchResult:
    """Write an encoded batch's files, each atomically (``fault`` at ``mid_write`` before
    each one)."""
    started = time.perf_counter() - encoded.seconds if started is None else started
    written: list[str] = []
    size = 0
    for index, (path, data) in enumerate(encoded.files):
        if fault is not None:
            details = {"identity": encoded.name, "index": index, "files": len(encoded.files)}
            fault("mid_write", details)
        size += lake.write_bytes(path, data)
        written.append(lake.uri(path))
    return MicroBatchResult(
        identity=encoded.name,
        source=encoded.source,
        received=encoded.received,
        rows=encoded.rows,
        quarantined=encoded.quarantined,
        days=encoded.days,
        files=written,
        bytes=size,
        seconds=time.perf_counter() - started,
        late_events=encoded.late_events,
        reasons=encoded.reasons,
        fast_rows=encoded.fast_rows,
        forgotten=encoded.forgotten,
    )


# ---- reading ---------------------------------------------------------------------------------
def _day_key(day: str | date) -> str:
    return day.isoformat() if isinstance(day, date) else date.fromisoformat(day).isoformat()


def _day_files(lake: LakeResource, table: str, day: str) -> list[str]:
    fs, _ = lake.filesystem()
    folder = lake.path(ZONE, table, f"dt={day}")
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith((".", "_"))  # writers' temp files, markers
    )


def _read(lake: LakeResource, paths: list[str], schema: pa.Schema) -> pa.Table:
    if not paths:
        return schema.empty_table()
    import pyarrow.dataset as pads  # pulls pandas: only where a scan happens

    fs, _ = lake.filesystem()
    return pads.dataset(paths, schema=schema, filesystem=fs, format="parquet").to_table()


_SOURCE_ORDER = [("source_file", "ascending"), ("source_line", "ascending")]
# First arrival wins; among rows that arrived at the same instant, source order decides.
_ARRIVAL_ORDER = [("arrived_at", "ascending"), *_SOURCE_ORDER]


def _stem(path: str) -> str:
    return posixpath.basename(path)[: -len(".parquet")]


@dataclass
class DayBatches:
    rows: pa.Table  # events of the day, each event_id once
    quarantine: pa.Table
    batches: list[str]  # identities read
    files: int
    received_rows: int  # before de-duplication
    duplicates: int  # rows dropped because their event_id came earlier

    @property
    def per_source(self) -> dict[str, int]:
        """Events kept per source family (kafka://topic, s3://bucket/…, landing stream…)."""
        counts: Counter[str] = Counter()
        for item in pc.value_counts(self.rows["source_file"]).to_pylist():  # one per batch
            counts[_source_family(item["values"])] += item["counts"]
        return dict(counts)


def _source_family(source: str) -> str:
    scheme, sep, rest = source.partition("://")
    if not sep:
        return source.split("/")[0]
    return f"{scheme}://{rest.split('/')[0]}"


def dedupe_events(table: pa.Table) -> pa.Table:
    """Keep the first arrival of each ``event_id`` (ties: (source_file, source_line) order)."""
    if table.num_rows == 0:
        return table
    ordered = table.sort_by(_ARRIVAL_ORDER)
    index = pa.array(np.arange(ordered.num_rows, dtype=np.int64))
    firsts = (
        pa.table({"event_id": ordered["event_id"], "i": index})
        .group_by("event_id", use_threads=False)
        .aggregate([("i", "min")])["i_min"]
    )
    return ordered.take(np.sort(firsts.to_numpy()))


@dataclass
class DayFiles:
    """A day's micro-batch files of a stream, and its quarantine rows (few: read whole)."""

    events: list[str]
    quarantine_files: list[str]
    quarantine: pa.Table

    @property
    def batches(self) -> list[str]:
        return sorted({_stem(p) for p in self.events + self.quarantine_files})


def day_files(lake: LakeResource, stream: str, day: str | date) -> DayFiles:
    key = _day_key(day)
    events_table, quarantine_name = batch_table_names(stream)
    quarantine_files = _day_files(lake, quarantine_name, key)
    quarantine = _read(lake, quarantine_files, schemas.QUARANTINE)
    if quarantine.num_rows:
        quarantine = quarantine.sort_by(_SOURCE_ORDER)
    return DayFiles(_day_files(lake, events_table, key), quarantine_files, quarantine)


def read_day_detailed(lake: LakeResource, stream: str, day: str | date) -> DayBatches:
    """A day in memory (the reference the out-of-core ``compaction.compact_day`` matches)."""
    files = day_files(lake, stream, day)
    event_files, quarantine_files, quarantine = (
        files.events,
        files.quarantine_files,
        files.quarantine,
    )
    raw = _read(lake, event_files, spec_of(stream).schema)
    rows = dedupe_events(raw)
    return DayBatches(
        rows=rows,
        quarantine=quarantine,
        batches=files.batches,
        files=len(event_files) + len(quarantine_files),
        received_rows=raw.num_rows,
        duplicates=raw.num_rows - rows.num_rows,
    )


def read_day(lake: LakeResource, stream: str, day: str | date) -> tuple[pa.Table, pa.Table]:
    """(events, quarantine) of one day across all its micro-batches, events de-duplicated by
    ``event_id``: what the raw asset compacts into its partition."""
    result = read_day_detailed(lake, stream, day)
    return result.rows, result.quarantine
