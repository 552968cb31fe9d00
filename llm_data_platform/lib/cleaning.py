"""The clean assets' shape: a transform per day → the clean table and, beside it, the rows it
dropped with the reason — two assets of one step (they are one result, written together).

A day is streamed, never held whole: the raw partition is read in ``group_key`` order
(DuckDB sorts out of core) in chunks of whole groups — a conversation, a document — so a
transform that looks across a group (duplicate turns, a document's latest version) sees all
of it; each chunk's clean rows are appended to one Parquet file, its dropped rows to
another, both in a work directory and moved into the lake at the end as one lake commit (a
chunk's rows are not held once written: a day of 10^6 messages drops ~250k of them).
"""

import ctypes
import functools
import posixpath
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from llm_data_platform.defs.partitions import Partitions, daily_backfill_policy
from llm_data_platform.lib.metadata import PREVIEW_ROWS, preview_markdown, table_metadata
from llm_data_platform.resources.lake import DATA_FILE, LakeResource, WriteInfo
from llm_data_platform.resources.lake_commit import PartitionCommit
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.streaming.compaction import scan_sorted
from llm_data_platform.transforms.groups import whole_groups
from llm_data_platform.transforms.table_sink import TableSink

CLEAN_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=30), warn_window=timedelta(hours=4)
)
CHUNK_ROWS = 100_000  # raw rows read at once (then completed to whole groups)
_M_ARENA_MAX = -8  # glibc's mallopt parameter
# ``transform(raw)`` returns an object with ``clean``, ``dropped`` (tables), ``counts`` (dict)
Transform = Callable[[pa.Table], Any]


def clean_asset(
    name: str,
    raw: str,
    *,
    description: str,
    kinds: set[str],
    sort_by: list[str],
    read_order: list[str],
    schema: pa.Schema,
    raw_schema: pa.Schema,
    make_transform: Callable[..., Transform],
    partitions: Partitions,
    reuse_previous: bool = False,
    day_metadata: Callable[[LakeResource, str], dict] | None = None,
) -> dg.AssetsDefinition:
    """``read_order`` starts with the group key and must agree with ``sort_by``'s first
    columns, so chunks appended in read order give a file sorted by ``sort_by``.

    ``reuse_previous``: ``make_transform(pipeline, previous)`` gets the day's clean table as
    the last run left it (None the first time), so a transform can keep what did not change
    (documents: text already extracted from the same version) — a re-run of a day costs its
    changes, not the whole day. Otherwise ``make_transform(pipeline)``.

    ``day_metadata(lake, key)``: more metadata for the clean day, read from the committed
    table (histograms a person would rather look at than counts).

    A transform may carry state through a day: ``start_day(lake, key, workdir)`` is called
    before the day's first chunk (``workdir``: the day's scratch directory, for files it
    writes as it goes), ``finish_day()`` after its last, returning (side tables by name — a
    table, or a local Parquet file in ``workdir`` —, counts); the side tables go into the
    day's commit in the clean zone, each recorded as an observation of the asset of that name
    (conversations: the dedup index)."""
    dropped = f"{name}_dropped"

    @dg.multi_asset(
        name=f"clean_{raw}",
        deps=[raw],
        outs={
            name: dg.AssetOut(
                description=description,
                group_name="clean",
                kinds=kinds,
                freshness_policy=CLEAN_FRESHNESS,
                metadata={"lake_zone": "clean", "lake_sort_by": sort_by},
            ),
            dropped: dg.AssetOut(
                description=f"Rows of {raw} that {name} dropped, each with the reason.",
                group_name="clean",
                kinds={"parquet"},
                metadata={"lake_zone": "clean"},
            ),
        },
        partitions_def=partitions.daily,
        backfill_policy=daily_backfill_policy,
    )
    def _clean(
        context: dg.AssetExecutionContext, lake: LakeResource, pipeline: PipelineSettings
    ) -> tuple[None, None]:
        bound_malloc()
        fixed = None if reuse_previous else make_transform(pipeline)

        def transform_for(previous: pa.Table | None) -> Transform:
            return make_transform(pipeline, previous) if reuse_previous else fixed

        day = _DayCleaner(
            lake, raw, name, transform_for, sort_by, read_order, schema, raw_schema, reuse_previous
        )
        for key in context.partition_keys:
            counts, removed, info = day.clean(key)
            context.add_asset_metadata(counts, asset_key=name, partition_key=key)
            if day_metadata is not None:
                context.add_asset_metadata(
                    day_metadata(lake, key), asset_key=name, partition_key=key
                )
            meta = {**table_metadata(removed.head, info), "dropped_rows": removed.rows}
            meta["dagster/row_count"] = removed.rows
            if removed.rows:
                meta["dropped_preview"] = dg.MetadataValue.md(preview_markdown(removed.head))
            context.add_asset_metadata(meta, asset_key=dropped, partition_key=key)
            for side, written in day.side_written.items():  # index tables of the same commit
                side_meta = {"rows": written.rows, "bytes": written.bytes, "path": written.uri}
                context.log_event(dg.AssetObservation(side, partition=key, metadata=side_meta))
        return None, None  # both tables are in the lake already, committed together

    return _clean


