"""The data lake: one root, local folder, S3 or GCS, one code path through pyarrow filesystems.

Layout: ``<root>/<zone>/<table>/<partition_name>=<key>/data.parquet`` (hive style, zstd).
One file per partition makes replacement atomic: locally a temp file is written, fsynced and
renamed over the old one; on S3 (and GCS: ``lake_gcs``) bytes in memory go up as one upload
(committed whole on close, or not at all), and a local file is uploaded to a temp key and
copied over the object on the server. A write that fails leaves the previous version in place
and no temp file.

Faults outside the code — a full disk, a folder the process may not write, S3 throttling, 5xx
or timeouts — fail as :class:`LakeError`, a ``dg.Failure`` whose message names the cause, the
path and the fix, with the original error chained. S3 requests are retried by the AWS SDK's
standard strategy (``s3_max_attempts`` attempts, exponential backoff) within explicit connect
and request timeouts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from llm_data_platform.resources import lake_gcs
from llm_data_platform.resources.lake_commit import PartitionCommit, parquet_bytes, recover_commits
from llm_data_platform.resources.lake_gcs import GcsResource, is_gcs_error
from llm_data_platform.resources.lake_s3 import DOING, explain_s3, s3_filesystem

if TYPE_CHECKING:
    import pyarrow.dataset as pads

DATA_FILE = "data.parquet"


class LakeError(dg.Failure):
    """A lake read or write failed for a cause outside the code (disk, permissions, S3); the
    message names the cause, the path and the fix, and the original error is chained."""


@dataclass(frozen=True)
class WriteInfo:
    uri: str
    rows: int
    bytes: int
    seconds: float


class LakeResource(dg.ConfigurableResource):
    """Parquet tables in the lake, with atomic per-partition replacement.

    ``s3`` carries the AWS settings (region, endpoint, credentials or profile) in dagster-aws's
    own resource; credentials are resolved through boto3's chain and handed to pyarrow.
    ``gcs`` does the same for a ``gs://`` root (Application Default Credentials).
    """

    root: str
    s3: S3Resource | None = None
    s3_max_attempts: int = 5
    s3_connect_timeout_seconds: float = 5.0
    s3_request_timeout_seconds: float = 30.0
    gcs: GcsResource | None = None

    _fs: Any = PrivateAttr(default=None)
    _base: str = PrivateAttr(default="")

    # ---- filesystem -------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    @property
    def is_gcs(self) -> bool:
        return self.root.startswith("gs://")

    @property
    def is_remote(self) -> bool:
        """An object store (S3, GCS): no rename, a write is an upload, a folder is a prefix."""
        return self.is_s3 or self.is_gcs

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self._fs is None:
            if self.is_s3:
                self._fs = s3_filesystem(
                    self.s3 or S3Resource(),
                    max_attempts=self.s3_max_attempts,
                    connect_timeout=self.s3_connect_timeout_seconds,
                    request_timeout=self.s3_request_timeout_seconds,
                )
                self._base = self.root[len("s3://") :].rstrip("/")
            elif self.is_gcs:
                self._fs = (self.gcs or GcsResource()).filesystem()
                self._base = self.root[len("gs://") :].rstrip("/")
            else:
                self._fs = pafs.LocalFileSystem()
                self._base = os.path.abspath(self.root)
        return self._fs, self._base

    def uri(self, path: str) -> str:
        return f"{self.root.partition('://')[0]}://{path}" if self.is_remote else path

    def table_path(self, zone: str, table: str) -> str:
        _, base = self.filesystem()
        return posixpath.join(base, zone, table)

    def partition_path(self, zone: str, table: str, key: str, name: str = "dt") -> str:
        return posixpath.join(self.table_path(zone, table), f"{name}={key}")

    def exists(self, path: str) -> bool:
        fs, _ = self.filesystem()
        with self._faults("read", path):
            return fs.get_file_info(path).type != pafs.FileType.NotFound

    # ---- tables -------------------------------------------------------------------------
    def write_partition(
        self,
        zone: str,
        table_name: str,
        key: str,
        table: pa.Table,
        sort_by: list[str] | None = None,
        partition_name: str = "dt",
    ) -> WriteInfo:
        """Replace one partition whole; readers see the old or the new file, never a mix."""
        started = time.perf_counter()
        path = posixpath.join(self.partition_path(zone, table_name, key, partition_name), DATA_FILE)
        size = self.write_bytes(path, parquet_bytes(table, sort_by))
        return WriteInfo(self.uri(path), table.num_rows, size, time.perf_counter() - started)

    def commit(self) -> PartitionCommit:
        """Several files of one result made visible together (see ``lake_commit``)."""
        return PartitionCommit(self)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A run killed after its commit point left moves undone: finish them before anything
        # reads the tables, so every reader sees whole commits.
        recovered = recover_commits(self)
        if recovered and context.log is not None:
            context.log.info(f"Lake: finished {recovered} commit(s) a stopped run left behind.")

    def read_partition(
        self, zone: str, table_name: str, key: str, partition_name: str = "dt"
    ) -> pa.Table | None:
        path = posixpath.join(self.partition_path(zone, table_name, key, partition_name), DATA_FILE)
        fs, _ = self.filesystem()
        if not self.exists(path):
            return None
        with self._faults("read", path):
            return pq.read_table(path, filesystem=fs)

    def count_rows(self, zone: str, table_name: str, keys: list[str]) -> int | None:
        """Rows of these partitions, from the Parquet footers (nothing else is read); None
        when none of them exists."""
        paths = [posixpath.join(self.partition_path(zone, table_name, k), DATA_FILE) for k in keys]
        present = [p for p in paths if self.exists(p)]
        return self.footer_rows(present) if present else None

    def footer_rows(self, paths: list[str]) -> int:
        """Rows of these Parquet files, from their footers alone."""
        fs, _ = self.filesystem()
        total = 0
        for path in paths:
            with self._faults("read", path), fs.open_input_file(path) as f:
                total += pq.ParquetFile(f).metadata.num_rows
        return total

    def iter_partition_batches(
        self,
        zone: str,
        table_name: str,
        key: str,
        batch_rows: int = 65_536,
        columns: list[str] | None = None,
        partition_name: str = "dt",
    ) -> Iterator[pa.RecordBatch]:
        """One partition in record batches: what a large day is read as, never whole."""
        path = posixpath.join(self.partition_path(zone, table_name, key, partition_name), DATA_FILE)
        if not self.exists(path):
            raise FileNotFoundError(path)
        fs, _ = self.filesystem()
        with self._faults("read", path), fs.open_input_file(path) as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns)

    def delete_partition(self, zone: str, table_name: str, key: str, name: str = "dt") -> None:
        fs, _ = self.filesystem()
        path = self.partition_path(zone, table_name, key, name)
        if self.exists(path):
            with self._faults("delete", path):
                lake_gcs.delete_folder(fs, path) if self.is_gcs else fs.delete_dir(path)

    def list_partitions(self, zone: str, table_name: str, partition_name: str = "dt") -> list[str]:
        path = self.table_path(zone, table_name)
        if not self.exists(path):
            return []
        prefix = f"{partition_name}="
        keys = []
        with self._faults("read", path):
            infos = self._children(path)
        for info in infos:
            name = posixpath.basename(info.path)
            is_partition = info.type == pafs.FileType.Directory and name.startswith(prefix)
            if is_partition and self.exists(posixpath.join(info.path, DATA_FILE)):
                keys.append(name[len(prefix) :])
        return sorted(keys)

    def list_partitions_any(self, zone: str, table_name: str, partition_name: str) -> list[str]:
        """Partition folders of a table whose partitions hold files other than data.parquet."""
        path = self.table_path(zone, table_name)
        prefix = f"{partition_name}="
        with self._faults("read", path):
            infos = self._children(path)
        return sorted(
            posixpath.basename(i.path)[len(prefix) :]
            for i in infos
            if i.type == pafs.FileType.Directory and posixpath.basename(i.path).startswith(prefix)
        )

    def read_partitions(
        self,
        zone: str,
        table_name: str,
        keys: list[str] | None = None,
        columns: list[str] | None = None,
        partition_name: str = "dt",
    ) -> pa.Table | None:
        """Concatenate several partitions (all when ``keys`` is None) without an IO manager."""
        wanted = self.list_partitions(zone, table_name, partition_name)
        if keys is not None:
            wanted = [k for k in wanted if k in set(keys)]
        if not wanted:
            return None
        import pyarrow.dataset as pads  # pulls pandas: only where a scan happens

        fs, _ = self.filesystem()
        paths = [
            posixpath.join(self.partition_path(zone, table_name, k, partition_name), DATA_FILE)
            for k in wanted
        ]
        with self._faults("read", self.table_path(zone, table_name)):
            dataset = pads.dataset(paths, filesystem=fs, format="parquet")
            return dataset.to_table(columns=columns)

    def dataset(self, zone: str, table_name: str) -> pads.Dataset | None:
        """All partitions as one lazy hive-partitioned dataset (``dt`` column), for DuckDB or
        pyarrow scans that never hold the whole table in memory."""
        import pyarrow.dataset as pads

        fs, _ = self.filesystem()
        path = self.table_path(zone, table_name)
        if not self.list_partitions(zone, table_name):
            return None
        return pads.dataset(
            path,
            filesystem=fs,
            format="parquet",
            partitioning=pads.partitioning(pa.schema([("dt", pa.string())]), flavor="hive"),
            exclude_invalid_files=False,
        )

    # ---- bytes --------------------------------------------------------------------------
    def write_bytes(self, path: str, data: bytes, report_as: str | None = None) -> int:
        """``report_as``: the path an error names (a commit's final path, not its pending)."""
        fs, _ = self.filesystem()
        with self._faults("write", report_as or path):
            if self.is_remote:
                # ``data`` is whole before the upload starts: the object is committed on close
                # with all of it, or (a failed request) not at all.
                with fs.open_output_stream(path) as out:
                    out.write(data)
            else:

                def fill(tmp: str) -> None:
                    with open(tmp, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())

                _replace_local(path, fill)
        return len(data)

    def write_file(
        self, path: str, local_path: str, block: int = 8 << 20, report_as: str | None = None
    ) -> int:
        """Move a finished local file to ``path`` whole (streamed, never held in memory):
        locally a rename (or, across filesystems, a copy to a temp name) and a rename; on S3 an
        upload to a temp key, then one server-side copy over ``path``."""
        fs, _ = self.filesystem()
        size = os.path.getsize(local_path)
        with self._faults("write", report_as or path):
            if self.is_remote:
                _upload_then_copy(fs, local_path, path, block)
            else:

                def fill(tmp: str) -> None:
                    try:
                        os.replace(local_path, tmp)  # same filesystem: no copy
                    except OSError as exc:
                        if exc.errno != errno.EXDEV:
                            raise
                        shutil.copyfile(local_path, tmp)
                    with open(tmp, "rb") as f:  # durable before it replaces the old version
                        os.fsync(f.fileno())

                _replace_local(path, fill)
        return size

    def local_file(self, path: str, workdir: str, block: int = 8 << 20) -> str:
        """A local path to read ``path`` from: itself on a local lake; on S3 a streamed copy
        into ``workdir`` (engines such as DuckDB then read a plain file, offline)."""
        if not self.is_remote:
            return path
        fs, _ = self.filesystem()
        local = os.path.join(workdir, f"{uuid.uuid4().hex}-{posixpath.basename(path)}")
        with (
            self._faults("read", path, workdir=workdir),
            fs.open_input_stream(path) as source,
            open(local, "wb") as out,
        ):
            while data := source.read(block):
                out.write(data)
        return local

    def read_bytes(self, path: str) -> bytes | None:
        fs, _ = self.filesystem()
        if not self.exists(path):
            return None
        with self._faults("read", path), fs.open_input_stream(path) as f:
            return f.read()

    def path(self, *parts: str) -> str:
        _, base = self.filesystem()
        return posixpath.join(base, *parts)

    def _children(self, path: str) -> list[pafs.FileInfo]:
        """Files and folders directly under ``path`` (GCS: see ``lake_gcs.list_children``)."""
        fs, _ = self.filesystem()
        if self.is_gcs:
            return lake_gcs.list_children(fs, path)
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))

    # ---- faults -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _faults(self, action: str, path: str, workdir: str | None = None) -> Iterator[None]:
        """Turns an OSError of a known cause into a :class:`LakeError` naming it; a missing
        file stays a FileNotFoundError (callers treat it as "not there"), an unknown error
        passes unchanged."""
        try:
            yield
        except FileNotFoundError as exc:
            if action != "write" or not is_gcs_error(exc):  # GCS: a write to a missing bucket
                raise
            raise LakeError(self._explain(exc, action, path, workdir)) from exc
        except OSError as exc:
            message = self._explain(exc, action, path, workdir)
            if message is None:
                raise
            raise LakeError(message) from exc

    def _explain(self, exc: OSError, action: str, path: str, workdir: str | None) -> str | None:
        kept = " The previous version is in place." if action != "read" else ""
        if self.is_s3 and "AWS Error" in str(exc):
            return explain_s3(exc, action, self.uri(path), self._s3_settings()) + kept
        if self.is_gcs and is_gcs_error(exc):
            gcs = self.gcs or GcsResource()
            return lake_gcs.explain_gcs(exc, action, self.uri(path), gcs) + kept
        if workdir is not None:  # an S3 object copied into a local work folder
            where, folder = f"the local work folder {workdir}", os.path.abspath(workdir)
            target = f"a copy of {self.uri(path)}"
            return _explain_local(exc, "write", target, where, "TMPDIR", "", folder)
        folder = os.path.abspath(path if action == "read" else os.path.dirname(path))
        where = f"the lake at {os.path.abspath(self.root)}"
        return _explain_local(exc, action, path, where, "LDP_LAKE_ROOT", kept, folder)

    def _s3_settings(self) -> dict[str, Any]:
        s3 = self.s3 or S3Resource()
        return {
            "endpoint": s3.endpoint_url or f"AWS S3 ({s3.region_name or 'default region'})",
            "attempts": self.s3_max_attempts,
            "request_timeout": self.s3_request_timeout_seconds,
            "connect_timeout": self.s3_connect_timeout_seconds,
        }


