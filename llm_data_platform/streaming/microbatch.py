"""Micro-batches in the raw zone, named by their content identity.

A micro-batch is what one source delivers in one piece: a Kafka offset range of one partition,
one S3 object version, one landing file. Its lines are parsed with the same validation as the
landing folder (``transforms.records``) and written, per event day, as

    raw/<stream>_batches/dt=<day>/<identity>.parquet              (valid events)
    raw/<stream>_batches_quarantine/dt=<day>/<identity>.parquet   (rejected lines + reason)

Each file is written atomically (``LakeResource.write_bytes``: temp file + rename locally, one
PUT on S3), and its name is the batch's identity (``kafka-<topic>-<partition>-<first>-<last>``,
``s3-<sha of key+etag>``…): writing the same batch twice gives the same files with the same
bytes, never a second copy. A crash between two files of one batch leaves complete files only;
re-writing the batch completes it.

``read_day`` reads every micro-batch of a day and keeps each ``event_id`` once (the first by
``(source_file, source_line)``), so replays under a different identity (an S3 object re-uploaded
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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from llm_data_platform import schemas
from llm_data_platform.transforms.records import STREAMS, ParsedLines, parse_lines

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


def _spec(stream: str):
    if stream not in STREAMS:
        raise ValueError(f"Unknown stream {stream!r}; expected one of {sorted(STREAMS)}.")
    return STREAMS[stream]


def _parse(
    stream: str,
    lines: Sequence[tuple[int, bytes]],
    source: str,
    arrived_at: datetime | Sequence[datetime],
) -> ParsedLines:
    """parse_lines, with one arrival time for the batch or one per line.

    With per-line times, lines are parsed in runs of the same arrival *day* (so a line whose
    timestamp cannot be read falls back to its own arrival day, as in the landing folder) and
    each row then gets its own line's exact arrival time.
    """
    spec = _spec(stream)

    def run(chunk, when: datetime) -> ParsedLines:
        return parse_lines(
            chunk,
            source_file=source,
            arrived_at=when,
            validate=spec.validate,
            json_time_key=spec.json_time_key,
            row_time_key=spec.row_time_key,
        )

    if isinstance(arrived_at, datetime):
        return run(lines, arrived_at)
    if len(arrived_at) != len(lines):
        raise ValueError(f"{len(arrived_at)} arrival times for {len(lines)} lines")
    out = ParsedLines()
    start = 0
    while start < len(lines):
        day = arrived_at[start].date()
        end = start + 1
        while end < len(lines) and arrived_at[end].date() == day:
            end += 1
        chunk_times = arrived_at[start:end]
        parsed = run(lines[start:end], chunk_times[0])
        if any(t != chunk_times[0] for t in chunk_times):
            when = {number: t for (number, _), t in zip(lines[start:end], chunk_times, strict=True)}
            for row in parsed.rows:
                row["arrived_at"] = when[row["source_line"]]
            for row in parsed.quarantine:
                row["arrived_at"] = when[row["source_line"]]
        out.rows += parsed.rows
        out.row_days += parsed.row_days
        out.quarantine += parsed.quarantine
        out.quarantine_days += parsed.quarantine_days
        start = end
    return out


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Column by column (several times faster than ``Table.from_pylist`` on wide rows)."""
    if not rows:
        return schema.empty_table()
    return pa.Table.from_arrays(
        [pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema], schema=schema
    )


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=64_000)
    return buffer.getvalue()


