"""Streaming sources end to end through Dagster: sensor tick → micro-batches → day runs → raw.

Kafka runs against librdkafka's mock cluster and S3 against moto's server, both on 127.0.0.1;
the code under test is what a user points at real brokers and buckets.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from confluent_kafka import Producer

from llm_data_platform.definitions import build_resources
from llm_data_platform.defs.ingest.stream_sensors import kafka_sensor, s3_sensor
from llm_data_platform.resources.stream_sources import StreamSourcesResource
from llm_data_platform_tests.conftest import graph_for, run_staging, settings_for, time_bound

QUIET = logging.getLogger("test.streaming.e2e")
QUIET.setLevel(logging.CRITICAL)


@pytest.fixture(autouse=True)
def bounded():
    with time_bound(150, "streaming end-to-end test"):
        yield


def _event(i: int) -> dict:
    ts = datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(days=i % 3, seconds=i)
    return {
        "event_id": f"k{i:05d}",
        "type": "message",
        "conversation_id": f"c{i // 2:04d}",
        "turn": i % 2,
        "role": "user" if i % 2 == 0 else "assistant",
        "content": f"Question {i}: how do list comprehensions work in Python?",
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
    }


def _resources(tmp_path, sources: StreamSourcesResource) -> dict:
    resources = build_resources(settings_for({"LDP_HOME": str(tmp_path)}))
    return {**resources, "sources": sources}


def _materialize(resources: dict, days: list[str]) -> dg.ExecuteInProcessResult:
    """One run per requested day, as the sensor's run requests would launch them."""
    for day in days:
        result = dg.materialize(
            graph_for(),
            selection=dg.AssetSelection.assets(
                "raw_conversations",
                "raw_conversations_quarantine",
                "conversations_clean",
                "conversations_clean_dropped",
            ),
            resources=resources,
            partition_key=day,
        )
        assert result.success, day
    return result


def _tick(sensor, resources: dict, cursor: str | None):
    with dg.build_sensor_context(
        cursor=cursor, resources={"sources": resources["sources"], "lake": resources["lake"]}
    ) as context:
        return sensor(context)


def _raw_ids(resources: dict, days: list[str]) -> list[str]:
    table = resources["lake"].read_partitions("raw", "raw_conversations", keys=days)
    return table["event_id"].to_pylist()


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "logger": QUIET})
    for i, value in enumerate(values):
        producer.produce(topic, key=f"k{i % 5}".encode(), value=value)
    assert producer.flush(20) == 0


def _stage(resources: dict, request: dg.RunRequest, stream: str = "conversations") -> list[str]:
    """Run the staging run a sensor asked for; return the days its materialization names."""
    return list(run_staging(resources, request, stream)["days"])


def test_kafka_topic_to_raw_and_clean_exactly_once(bootstrap, tmp_path):
    topic = "e2e-conversations"
    sources = StreamSourcesResource(
        kafka_bootstrap=bootstrap, kafka_topics=f"conversations={topic}", kafka_group="e2e"
    )
    resources = _resources(tmp_path, sources)
    sensor = kafka_sensor("conversations")
    good = [json.dumps(_event(i)).encode() for i in range(300)]
    _produce(bootstrap, topic, good + [b"{not json", b'{"event_id": "x", "type": "message"}'])

    first = _tick(sensor, resources, None)
    (request,) = first.run_requests  # the tick only looked at offsets; the run reads
    assert request.run_config["ops"]["stage_conversations"]["config"]["source"] == "kafka"
    assert _tick(sensor, resources, first.cursor).run_requests[0].run_key == request.run_key
    days = sorted(_stage(resources, request))
    # the malformed messages carry no readable time: they belong to the day they arrived
    today = datetime.now(UTC).date().isoformat()
    assert days == ["2026-01-05", "2026-01-06", "2026-01-07", today]
    _materialize(resources, days)
    ids = _raw_ids(resources, days)
    assert sorted(ids) == sorted(f"k{i:05d}" for i in range(300))  # each event exactly once
    quarantine = resources["lake"].read_partitions("raw", "raw_conversations_quarantine")
    assert quarantine.num_rows == 2
    result = _materialize(resources, ["2026-01-06"])
    meta = next(
        m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
        if m.asset_key == dg.AssetKey("raw_conversations")
    )
    assert meta["events_per_source"].value == {f"kafka://{topic}": 100}

    # caught up and reported: the next tick finds nothing to do
    assert isinstance(_tick(sensor, resources, first.cursor), dg.SkipReason)

    # a replay of already-ingested events (a producer retry) under new offsets adds nothing
    _produce(bootstrap, topic, good[:50] + [json.dumps(_event(300)).encode()])
    (again,) = _tick(sensor, resources, first.cursor).run_requests
    assert again.run_key != request.run_key
    _materialize(resources, sorted(_stage(resources, again)))
    ids = _raw_ids(resources, days)
    assert len(ids) == len(set(ids)) == 301


