"""Tables appended in order to one Parquet file as they come (or held, without a path): what a
day's chunks add — the dedup index, the dropped rows — never waits in memory for its end."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq


class TableSink:
    """Tables of one schema appended in order: held in memory, or with ``path`` written to
    that Parquet file as they come (one row group each). ``schema`` None: the first table's.
    ``head_rows``: a copy of the first rows is kept (a preview; taken, not sliced, so it does
    not keep a chunk's buffers alive)."""

    def __init__(
        self, schema: pa.Schema | None = None, path: str | None = None, head_rows: int = 0
    ) -> None:
        self.schema, self.path, self.rows, self.head_rows = schema, path, 0, head_rows
        self.head: pa.Table | None = None if schema is None else schema.empty_table()
        self._tables: list[pa.Table] = []
        self._writer: pq.ParquetWriter | None = None
        self._finished = False

    def append(self, table: pa.Table) -> None:
        if self._finished:
            raise ValueError("the sink is finished")
        if self.schema is None:
            self.schema, self.head = table.schema, table.schema.empty_table()
        self.rows += table.num_rows
        self._keep_head(table)
        if self.path is None:
            self._tables.append(table)
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self._writer.write_table(table)

    def _keep_head(self, table: pa.Table) -> None:
        more = min(self.head_rows - self.head.num_rows, table.num_rows)
        if more > 0:
            part = table.take(pa.array(range(more), pa.int64()))
            self.head = pa.concat_tables([self.head, part]).combine_chunks()

    def finish(self) -> str:
        """The file of every table appended (an empty one for none); nothing more goes in."""
        if self.path is None:
            raise ValueError("an in-memory sink has no file: read table()")
        if self._finished:
            return self.path
        if self._writer is None:
            if self.schema is None:
                raise ValueError("nothing was appended and the sink has no schema")
            pq.write_table(self.schema.empty_table(), self.path, compression="zstd")
        else:
            self._writer.close()
        self._writer, self._finished = None, True
        return self.path

    def table(self) -> pa.Table:
        """Every table appended, in order (read back from the file, finished, if spilled)."""
        if self.path is None:
            return pa.concat_tables([self.schema.empty_table(), *self._tables])
        return pq.read_table(self.finish(), schema=self.schema)