class _DayCleaner:
    """One day of a raw table → its clean file in the lake, its dropped rows, its counts."""

    def __init__(
        self, lake, raw, name, transform_for, sort_by, read_order, schema, raw_schema, reuse
    ):
        self.lake, self.raw, self.name, self.transform_for = lake, raw, name, transform_for
        self.sort_by = [(c, "ascending") for c in sort_by]
        self.read_order, self.schema, self.raw_schema = read_order, schema, raw_schema
        self.reuse_previous = reuse  # read the day's previous clean table for the transform
        self.side_written: dict[str, WriteInfo] = {}  # the last day's side tables (hooks)

    def clean(self, key: str) -> tuple[dict, TableSink, WriteInfo]:
        started = time.perf_counter()
        source = posixpath.join(self.lake.partition_path("raw", self.raw, key), DATA_FILE)
        if not self.lake.exists(source):
            raise dg.Failure(
                f"raw/{self.raw} has no data for {key}. Materialize it first: `dagster asset "
                f"materialize -m llm_data_platform --select {self.raw},{self.raw}_quarantine "
                f"--partition {key}`."
            )
        previous = (
            self.lake.read_partition("clean", self.name, key) if self.reuse_previous else None
        )
        transform = self.transform_for(previous)
        del previous
        with tempfile.TemporaryDirectory(prefix=f"ldp-{self.name}-") as workdir:
            start_day = getattr(transform, "start_day", None)
            if start_day is not None:  # a transform that carries state through a day's chunks
                start_day(self.lake, key, workdir)
            out = posixpath.join(workdir, "clean.parquet")
            counts, removed = self._chunks(transform, source, workdir, out)
            finish_day = getattr(transform, "finish_day", None)
            side, side_counts = finish_day() if finish_day is not None else ({}, {})
            counts.update(side_counts)
            path, size, info = self._commit(key, out, removed, side)
        meta: dict[str, Any] = {k: int(v) for k, v in sorted(counts.items())}
        meta.update(bytes=size, path=dg.MetadataValue.path(self.lake.uri(path)))
        meta["clean_seconds"] = round(time.perf_counter() - started, 3)
        return meta, removed, info

    def _chunks(
        self, transform: Transform, source: str, workdir: str, out: str
    ) -> tuple[Counter[str], TableSink]:
        """The day's chunks through ``transform``: clean rows to ``out``, dropped rows to a
        file beside it; each chunk's tables are released before the next is read."""
        counts: Counter[str] = Counter()
        dropped = TableSink(path=posixpath.join(workdir, "dropped.parquet"), head_rows=PREVIEW_ROWS)
        with pq.ParquetWriter(out, self.schema, compression="zstd") as writer:
            batches = _sorted_day(self.lake, source, self.read_order, workdir)
            chunks = whole_groups(batches, self.read_order[0])
            for chunk in _at_least_one(chunks, self.raw_schema):
                result = transform(chunk.cast(self.raw_schema))
                del chunk
                clean = result.clean.sort_by(self.sort_by).cast(self.schema)
                writer.write_table(clean)
                dropped.append(result.dropped)
                counts.update(result.counts)
                counts["chunks"] += 1
                counts["dagster/row_count"] += clean.num_rows
                del result, clean
                _release_freed_heap()
        dropped.finish()
        return counts, dropped

    def _commit(
        self, key: str, clean_file: str, removed: TableSink, side: dict[str, pa.Table | str]
    ) -> tuple[str, int, WriteInfo]:
        """The clean day, its dropped rows and the transform's ``side`` tables (clean zone, by
        name) become visible together (one lake commit): a run killed between the writes
        leaves all of them old."""
        started = time.perf_counter()
        path = posixpath.join(self.lake.partition_path("clean", self.name, key), DATA_FILE)
        dropped_path = posixpath.join(
            self.lake.partition_path("clean", f"{self.name}_dropped", key), DATA_FILE
        )
        commit = self.lake.commit()
        size = commit.add_file(path, clean_file)
        dropped_size = commit.add_file(dropped_path, removed.path)
        side_paths = {}
        for table_name, table in side.items():
            side_path = posixpath.join(
                self.lake.partition_path("clean", table_name, key), DATA_FILE
            )
            side_paths[table_name] = (side_path, *_stage(commit, side_path, table))
        commit.apply()
        self.side_written = {
            n: WriteInfo(self.lake.uri(p), rows, size, 0.0)
            for n, (p, rows, size) in side_paths.items()
        }
        seconds = time.perf_counter() - started
        info = WriteInfo(self.lake.uri(dropped_path), removed.rows, dropped_size, seconds)
        return path, size, info


