"""The data lake: one root, local folder or S3, one code path through pyarrow filesystems.

Layout: ``<root>/<zone>/<table>/<partition_name>=<key>/data.parquet`` (hive style, zstd).
One file per partition makes replacement atomic: locally a temp file is renamed over the old
one; on S3 a single PUT (or completed multipart upload) replaces the object whole.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

if TYPE_CHECKING:
    import pyarrow.dataset as pads

DATA_FILE = "data.parquet"


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
    """

    root: str
    s3: S3Resource | None = None

    _fs: Any = PrivateAttr(default=None)
    _base: str = PrivateAttr(default="")

    # ---- filesystem -------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self._fs is None:
            if self.is_s3:
                self._fs = _s3_filesystem(self.s3 or S3Resource())
                self._base = self.root[len("s3://") :].rstrip("/")
            else:
                self._fs = pafs.LocalFileSystem()
                self._base = os.path.abspath(self.root)
        return self._fs, self._base

    def uri(self, path: str) -> str:
        return f"s3://{path}" if self.is_s3 else path

    def table_path(self, zone: str, table: str) -> str:
        _, base = self.filesystem()
        return posixpath.join(base, zone, table)

    def partition_path(self, zone: str, table: str, key: str, name: str = "dt") -> str:
        return posixpath.join(self.table_path(zone, table), f"{name}={key}")

    def exists(self, path: str) -> bool:
        fs, _ = self.filesystem()
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
        if sort_by:
            table = table.sort_by([(c, "ascending") for c in sort_by])
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd", row_group_size=64_000)
        path = posixpath.join(self.partition_path(zone, table_name, key, partition_name), DATA_FILE)
        size = self.write_bytes(path, buffer.getvalue())
        return WriteInfo(self.uri(path), table.num_rows, size, time.perf_counter() - started)

    def read_partition(
        self, zone: str, table_name: str, key: str, partition_name: str = "dt"
    ) -> pa.Table | None:
        path = posixpath.join(self.partition_path(zone, table_name, key, partition_name), DATA_FILE)
        fs, _ = self.filesystem()
        if not self.exists(path):
            return None
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
            with fs.open_input_file(path) as f:
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
        with fs.open_input_file(path) as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns)

    def delete_partition(self, zone: str, table_name: str, key: str, name: str = "dt") -> None:
        fs, _ = self.filesystem()
        path = self.partition_path(zone, table_name, key, name)
        if self.exists(path):
            fs.delete_dir(path)

    def list_partitions(self, zone: str, table_name: str, partition_name: str = "dt") -> list[str]:
        fs, _ = self.filesystem()
        path = self.table_path(zone, table_name)
        if not self.exists(path):
            return []
        prefix = f"{partition_name}="
        keys = []
        for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
            name = posixpath.basename(info.path)
            is_partition = info.type == pafs.FileType.Directory and name.startswith(prefix)
            if is_partition and self.exists(posixpath.join(info.path, DATA_FILE)):
                keys.append(name[len(prefix) :])
        return sorted(keys)

    def list_partitions_any(self, zone: str, table_name: str, partition_name: str) -> list[str]:
        """Partition folders of a table whose partitions hold files other than data.parquet."""
        fs, _ = self.filesystem()
        path = self.table_path(zone, table_name)
        prefix = f"{partition_name}="
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
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
    def write_bytes(self, path: str, data: bytes) -> int:
        fs, _ = self.filesystem()
        if self.is_s3:
            with fs.open_output_stream(path) as out:  # one object, committed on close
                out.write(data)
            return len(data)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = posixpath.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return len(data)

    def write_file(self, path: str, local_path: str, block: int = 8 << 20) -> int:
        """Move a finished local file to ``path`` whole (streamed, never held in memory):
        locally a rename (or a copy to a temp name, then a rename), on S3 one upload."""
        fs, _ = self.filesystem()
        size = os.path.getsize(local_path)
        if not self.is_s3:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = posixpath.join(
                os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}"
            )
            try:
                os.replace(local_path, tmp)  # same filesystem: no copy
            except OSError:
                shutil.copyfile(local_path, tmp)
            os.replace(tmp, path)
            return size
        with open(local_path, "rb") as source, fs.open_output_stream(path) as out:
            while data := source.read(block):
                out.write(data)
        return size

    def local_file(self, path: str, workdir: str, block: int = 8 << 20) -> str:
        """A local path to read ``path`` from: itself on a local lake; on S3 a streamed copy
        into ``workdir`` (engines such as DuckDB then read a plain file, offline)."""
        if not self.is_s3:
            return path
        fs, _ = self.filesystem()
        local = os.path.join(workdir, f"{uuid.uuid4().hex}-{posixpath.basename(path)}")
        with fs.open_input_stream(path) as source, open(local, "wb") as out:
            while data := source.read(block):
                out.write(data)
        return local

    def read_bytes(self, path: str) -> bytes | None:
        fs, _ = self.filesystem()
        if not self.exists(path):
            return None
        with fs.open_input_stream(path) as f:
            return f.read()

    def path(self, *parts: str) -> str:
        _, base = self.filesystem()
        return posixpath.join(base, *parts)


def _s3_filesystem(s3: S3Resource) -> pafs.S3FileSystem:
    import boto3

    session = boto3.session.Session(
        profile_name=s3.profile_name,
        aws_access_key_id=s3.aws_access_key_id,
        aws_secret_access_key=s3.aws_secret_access_key,
        aws_session_token=s3.aws_session_token,
        region_name=s3.region_name,
    )
    creds = session.get_credentials()
    if creds is None:
        raise dg.Failure(
            "The lake root is on S3 but no AWS credentials were found. Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or point LDP_LAKE_ROOT at a local folder."
        )
    frozen = creds.get_frozen_credentials()
    kwargs: dict[str, Any] = dict(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token,
        region=s3.region_name or session.region_name or "us-east-1",
    )
    if s3.endpoint_url:
        scheme, _, host = s3.endpoint_url.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**kwargs)
