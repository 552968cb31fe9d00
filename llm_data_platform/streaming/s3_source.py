"""Objects arriving under an S3 prefix → raw micro-batches (boto3, no Dagster import).

The way Kinesis Firehose or any uploader delivers: JSONL objects (gzip-compressed or not,
with or without an extension) appear under a prefix. ``S3PrefixSource.poll`` lists the prefix
and returns the new objects in (last_modified, key) order, at most ``max_objects`` per call,
with a cursor that cannot miss or repeat one:

- a watermark on ``LastModified`` plus an overlap window below it (S3 lists an object only
  once its upload completes, and a multipart upload's ``LastModified`` is its *start*: an
  object can show up later than newer ones), inside which the identities already taken are
  remembered (as short hashes, so a burst of thousands of objects keeps the cursor small);
- an object's identity is key + ETag: an object re-uploaded with new content is a new
  arrival, a replay of the same object version is not.

``ingest_object`` downloads one object version (``IfMatch`` its ETag: if it was overwritten
since the listing, the new version is ingested when the listing shows it) and writes it with
``write_microbatch`` under the identity ``s3-<sha256(key, etag)>``; ingesting it again writes
the same files. The caller saves the cursor only after the objects are written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from llm_data_platform.streaming.cursor import OVERLAP_SECONDS, WatermarkCursor, take_new
from llm_data_platform.streaming.file_batches import write_file_batches
from llm_data_platform.streaming.line_reader import LineChunk, ReadLimits, read_lines
from llm_data_platform.streaming.microbatch import FaultHook, MicroBatchResult
from llm_data_platform.transforms.records import STREAMS

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource


@dataclass(frozen=True, order=True)
class S3Object:
    """One object version under the prefix, ordered as the source consumes them."""

    last_modified: float  # epoch seconds
    key: str
    etag: str  # without quotes
    size: int

    @property
    def identity(self) -> str:
        return f"{self.key}@{self.etag}"

    @property
    def batch_identity(self) -> str:
        return object_batch_identity(self.key, self.etag)


def object_batch_identity(key: str, etag: str) -> str:
    digest = hashlib.sha256(f"{key}\n{etag.strip(chr(34))}".encode()).hexdigest()[:32]
    return f"s3-{digest}"


# One cursor for every arrival source (see streaming/cursor.py).
S3Cursor = WatermarkCursor


@dataclass(frozen=True)
class S3Poll:
    objects: list[S3Object]  # to ingest now, in order
    cursor: S3Cursor  # to save once they are written
    backlog: int  # new objects left for later calls


def plan_poll(
    listing: Iterable[S3Object],
    cursor: S3Cursor,
    max_objects: int,
    overlap_seconds: float = OVERLAP_SECONDS,
) -> S3Poll:
    """Pure step: which listed objects are new, the next ``max_objects`` of them in order
    (by LastModified, then key), and the cursor after taking them."""
    take = take_new(
        listing,
        cursor,
        max_objects,
        arrived=lambda o: o.last_modified,
        identity=lambda o: o.identity,
        overlap_seconds=overlap_seconds,
    )
    return S3Poll(take.items, take.cursor, take.backlog)


class S3PrefixSource:
    """New objects under ``s3://bucket/prefix`` for one stream.

    ``client_factory`` returns a boto3 S3 client (e.g. dagster-aws ``S3Resource.get_client``,
    or ``lambda: boto3.client("s3", endpoint_url=...)``); it is called once per source.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        stream: str,
        client_factory: Callable[[], Any],
        *,
        max_objects: int = 200,
        overlap_seconds: float = OVERLAP_SECONDS,
        max_object_bytes: int = 512 * 1024 * 1024,
        limits: ReadLimits | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.lstrip("/")
        self.stream = stream
        self.max_objects = max_objects
        self.overlap_seconds = overlap_seconds
        self.max_object_bytes = max_object_bytes
        self.limits = limits or ReadLimits(max_line_bytes=STREAMS[stream].max_line_bytes)
        self._factory = client_factory
        self._client: Any = None

    @classmethod
    def from_url(cls, url: str, stream: str, client_factory: Callable[[], Any], **kw: Any):
        """``s3://bucket/prefix``."""
        if not url.startswith("s3://"):
            raise ValueError(f"Expected s3://bucket/prefix, got {url!r}")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return cls(bucket, prefix, stream, client_factory, **kw)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def list_objects(self) -> list[S3Object]:
        """Every object under the prefix (paginated), except folder markers and hidden names."""
        objects = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                name = key.rsplit("/", 1)[-1]
                if not name or name.startswith((".", "_")):
                    continue
                modified: datetime = item["LastModified"]
                objects.append(
                    S3Object(modified.timestamp(), key, item["ETag"].strip('"'), item["Size"])
                )
        return objects

    def poll(self, cursor: S3Cursor | str | None = None, max_objects: int | None = None) -> S3Poll:
        if not isinstance(cursor, S3Cursor):
            cursor = S3Cursor.parse(cursor)
        return plan_poll(
            self.list_objects(), cursor, max_objects or self.max_objects, self.overlap_seconds
        )

    def ingest_object(
        self,
        key: str,
        etag: str,
        lake: LakeResource,
        *,
        bounds: tuple[date, date] | None = None,
        fault: FaultHook | None = None,
    ) -> MicroBatchResult | None:
        """Stream one object version into micro-batch parts (``file_batches``).

        Returns None when that version no longer exists (overwritten or deleted since it was
        listed): its successor, if any, is a new arrival for ``poll``.
        """
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"PreconditionFailed", "NoSuchKey", "412", "404"}:
                return None
            raise
        arrived_at: datetime = response["LastModified"].astimezone(UTC)
        identity = object_batch_identity(key, etag)
        source = f"s3://{self.bucket}/{key}"
        size = int(response.get("ContentLength") or 0)
        body = response["Body"]
        if size > self.max_object_bytes:
            body.close()
            reason = f"object of {size} bytes exceeds {self.max_object_bytes}"
            chunks: Iterable[LineChunk] = [LineChunk(rejected=[(0, b"", reason)])]
        else:
            gzipped = (response.get("ContentEncoding") or "").lower() == "gzip"
            chunks = read_lines(body, key, self.limits, gzip=gzipped)
        try:
            return write_file_batches(
                lake, self.stream, identity, source, chunks, arrived_at, bounds=bounds, fault=fault
            ).result
        finally:
            body.close()

    def drain(
        self,
        lake: LakeResource,
        cursor: S3Cursor | str | None = None,
        max_objects: int | None = None,
        *,
        bounds: tuple[date, date] | None = None,
        fault: FaultHook | None = None,
    ) -> tuple[list[MicroBatchResult], S3Cursor, int]:
        """One bounded step: poll, ingest the objects in order, return (results, the cursor to
        save now that they are written, backlog left)."""
        plan = self.poll(cursor, max_objects)
        results = []
        for obj in plan.objects:
            result = self.ingest_object(obj.key, obj.etag, lake, bounds=bounds, fault=fault)
            if result is not None:
                results.append(result)
        return results, plan.cursor, plan.backlog


__all__ = [
    "OVERLAP_SECONDS",
    "S3Cursor",
    "S3Object",
    "S3Poll",
    "S3PrefixSource",
    "object_batch_identity",
    "plan_poll",
]