def _stage(commit: PartitionCommit, path: str, table: pa.Table | str) -> tuple[int, int]:
    """(rows, bytes) of a side table staged in ``commit``: a table, or a local Parquet file
    (moved, never read whole)."""
    if isinstance(table, str):
        rows = pq.ParquetFile(table).metadata.num_rows
        return rows, commit.add_file(path, table)
    return table.num_rows, commit.add_table(path, table)


@functools.cache
def _libc() -> Any:
    """glibc, or None (another C library: nothing to tune)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def bound_malloc(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas for the threads this process starts from now on
    (each new thread otherwise gets its own, ~8 per core, and memory freed in one is not
    reused by another). Called where a clean step starts; a step is its own process."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, arenas)


def _release_freed_heap() -> None:
    """Give the malloc heap's free pages back to the system after a chunk: numpy's
    temporaries of a chunk are freed, but glibc keeps the pages (the dynamic mmap threshold
    puts arrays of up to 32 MB in its heap), and a day's RSS grew by ~0.4 GB over 10 chunks
    that nothing held. A few milliseconds a chunk."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _sorted_day(
    lake: LakeResource, source: str, order: list[str], workdir: str
) -> Iterator[pa.RecordBatch]:
    """The raw day in ``order``, ``CHUNK_ROWS`` at a time: DuckDB sorts it out of core into a
    local Parquet file and is closed before the first chunk is cleaned, so its buffers (up to
    its memory limit: ~0.6 GB above the process for a day of 10^6 messages) are not held
    beside the chunks'."""
    path = posixpath.join(workdir, "sorted.parquet")
    writer = None
    for batch in scan_sorted(lake, source, order, workdir, CHUNK_ROWS):
        writer = writer or pq.ParquetWriter(path, batch.schema)  # snappy: a scratch file
        writer.write_batch(batch)
    if writer is None:  # an empty day
        return
    writer.close()
    # pre_buffer off: its read cache keeps every row group read until the reader is done
    # (measured: +60 MB a chunk, ~0.6 GB over a day of 10^6 messages)
    yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=CHUNK_ROWS)


def _at_least_one(chunks, schema: pa.Schema):
    """The chunks, or one empty chunk for an empty day (the transform gives the schemas)."""
    empty = True
    for chunk in chunks:
        empty = False
        yield chunk
    if empty:
        yield schema.empty_table()
