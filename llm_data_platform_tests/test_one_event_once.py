"""One event, four arrivals, three sources: it is in ``raw_conversations`` once.

The same 100 events arrive four times: in two landing files (one plain, one gzip, same lines),
as Kafka messages (librdkafka's mock cluster on 127.0.0.1) and as an S3 object (moto's server
on 127.0.0.1). Each source goes through its real chain in Dagster: its sensor ticks and asks
for a staging run, the staging run (``stage_conversations``) writes the micro-batches and names
the event days in its materialization metadata, and the raw multi-asset is materialized for
each of those days. The day holds each event once; its metadata counts 400 received, 300
replays dropped; the first arrival wins — the landing file with the earliest mtime, although
its name sorts after the other landing file's and it is staged last.

Events dated outside the partitions (2019, and 2099 for Kafka) are quarantined under the
nearest partition day with the out-of-range reason, by every source alike (Kafka used to drop
them silently).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from confluent_kafka import Producer

from llm_data_platform.definitions import build_resources
from llm_data_platform.defs.ingest.sensors import landing_sensor
from llm_data_platform.defs.ingest.stream_sensors import kafka_sensor, s3_sensor
from llm_data_platform.defs.partitions import build_partitions
from llm_data_platform.resources.stream_sources import StreamSourcesResource
from llm_data_platform_tests.conftest import graph_for, run_staging, settings_for, time_bound

QUIET = logging.getLogger("test.one_event_once")
QUIET.setLevel(logging.CRITICAL)
STREAM = "conversations"
DAY = "2026-01-06"  # the events' day: not the first partition, which gets the 2019 quarantine
OUT_OF_RANGE = "event day outside the partitioned range"
PLAIN_KEY, GZIP_KEY = "in/a-plain.jsonl", "in/b-gzip.jsonl.gz"
GZIP_ARRIVAL = datetime(2026, 1, 6, 11, tzinfo=UTC)  # the earliest arrival of all
PLAIN_ARRIVAL = datetime(2026, 1, 6, 12, tzinfo=UTC)  # Kafka and S3 arrive now (later)


@pytest.fixture(autouse=True)
def bounded():
    with time_bound(150, "one-event-once test"):
        yield


def _event(event_id: str, when: datetime, i: int = 0) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "type": "message",
            "conversation_id": f"c{i // 2:04d}",
            "turn": i % 2,
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Question {i}: what does zip(strict=True) raise?",
            "user_id": f"u{i % 3}",
            "timestamp": when.isoformat().replace("+00:00", "Z"),
        }
    ).encode()


def _events() -> list[bytes]:
    start = datetime(2026, 1, 6, 8, tzinfo=UTC)
    return [_event(f"ev{i:04d}", start + timedelta(seconds=i), i) for i in range(100)]


def _old(source: str, n: int) -> list[bytes]:
    """Events from 2019, before the first partition (2026-01-05)."""
    return [_event(f"old-{source}-{i}", datetime(2019, 3, 1, 10, tzinfo=UTC), i) for i in range(n)]


def _resources(tmp_path, sources: StreamSourcesResource) -> dict:
    resources = build_resources(settings_for({"LDP_HOME": str(tmp_path)}))
    return {**resources, "sources": sources}


def _tick(sensor, resources: dict, cursor: str | None = None):
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        return sensor(context)


def _stage(resources: dict, request: dg.RunRequest) -> dict:
    """The staging run a sensor asked for; the metadata of its ``conversations_batches``."""
    return run_staging(resources, request, STREAM)


def _raw(resources: dict, day: str) -> dict[str, dict]:
    """Materialize the raw day (events + quarantine); asset name → its metadata."""
    result = dg.materialize(
        graph_for(),
        selection=dg.AssetSelection.assets("raw_conversations", "raw_conversations_quarantine"),
        resources=resources,
        partition_key=day,
    )
    assert result.success, day
    out: dict[str, dict] = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        out.setdefault(m.asset_key.to_user_string(), {}).update(
            {k: v.value for k, v in m.metadata.items()}
        )
    return out


def test_same_events_from_landing_twice_kafka_and_s3_are_raw_once(
    bootstrap, moto_endpoint, tmp_path
):
    import boto3
    from dagster_aws.s3 import S3Resource

    topic = f"once-{uuid.uuid4().hex[:8]}"
    sources = StreamSourcesResource(
        kafka_bootstrap=bootstrap,
        kafka_topics=f"{STREAM}={topic}",
        kafka_group=f"ldp-{topic}",
        s3_source_uri="s3://arrivals/firehose",
        s3=S3Resource(endpoint_url=moto_endpoint, region_name="us-east-1"),
    )
    resources = _resources(tmp_path, sources)
    lake = resources["lake"]
    partitions = build_partitions(settings_for({}).partitions_start)
    first_day, last_day = (d.isoformat() for d in partitions.bounds())
    assert first_day == "2026-01-05" < DAY < last_day
    good = _events()
    expected_ids = sorted(json.loads(v)["event_id"] for v in good)

    # ---- the four arrivals ----------------------------------------------------------------
    # landing: the same lines twice, the gzip file landed first (by mtime)
    landing_lines = good + _old("landing", 2)
    folder = os.path.join(resources["landing"].path, STREAM, "in")
    os.makedirs(folder)
    body = b"".join(line + b"\n" for line in landing_lines)
    for key, data, when in (
        (PLAIN_KEY, body, PLAIN_ARRIVAL),
        (GZIP_KEY, gzip.compress(body), GZIP_ARRIVAL),
    ):
        path = os.path.join(resources["landing"].path, STREAM, *key.split("/"))
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (when.timestamp(), when.timestamp()))
    # Kafka: the same events, two from 2019 and one from 2099 (after the last partition)
    future = _event("new-kafka-0", datetime(2099, 6, 1, 10, tzinfo=UTC))
    kafka_values = good + _old("kafka", 2) + [future]
    producer = Producer({"bootstrap.servers": bootstrap, "logger": QUIET})
    for i, value in enumerate(kafka_values):
        producer.produce(topic, key=f"k{i % 7}".encode(), value=value)
    assert producer.flush(20) == 0
    # S3: the same events in one object, and one from 2019
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="arrivals")
    s3_lines = good + _old("s3", 1)
    client.put_object(
        Bucket="arrivals",
        Key=f"firehose/{STREAM}/part-000.jsonl",
        Body=b"".join(line + b"\n" for line in s3_lines),
    )

    # ---- each source's chain: sensor tick → staging run (landing, the first arrival, last) ---
    s3_tick = _tick(s3_sensor(STREAM), {"sources": sources})
    (s3_request,) = s3_tick.run_requests
    assert s3_request.run_config["ops"][f"stage_{STREAM}"]["config"]["source"] == "s3"
    s3_meta = _stage(resources, s3_request)

    kafka_tick = _tick(kafka_sensor(STREAM), {"sources": sources, "lake": lake})
    (kafka_request,) = kafka_tick.run_requests
    assert kafka_request.run_config["ops"][f"stage_{STREAM}"]["config"]["source"] == "kafka"
    kafka_meta = _stage(resources, kafka_request)

    landing = landing_sensor(STREAM, 200, 30)
    landing_tick = _tick(landing, {"landing": resources["landing"], "lake": lake})
    (landing_request,) = landing_tick.run_requests
    assert sorted(landing_request.run_config["ops"][f"stage_{STREAM}"]["config"]["files"]) == [
        PLAIN_KEY,
        GZIP_KEY,
    ]
    landing_meta = _stage(resources, landing_request)

    # each staging run counts its lines and names the days to rebuild, the clamped ones too
    for meta, received, quarantined, days in (
        (s3_meta, 101, 1, [first_day, DAY]),
        (kafka_meta, 103, 3, [first_day, DAY, last_day]),
        (landing_meta, 204, 4, [first_day, DAY]),
    ):
        assert (meta["lines_received"], meta["lines_quarantined"]) == (received, quarantined)
        assert meta["events_staged"] == received - quarantined
        assert meta["days"] == days
    # nothing new for any sensor now: no second run of the same arrivals
    assert isinstance(_tick(s3_sensor(STREAM), {"sources": sources}, s3_tick.cursor), dg.SkipReason)
    assert isinstance(
        _tick(kafka_sensor(STREAM), {"sources": sources, "lake": lake}, kafka_tick.cursor),
        dg.SkipReason,
    )
    assert isinstance(
        _tick(landing, {"landing": resources["landing"], "lake": lake}, landing_tick.cursor),
        dg.SkipReason,
    )

    # ---- the raw day: every event once, the first arrival kept --------------------------------
    meta = _raw(resources, DAY)
    raw_meta = meta["raw_conversations"]
    assert (raw_meta["received"], raw_meta["replays_dropped"]) == (400, 300)
    assert (raw_meta["kept"], raw_meta["quarantined"]) == (100, 0)
    # landing files count as their stream folder: the landing folder won, not Kafka nor S3
    assert raw_meta["events_per_source"] == {STREAM: 100}
    raw = lake.read_partition("raw", "raw_conversations", DAY)
    assert raw.num_rows == 100
    assert sorted(raw["event_id"].to_pylist()) == expected_ids  # 100 distinct
    # …and of the two landing files, the one that arrived first: the gzip one
    assert set(raw["source_file"].to_pylist()) == {f"{STREAM}/{GZIP_KEY}"}
    assert set(raw["arrived_at"].to_pylist()) == {GZIP_ARRIVAL}
    assert raw["source_line"].to_pylist() == list(range(1, 101))

    # ---- out of range: quarantined under the nearest partition day, by every source --------
    early = _raw(resources, first_day)
    assert early["raw_conversations"]["kept"] == 0
    assert early["raw_conversations"]["quarantined"] == 2 * 2 + 2 + 1
    assert early["raw_conversations_quarantine"]["quarantine_reasons"] == {OUT_OF_RANGE: 7}
    quarantine = lake.read_partition("raw", "raw_conversations_quarantine", first_day)
    rows = quarantine.to_pylist()
    assert all(r["reason"].startswith(f"{OUT_OF_RANGE}: 2019-03-01") for r in rows), rows
    by_source = Counter(
        "kafka" if r["source_file"].startswith(f"kafka://{topic}/") else r["source_file"]
        for r in rows
    )
    assert by_source == {
        "kafka": 2,
        f"{STREAM}/{PLAIN_KEY}": 2,
        f"{STREAM}/{GZIP_KEY}": 2,
        f"s3://arrivals/firehose/{STREAM}/part-000.jsonl": 1,
    }
    kafka_ids = {json.loads(r["record"])["event_id"] for r in rows if "kafka" in r["source_file"]}
    assert kafka_ids == {"old-kafka-0", "old-kafka-1"}  # the original message, kept

    late = _raw(resources, last_day)
    assert late["raw_conversations"]["quarantined"] == 1
    (row,) = lake.read_partition("raw", "raw_conversations_quarantine", last_day).to_pylist()
    assert row["reason"].startswith(f"{OUT_OF_RANGE}: 2099-06-01")
    assert row["source_file"].startswith(f"kafka://{topic}/")
    assert json.loads(row["record"])["event_id"] == "new-kafka-0"
