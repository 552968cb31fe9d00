"""One commit for the tables of one step's partition: both new, or both old.

A step that writes two tables of one result — a raw day and its quarantine, a clean day and
the rows it dropped — must never leave one of them new and the other old when its process
dies between the two writes. The commit is a redo log:

1. every file is written, whole and durable, to a hidden pending name beside its final path
   (``.data.parquet.pending-<token>``; readers and dataset scans skip dot-names);
2. one commit record, ``<root>/_commits/<token>.json``, names every (pending, final) pair —
   written atomically, it is the commit point;
3. each pending file is moved over its final path (a rename locally, a server-side copy on
   S3 and GCS) and the record is deleted.

A crash before step 2 leaves the old versions in place (the pending files are orphans, as
harmless as any temp file). A crash after it is rolled forward by :func:`recover_commits`,
which every run's lake setup calls: it redoes the moves of every record it finds. Moves are
idempotent — a pending file that is gone was moved already — so a recovery racing the commit
it recovers does no harm.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import uuid
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

COMMITS_DIR = "_commits"


class PartitionCommit:
    """Files staged for one commit; nothing is visible until :meth:`apply`."""

    def __init__(self, lake: LakeResource) -> None:
        self.lake = lake
        self.token = uuid.uuid4().hex
        self.moves: list[tuple[str, str]] = []  # (pending, final)

    def _pending(self, path: str) -> str:
        name = f".{posixpath.basename(path)}.pending-{self.token}"
        pending = posixpath.join(posixpath.dirname(path), name)
        self.moves.append((pending, path))
        return pending

    def add_file(self, path: str, local_path: str) -> int:
        """Stage a finished local file (moved, not copied, on a local lake); its size."""
        return self.lake.write_file(self._pending(path), local_path, report_as=path)

    def add_bytes(self, path: str, data: bytes) -> int:
        return self.lake.write_bytes(self._pending(path), data, report_as=path)

    def add_table(self, path: str, table: pa.Table, sort_by: list[str] | None = None) -> int:
        """Stage a table as zstd Parquet; its size in bytes."""
        return self.add_bytes(path, parquet_bytes(table, sort_by))

    def apply(self) -> None:
        """The commit point, then the moves. With nothing staged, nothing happens."""
        if not self.moves:
            return
        record = record_path(self.lake, self.token)
        body = json.dumps({"moves": self.moves}).encode()
        self.lake.write_bytes(record, body)
        _roll_forward(self.lake, record, self.moves)


def parquet_bytes(table: pa.Table, sort_by: list[str] | None = None) -> bytes:
    import io

    import pyarrow.parquet as pq

    if sort_by:
        table = table.sort_by([(c, "ascending") for c in sort_by])
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=64_000)
    return buffer.getvalue()


def record_path(lake: LakeResource, token: str) -> str:
    return lake.path(COMMITS_DIR, f"{token}.json")


def recover_commits(lake: LakeResource) -> int:
    """Finish every commit a dead process left after its commit point; how many."""
    fs, _ = lake.filesystem()
    folder = lake.path(COMMITS_DIR)
    with lake._faults("read", folder):
        infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    records = sorted(i.path for i in infos if i.path.endswith(".json"))
    for record in records:
        data = lake.read_bytes(record)
        if data is None:  # finished by another process meanwhile
            continue
        moves = [(str(p), str(f)) for p, f in json.loads(data)["moves"]]
        _roll_forward(lake, record, moves)
    return len(records)


def _roll_forward(lake: LakeResource, record: str, moves: list[tuple[str, str]]) -> None:
    fs, _ = lake.filesystem()
    for pending, final in moves:
        with lake._faults("write", final), contextlib.suppress(FileNotFoundError):
            if lake.is_remote:
                if lake.exists(pending):
                    fs.move(pending, final)  # copy over final on the server, delete pending
            else:
                os.replace(pending, final)
    with lake._faults("delete", record), contextlib.suppress(FileNotFoundError):
        fs.delete_file(record)
