"""Record batches → tables of whole groups (no Dagster import).

A day sorted by a key (a conversation, a document) is processed a chunk at a time: a group
cut by a batch boundary is carried into the next chunk, so every chunk holds whole groups
and a transform that looks across a group's rows gives the same answer as on the whole day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc


def whole_groups(batches: Iterable[pa.RecordBatch | pa.Table], key: str) -> Iterator[pa.Table]:
    """Tables of whole ``key`` groups from batches sorted by ``key`` (nulls together)."""
    carry: pa.Table | None = None
    for batch in batches:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table.cast(carry.schema)])
        if table.num_rows == 0:
            continue
        ids = table[key]
        last = ids[-1]
        if last.is_valid:
            cut = pc.index(ids, last).as_py()
        else:
            cut = len(ids) - int(pc.sum(pc.is_null(ids).cast(pa.int64())).as_py() or 0)
        if cut > 0:
            yield table.slice(0, cut)
        carry = table.slice(cut)
    if carry is not None and carry.num_rows:
        yield carry


def latest_per_key(table: pa.Table, key: str, time: str) -> tuple[pa.Table, int]:
    """One row per ``key``, the one with the latest ``time`` (ties: the order they sort in);
    returns (rows sorted by key, rows dropped)."""
    if table.num_rows == 0:
        return table, 0
    ordered = table.sort_by([(key, "ascending"), (time, "descending")])
    ids = ordered[key].to_pylist()
    first = [i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))]
    kept = ordered.filter(pa.array(first))
    return kept, table.num_rows - kept.num_rows