def test_s3_prefix_to_raw_exactly_once(tmp_path, moto_endpoint):
    import boto3
    from dagster_aws.s3 import S3Resource

    endpoint = moto_endpoint
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="events")
    for n in range(6):
        body = "\n".join(json.dumps(_event(n * 10 + i)) for i in range(10)) + "\n"
        client.put_object(
            Bucket="events", Key=f"firehose/conversations/part-{n:03d}.jsonl", Body=body
        )
    sources = StreamSourcesResource(
        s3_source_uri="s3://events/firehose",
        s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"),
        max_objects=4,  # a burst is drained over several ticks
    )
    resources = _resources(tmp_path, sources)
    sensor = s3_sensor("conversations")
    first = _tick(sensor, resources, None)
    second = _tick(sensor, resources, first.cursor)
    assert isinstance(_tick(sensor, resources, second.cursor), dg.SkipReason)
    named = [
        r.run_config["ops"]["stage_conversations"]["config"]["objects"]
        for r in first.run_requests + second.run_requests
    ]
    assert [len(n) for n in named] == [4, 2]
    days = sorted(
        {d for r in first.run_requests + second.run_requests for d in _stage(resources, r)}
    )
    assert _materialize(resources, days).success
    assert sorted(_raw_ids(resources, days)) == sorted(f"k{i:05d}" for i in range(60))
    # the documents stream through the same source: a page and its later deletion
    docs = [
        {
            "event_id": "d1",
            "doc_id": "kb/lists",
            "op": "upsert",
            "format": "html",
            "title": "Lists",
            "content": "<html><body><h1>Lists</h1><p>Lists are mutable sequences "
            "that hold items in order; append adds one at the end.</p></body></html>",
            "updated_at": "2026-01-05T08:00:00Z",
        },
        {
            "event_id": "d2",
            "doc_id": "kb/old",
            "op": "delete",
            "updated_at": "2026-01-05T09:00:00Z",
        },
    ]
    client.put_object(
        Bucket="events",
        Key="firehose/documents/part-000.jsonl",
        Body="\n".join(json.dumps(d) for d in docs) + "\n",
    )
    (doc_request,) = _tick(s3_sensor("documents"), resources, None).run_requests
    assert _stage(resources, doc_request, "documents") == ["2026-01-05"]
    result = dg.materialize(
        graph_for(),
        selection=dg.AssetSelection.assets(
            "raw_documents",
            "raw_documents_quarantine",
            "documents_clean",
            "documents_clean_dropped",
        ),
        resources=resources,
        partition_key="2026-01-05",
    )
    assert result.success
    clean = resources["lake"].read_partition("clean", "documents_clean", "2026-01-05")
    rows = {r["doc_id"]: r for r in clean.to_pylist()}
    assert "mutable sequences" in rows["kb/lists"]["text"]
    assert rows["kb/old"]["is_deleted"] is True

    # the same tick replayed (a crash before its cursor was saved): the same run key, and
    # staging the same objects again changes nothing
    replay = _tick(sensor, resources, None)
    assert replay.run_requests[0].run_key == first.run_requests[0].run_key
    _stage(resources, replay.run_requests[0])
    assert _materialize(resources, days).success
    assert len(_raw_ids(resources, days)) == 60
