"""S3 prefix → raw micro-batches, against moto's S3 server on loopback.

The server is a real S3 API over HTTP on 127.0.0.1 (a free port); the source reaches it with a
boto3 client whose ``endpoint_url`` is the only difference from AWS.
"""

from __future__ import annotations

import gzip
import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.microbatch import (
    batch_table_names,
    read_day,
    read_day_detailed,
    write_microbatch,
)
from llm_data_platform.streaming.producer import produce_synthetic
from llm_data_platform.streaming.s3_source import S3Cursor, S3Object, S3PrefixSource, plan_poll

STREAM = "conversations"


@pytest.fixture(autouse=True)
def time_bound():
    def expired(signum, frame):
        raise TimeoutError("S3 streaming test exceeded its 120 s bound")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def endpoint(moto_endpoint):
    return moto_endpoint


@pytest.fixture
def bucket(endpoint, request):
    name = "in-" + request.node.name.replace("_", "-")[:40].strip("-").lower()
    client(endpoint).create_bucket(Bucket=name)
    return name


def client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def source(endpoint: str, bucket: str, **kw) -> S3PrefixSource:
    return S3PrefixSource(bucket, "firehose/chat/", STREAM, lambda: client(endpoint), **kw)


@pytest.fixture
def lake(tmp_path):
    return LakeResource(root=str(tmp_path / "lake"))


def line(i: int, day: int = 0, **over) -> bytes:
    ts = datetime(2026, 1, 5, 8, tzinfo=UTC) + timedelta(days=day, minutes=i)
    event = {
        "event_id": f"s{i:06d}",
        "type": "message",
        "conversation_id": f"c{i // 3}",
        "turn": i % 3,
        "role": "user",
        "content": f"question {i}",
        "user_id": "u1",
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        **over,
    }
    return json.dumps(event).encode()


def put(endpoint, bucket, key, lines: list[bytes], gz: bool = False) -> str:
    body = b"\n".join(lines) + b"\n"
    if gz:
        body = gzip.compress(body)
    return client(endpoint).put_object(Bucket=bucket, Key=key, Body=body)["ETag"]


def all_events(lake) -> tuple[int, list[str]]:
    events_table, quarantine_table = batch_table_names(STREAM)
    days = set(lake.list_partitions_any("raw", events_table, "dt"))
    received, ids = 0, []
    for day in sorted(days):
        result = read_day_detailed(lake, STREAM, day)
        received += result.received_rows
        ids += result.rows["event_id"].to_pylist()
    return received, ids


def test_burst_drained_over_several_calls_nothing_missed_or_repeated(endpoint, bucket, lake):
    src = source(endpoint, bucket, max_objects=60)
    n_objects, per_object = 300, 3
    for o in range(n_objects):
        lines = [line(o * per_object + j, day=o % 2) for j in range(per_object)]
        put(endpoint, bucket, f"firehose/chat/2026/01/05/{o:05d}.jsonl", lines, gz=o % 3 == 0)

    cursor: str | None = None
    ingested: list[str] = []
    backlogs, per_call = [], []
    for step in range(20):
        results, new_cursor, backlog = src.drain(lake, cursor)
        ingested += [r.source for r in results]
        backlogs.append(backlog)
        per_call.append(len(results))
        cursor = new_cursor.dump()  # saved only after the objects are written
        if step == 1:  # more objects arrive while the burst is being drained
            for o in range(n_objects, n_objects + 20):
                lines = [line(o * per_object + j) for j in range(per_object)]
                put(endpoint, bucket, f"firehose/chat/late/{o:05d}.jsonl", lines)
        if not results and backlog == 0:
            break
    total = n_objects + 20
    assert len(ingested) == total and len(set(ingested)) == total  # none missed, none twice
    assert max(per_call) == 60 and len([n for n in per_call if n]) >= 6  # bounded calls
    assert ingested[:300] == sorted(ingested[:300])  # the burst in (LastModified, key) order
    assert backlogs[0] == n_objects - 60 and backlogs[-1] == 0
    assert len(S3Cursor.parse(cursor).taken) <= total  # bounded by the overlap window
    received, ids = all_events(lake)
    assert received == len(ids) == len(set(ids)) == total * per_object


