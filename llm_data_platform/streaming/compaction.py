"""A raw day from its micro-batches, in bounded memory (DuckDB, out of core; no Dagster).

Every source's micro-batches of the day are scanned lazily (a pyarrow dataset, so a lake on
S3 works too), each ``event_id`` is kept once — the first arrival, ties broken by source
order — and the rows are written sorted to one local Parquet file, which the caller moves
into the lake. DuckDB spills to ``workdir`` beyond ``memory_limit``: a day of millions of
events never has to fit in memory. The day's quarantine rows are few; they are read whole.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from llm_data_platform.streaming.microbatch import _day_key, _source_family, day_files, spec_of

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

MEMORY_LIMIT = "512MB"


@dataclass
class Compaction:
    """A compacted day: its rows in ``path`` (local Parquet, sorted) and what it took."""

    path: str
    rows: int
    received_rows: int  # before de-duplication
    quarantine: pa.Table
    batches: list[str]
    per_source: dict[str, int] = field(default_factory=dict)
    late_events: int = 0
    event_types: dict[str, int] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.received_rows - self.rows


def _connect(workdir: str, memory_limit: str):
    import duckdb

    con = duckdb.connect(
        config={
            "memory_limit": memory_limit,
            "temp_directory": os.path.join(workdir, "spill"),
            "threads": 2,
            "preserve_insertion_order": False,
        }
    )
    con.execute("SET TimeZone = 'UTC'")
    return con


def _register_files(con, name: str, paths: list[str], schema: pa.Schema | None) -> None:
    """A view over local Parquet files (DuckDB reads them itself: an Arrow dataset scanned
    through DuckDB costs ~1 GB more for a 4M-row day); no file: an empty table."""
    if schema is not None:  # DuckDB takes a column without nulls as NOT NULL: keep them
        con.register(f"{name}_schema", schema.empty_table())  # nullable, as the schema says
    if not paths:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_schema")
        return
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    union = f" UNION ALL SELECT * FROM {name}_schema" if schema is not None else ""
    files = f"read_parquet([{listed}], hive_partitioning = false)"  # no dt column from paths
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM {files}{union}")


def compact_day(
    lake: LakeResource,
    stream: str,
    day: str | date,
    sort_by: list[str],
    workdir: str,
    memory_limit: str = MEMORY_LIMIT,
) -> Compaction:

    spec = spec_of(stream)
    key = _day_key(day)
    files = day_files(lake, stream, key)
    event_files = files.events
    out = os.path.join(workdir, f"{stream}-{key}.parquet")
    con = _connect(workdir, memory_limit)
    try:
        _register_files(
            con, "events", [lake.local_file(p, workdir) for p in event_files], spec.schema
        )
        order = ", ".join(sort_by)
        rows = con.execute(
            f"""COPY (
                SELECT * EXCLUDE (arrival_rank) FROM (
                    SELECT *, row_number() OVER (
                        PARTITION BY event_id ORDER BY arrived_at, source_file, source_line
                    ) AS arrival_rank
                    FROM events
                ) WHERE arrival_rank = 1 ORDER BY {order}
            ) TO '{out}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 64000)"""
        ).fetchone()[0]
        written = pq.read_schema(out)
        if not written.equals(spec.schema):
            raise RuntimeError(f"compacted {stream} day has schema {written}, not {spec.schema}")
        result = Compaction(
            out, int(rows), lake.footer_rows(event_files), files.quarantine, files.batches
        )
        _describe(con, out, spec.row_time_key, stream, result)
    finally:
        con.close()
    return result


def _describe(con, path: str, time_column: str, stream: str, result: Compaction) -> None:
    """Per-source counts, late events, event types of the written day (one scan of it)."""
    kind = "event_type" if stream == "conversations" else "NULL"
    sources: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for source, event_type, n, late in con.execute(
        f"SELECT source_file, {kind}, count(*), "
        f"count(*) FILTER (WHERE CAST(arrived_at AS DATE) > CAST({time_column} AS DATE)) "
        f"FROM read_parquet('{path}') GROUP BY 1, 2"
    ).fetchall():
        sources[_source_family(source)] += n
        result.late_events += late
        if event_type is not None:
            kinds[event_type] += n
    result.per_source = dict(sources)
    result.event_types = dict(kinds)


def scan_sorted(
    lake: LakeResource,
    path: str,
    order: list[str],
    workdir: str,
    batch_rows: int = 65_536,
    memory_limit: str = MEMORY_LIMIT,
) -> Iterator[pa.RecordBatch]:
    """A lake Parquet file's rows in ``order``, as record batches: DuckDB sorts out of core,
    so a day sorted one way (by time) is read another way (by conversation) in bounded
    memory."""
    con = _connect(workdir, memory_limit)
    try:
        _register_files(con, "day", [lake.local_file(path, workdir)], None)
        query = f"SELECT * FROM day ORDER BY {', '.join(order)}"
        reader = con.sql(query).to_arrow_reader(batch_rows)
        yield from reader
    finally:
        con.close()