def write_microbatch(
    lake: LakeResource,
    stream: str,
    identity: str,
    lines: Sequence[tuple[int, bytes]],
    source: str,
    arrived_at: datetime | Sequence[datetime],
    *,
    fault: FaultHook | None = None,
) -> MicroBatchResult:
    """Parse ``lines`` ((line number, raw bytes)) and write the batch, one file per event day.

    ``source`` becomes every row's ``source_file`` and the line number its ``source_line``, a
    pointer back to the original bytes. ``arrived_at`` is one time for the whole batch or one per
    line. Idempotent: the same (identity, lines, arrived_at) always writes the same files.
    """
    started = time.perf_counter()
    spec = _spec(stream)
    name = safe_identity(identity)
    events_table, quarantine_name = batch_table_names(stream)
    parsed = _parse(stream, lines, source, arrived_at)

    by_day: dict[date, tuple[list[dict], list[dict]]] = {}
    for row, day in zip(parsed.rows, parsed.row_days, strict=True):
        by_day.setdefault(day, ([], []))[0].append(row)
    for row, day in zip(parsed.quarantine, parsed.quarantine_days, strict=True):
        by_day.setdefault(day, ([], []))[1].append(row)

    planned: list[tuple[str, pa.Table]] = []
    days: dict[str, tuple[int, int]] = {}
    late = 0
    for day in sorted(by_day):
        good, bad = by_day[day]
        key = day.isoformat()
        days[key] = (len(good), len(bad))
        late += sum(1 for r in good if r["arrived_at"].date() > day)
        if good:
            path = lake.path(ZONE, events_table, f"dt={key}", f"{name}.parquet")
            planned.append((path, _table(good, spec.schema)))
        if bad:
            path = lake.path(ZONE, quarantine_name, f"dt={key}", f"{name}.parquet")
            planned.append((path, _table(bad, schemas.QUARANTINE)))

    files: list[str] = []
    size = 0
    for index, (path, table) in enumerate(planned):
        data = _parquet_bytes(table)
        if fault is not None:
            fault("mid_write", {"identity": name, "index": index, "files": len(planned)})
        size += lake.write_bytes(path, data)
        files.append(lake.uri(path))
    reasons = Counter(q["reason"].split(":")[0] for q in parsed.quarantine)
    return MicroBatchResult(
        identity=name,
        source=source,
        received=len(lines),
        rows=len(parsed.rows),
        quarantined=len(parsed.quarantine),
        days=days,
        files=files,
        bytes=size,
        seconds=time.perf_counter() - started,
        late_events=late,
        reasons=dict(reasons),
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
    fs, _ = lake.filesystem()
    return pads.dataset(paths, schema=schema, filesystem=fs, format="parquet").to_table()


_SOURCE_ORDER = [("source_file", "ascending"), ("source_line", "ascending")]


def _stem(path: str) -> str:
    return posixpath.basename(path)[: -len(".parquet")]


def list_day_batches(lake: LakeResource, stream: str, day: str | date) -> list[str]:
    """Identities of the micro-batches holding events or quarantine rows of ``day``."""
    key = _day_key(day)
    names: set[str] = set()
    for table in batch_table_names(stream):
        names.update(_stem(p) for p in _day_files(lake, table, key))
    return sorted(names)


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
        for value, n in Counter(self.rows["source_file"].to_pylist()).items():
            counts[_source_family(value)] += n
        return dict(counts)


def _source_family(source: str) -> str:
    scheme, sep, rest = source.partition("://")
    if not sep:
        return source.split("/")[0]
    return f"{scheme}://{rest.split('/')[0]}"


def dedupe_events(table: pa.Table) -> pa.Table:
    """Keep the first row of each ``event_id`` in (source_file, source_line) order."""
    if table.num_rows == 0:
        return table
    ordered = table.sort_by(_SOURCE_ORDER)
    index = pa.array(np.arange(ordered.num_rows, dtype=np.int64))
    firsts = (
        pa.table({"event_id": ordered["event_id"], "i": index})
        .group_by("event_id", use_threads=False)
        .aggregate([("i", "min")])["i_min"]
    )
    return ordered.take(np.sort(firsts.to_numpy()))


def read_day_detailed(lake: LakeResource, stream: str, day: str | date) -> DayBatches:
    spec = _spec(stream)
    key = _day_key(day)
    events_table, quarantine_name = batch_table_names(stream)
    event_files = _day_files(lake, events_table, key)
    quarantine_files = _day_files(lake, quarantine_name, key)
    raw = _read(lake, event_files, spec.schema)
    rows = dedupe_events(raw)
    quarantine = _read(lake, quarantine_files, schemas.QUARANTINE)
    if quarantine.num_rows:
        quarantine = quarantine.sort_by(_SOURCE_ORDER)
    names = {_stem(p) for p in event_files + quarantine_files}
    return DayBatches(
        rows=rows,
        quarantine=quarantine,
        batches=sorted(names),
        files=len(event_files) + len(quarantine_files),
        received_rows=raw.num_rows,
        duplicates=raw.num_rows - rows.num_rows,
    )


def read_day(lake: LakeResource, stream: str, day: str | date) -> tuple[pa.Table, pa.Table]:
    """(events, quarantine) of one day across all its micro-batches, events de-duplicated by
    ``event_id``: what the raw asset compacts into its partition."""
    result = read_day_detailed(lake, stream, day)
    return result.rows, result.quarantine


def arrival_times(ms_timestamps: Sequence[int]) -> list[datetime]:
    """UTC datetimes for epoch-millisecond timestamps (cached per distinct value)."""
    cache: dict[int, datetime] = {}
    out: list[datetime] = []
    for ms in ms_timestamps:
        when = cache.get(ms)
        if when is None:
            when = cache[ms] = datetime.fromtimestamp(ms / 1000, tz=UTC)
        out.append(when)
    return out