def test_order_and_ties_on_last_modified(endpoint, bucket):
    """Objects sharing a LastModified second are taken in key order across calls."""
    listing = [S3Object(100.0, f"k{i:02d}", f"e{i}", 1) for i in range(10)] + [
        S3Object(99.0, "early", "e", 1)
    ]
    cursor, taken = S3Cursor(), []
    for _ in range(5):
        plan = plan_poll(listing, cursor, 3)
        taken += [o.key for o in plan.objects]
        cursor = S3Cursor.parse(plan.cursor.dump())
    assert taken == ["early"] + [f"k{i:02d}" for i in range(10)]


def test_replay_is_the_same_file_and_a_reupload_is_a_new_batch(endpoint, bucket, lake):
    src = source(endpoint, bucket)
    key = "firehose/chat/a.jsonl"
    etag = put(endpoint, bucket, key, [line(1), line(2)])
    first = src.ingest_object(key, etag.strip('"'), lake)
    before = {f: Path(f).read_bytes() for f in first.files}
    again = src.ingest_object(key, etag.strip('"'), lake)
    assert first.identity == again.identity and first.files == again.files
    assert {f: Path(f).read_bytes() for f in again.files} == before  # same files, same bytes

    # a re-upload with new content: new ETag, new batch; the repeated event is kept once
    poll = src.poll(S3Cursor(watermark=0).dump())
    cursor = poll.cursor
    put(endpoint, bucket, key, [line(2), line(3)])
    poll = src.poll(cursor)
    assert [o.key for o in poll.objects] == [key]
    second = src.ingest_object(poll.objects[0].key, poll.objects[0].etag, lake)
    assert second.identity != first.identity
    rows, _ = read_day(lake, STREAM, "2026-01-05")
    assert sorted(rows["event_id"].to_pylist()) == ["s000001", "s000002", "s000003"]


def test_object_overwritten_between_listing_and_download(endpoint, bucket, lake):
    src = source(endpoint, bucket)
    key = "firehose/chat/b.jsonl"
    put(endpoint, bucket, key, [line(10)])
    plan = src.poll(None)
    put(endpoint, bucket, key, [line(11)])  # a new version lands before the download
    assert src.ingest_object(plan.objects[0].key, plan.objects[0].etag, lake) is None
    nxt = src.poll(plan.cursor)
    assert len(nxt.objects) == 1 and nxt.objects[0].etag != plan.objects[0].etag
    result = src.ingest_object(nxt.objects[0].key, nxt.objects[0].etag, lake)
    assert result.rows == 1


def test_malformed_lines_and_objects_are_quarantined(endpoint, bucket, lake):
    src = source(endpoint, bucket)
    lines = [
        line(20),
        b'{"event_id": "bad", ',
        line(21, turn="x"),
        b'{"event_id": "\xff\xfe"}',
        b"   ",  # blank lines are not events
        line(22, content="y" * 1_100_000),
    ]
    put(endpoint, bucket, "firehose/chat/mixed.jsonl.gz", lines, gz=True)
    client(endpoint).put_object(
        Bucket=bucket,
        Key="firehose/chat/broken.jsonl.gz",
        Body=b"\x1f\x8b\x08" + bytes(7) + b"\xff" * 64,  # gzip header, then no deflate
    )
    results, _, _ = src.drain(lake, None)
    by_source = {r.source.rsplit("/", 1)[1]: r for r in results}
    mixed, broken = by_source["mixed.jsonl.gz"], by_source["broken.jsonl.gz"]
    assert (mixed.rows, mixed.quarantined) == (1, 4)
    families = sorted(mixed.reasons)
    expected = ["field 'turn'", "invalid JSON", "line of ", "not valid UTF-8"]
    assert [f for f, e in zip(families, expected, strict=True) if f.startswith(e)] == families
    assert (broken.rows, broken.quarantined) == (0, 1)
    assert broken.reasons and next(iter(broken.reasons)).startswith("corrupt gzip")
    quarantine = []
    for day in lake.list_partitions_any("raw", batch_table_names(STREAM)[1], "dt"):
        quarantine += read_day(lake, STREAM, day)[1].to_pylist()
    assert len(quarantine) == 5
    mixed_lines = {
        q["source_line"] for q in quarantine if q["source_file"].endswith("mixed.jsonl.gz")
    }
    assert mixed_lines == {2, 3, 4, 6}  # pointers to the original lines