def _replace_local(path: str, fill: Callable[[str], None]) -> None:
    """``fill`` a temp file beside ``path``, then rename it over ``path``: on any failure
    ``path`` is as it was (readers skip dot-names). After a fault the lake explains (a full
    disk above all, where the partial file holds the space the re-run needs) the temp file is
    removed; after a crash nothing can remove it, and it stays as harmless as then."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}")
    try:
        fill(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in _CLEAN_UP_AFTER:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def _upload_then_copy(fs: pafs.FileSystem, local_path: str, path: str, block: int) -> None:
    """Upload ``local_path`` to a temp key beside ``path``, then copy it over ``path`` on the
    server (CopyObject replaces an object whole, or not at all).

    Not one stream to ``path``: pyarrow's S3 stream cannot be aborted — closing it, or
    dropping it, commits what was sent so far, so a run terminated mid-upload (or a local read
    error) would leave a truncated object in place of the good one. And not
    ``pyarrow.fs.copy_files``: it returns without an error when the upload's completion fails
    (measured against a 503 on CompleteMultipartUpload), reporting a write that never happened.
    """
    tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{uuid.uuid4().hex}")
    stage = "upload"
    try:
        with open(local_path, "rb") as source, fs.open_output_stream(tmp) as out:
            while data := source.read(block):
                out.write(data)
        stage = "copy"
        fs.move(tmp, path)  # CopyObject, then DeleteObject of the temp key
    except BaseException as exc:
        # A failed S3 request during the upload committed nothing; anything else (the copy
        # failed, an interrupt or a local error mid-upload) may have left the temp key.
        failed_request = isinstance(exc, OSError) and "AWS Error" in str(exc) or is_gcs_error(exc)
        if stage == "copy" or not failed_request:
            with contextlib.suppress(OSError):
                fs.delete_file(tmp)
        raise


_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_DENIED = {errno.EACCES, errno.EPERM}
_CLEAN_UP_AFTER = {*_FULL, *_DENIED, errno.EROFS, errno.EIO}


def _explain_local(
    exc: OSError, action: str, path: str, where: str, fix_root: str, kept: str, folder: str
) -> str | None:
    """``where`` ("the lake at /x", "the local work folder /t") and what happened to ``path``
    in ``folder``, with the fix; None for an errno without a known remedy."""
    place = where[0].upper() + where[1:]
    doing = DOING.get(action, action)
    if exc.errno in _FULL:
        return (
            f"{place} is full ({_FULL[exc.errno]}) {doing} {path}.{kept} Free space on that "
            f"filesystem (`df -h {folder}`) or point {fix_root} at a larger one, then re-run "
            "the step."
        )
    if exc.errno in _DENIED:
        can = "read" if action == "read" else "create and rename files in"
        return (
            f"{place} is not {'readable' if action == 'read' else 'writable'} (permission "
            f"denied: {exc.strerror}) {doing} {path}.{kept} Check the owner and mode of "
            f"{folder} and its parents (`ls -ld {folder}`; `lsattr -d` for an immutable "
            f"folder): the user running Dagster ({_user()}) must be able to {can} it, or "
            f"point {fix_root} at a folder it can."
        )
    if exc.errno == errno.EROFS:
        return (
            f"{place} is on a read-only filesystem ({doing} {path}).{kept} Remount it "
            f"read-write or point {fix_root} at a writable folder."
        )
    if exc.errno == errno.EIO:
        return (
            f"{place} returned an I/O error {doing} {path} ({exc}).{kept} The disk or network "
            "filesystem is failing: check the system log (`dmesg`)."
        )
    return None


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid()) if hasattr(os, "geteuid") else "this user"