def test_micro_batches_in_an_s3_lake(endpoint, bucket):
    from dagster_aws.s3 import S3Resource

    client(endpoint).create_bucket(Bucket="lake-streaming")
    lake = LakeResource(
        root="s3://lake-streaming/platform",
        s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"),
    )
    arrived = datetime(2026, 1, 6, 1, tzinfo=UTC)
    lines = [(i + 1, line(i, day=i % 2)) for i in range(10)] + [(11, b"nope")]
    once = write_microbatch(lake, STREAM, "s3-test-batch", lines, "s3://x/y", arrived)
    twice = write_microbatch(lake, STREAM, "s3-test-batch", lines, "s3://x/y", arrived)
    assert once.files == twice.files and len(once.files) == 3
    rows5, _ = read_day(lake, STREAM, "2026-01-05")
    rows6, quarantine6 = read_day(lake, STREAM, "2026-01-06")
    assert rows5.num_rows + rows6.num_rows == 10
    assert quarantine6.num_rows == 1  # no timestamp: the arrival day


def test_synthetic_producer_into_s3_and_landing(endpoint, bucket, lake, tmp_path):
    sent = produce_synthetic(
        f"s3://{bucket}/firehose/chat",
        rate=300,
        duration=1.0,
        endpoint_url=endpoint,
        batch_seconds=0.25,
        compress=True,
    )
    assert sent.kind == "s3" and sent.events == 300 and sent.units >= 3
    results, _, backlog = source(endpoint, bucket).drain(lake, None)
    assert backlog == 0 and sum(r.rows for r in results) == 300

    from llm_data_platform.resources.landing import LandingFolderResource

    landing = tmp_path / "landing"
    local = produce_synthetic(str(landing), rate=200, duration=0.5, batch_seconds=0.25)
    folder = LandingFolderResource(path=str(landing))
    files = folder.list_files(STREAM)
    assert local.kind == "landing" and len(files) == local.units
    lines = sum(1 for f in files for _ in folder.read_lines(STREAM, f))
    assert lines == local.events == 100


def test_documents_stream_from_s3(endpoint, bucket, lake):
    src = S3PrefixSource(bucket, "kb/", "documents", lambda: client(endpoint))
    docs = [
        {
            "event_id": "d1",
            "doc_id": "kb/faq",
            "op": "upsert",
            "format": "markdown",
            "title": "FAQ",
            "content": "# FAQ\n\nHow do I reverse a list?",
            "updated_at": "2026-01-05T08:00:00Z",
        },
        {
            "event_id": "d2",
            "doc_id": "kb/old",
            "op": "delete",
            "updated_at": "2026-01-06T08:00:00Z",
        },
        {"event_id": "d3", "doc_id": "kb/x", "op": "upsert", "format": "pdf", "content": "?"},
    ]
    put(endpoint, bucket, "kb/2026/01/06/docs.jsonl", [json.dumps(d).encode() for d in docs])
    results, _, _ = src.drain(lake, None)
    assert [(r.rows, r.quarantined) for r in results] == [(2, 1)]
    day5, _ = read_day(lake, "documents", "2026-01-05")
    day6, _ = read_day(lake, "documents", "2026-01-06")
    assert day5["doc_id"].to_pylist() == ["kb/faq"] and day5["version"][0].as_py()
    assert day6.to_pylist()[0]["op"] == "delete"
