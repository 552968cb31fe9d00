"""Sensors of the streaming sources: each tick stages what arrived as exactly-once
micro-batches in the raw zone, then requests runs for exactly the event days they hold.

Kafka: offsets are committed only after the micro-batch files are durable; committed batches
stay in a ledger until their runs were requested (the cursor names them, the next tick
acknowledges them), so even a crash between commit and request loses no trigger.
S3: objects in (last_modified, key) order with an overlap window; the cursor advances only
after the objects' micro-batches are written. Run keys are built from batch identities, and
Dagster never launches a run key twice.
"""

import hashlib
import json
from collections import defaultdict

import dagster as dg

from llm_data_platform.defs.ingest.jobs import INGEST_JOBS
from llm_data_platform.defs.partitions import daily_partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.stream_sources import StreamSourcesResource
from llm_data_platform.streaming.kafka_source import (
    acknowledge,
    describe,
    ingest_once,
    lag,
    pending_days,
)

JOBS = INGEST_JOBS
STREAM_SENSOR_INTERVAL_SECONDS = 10


def _digest(identities: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(identities)).encode()).hexdigest()[:20]


def _requests(context, source: str, stream: str, days: dict[str, list[str]]) -> list[dg.RunRequest]:
    """Runs for the days that exist as partitions; others are logged, never dropped silently
    (their batches stay in the raw zone and are compacted once the partition exists)."""
    valid = set(daily_partitions.get_partition_keys())
    outside = sorted(d for d in days if d not in valid)
    if outside:
        context.log.warning(f"{source}: events dated {outside} have no daily partition yet")
    return [
        dg.RunRequest(
            run_key=f"{source}:{stream}:{day}:{_digest(ids)}",
            partition_key=day,
            tags={"ldp/stream": stream, "ldp/source": source, "ldp/batches": str(len(ids))},
        )
        for day, ids in sorted(days.items())
        if day in valid
    ]


def kafka_sensor(stream: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"kafka_{stream}_sensor",
        job=JOBS[stream],
        minimum_interval_seconds=STREAM_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Kafka topic of the {stream} stream → raw micro-batches → day runs.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, sources: StreamSourcesResource, lake: LakeResource
    ):
        config = sources.kafka_config(stream)
        if config is None:
            return dg.SkipReason("Kafka is not configured (LDP_KAFKA_BOOTSTRAP).")
        previous = json.loads(context.cursor) if context.cursor else {}
        acknowledge(lake, config, set(previous.get("requested", [])))
        behind = sum(lag(config).values())
        if behind:
            report = ingest_once(config, lake)
            context.log.info(describe(report))
        days = pending_days(lake, config)
        if not days:
            return dg.SkipReason(f"{config.topic}: no lag, nothing pending.")
        requested = sorted({i for ids in days.values() for i in ids})
        return dg.SensorResult(
            run_requests=_requests(context, f"kafka:{config.topic}", stream, days),
            cursor=json.dumps({"requested": requested, "lag_seen": behind}),
        )

    return _sensor


def s3_sensor(stream: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"s3_{stream}_sensor",
        job=JOBS[stream],
        minimum_interval_seconds=STREAM_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"S3 prefix of the {stream} stream → raw micro-batches → day runs.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, sources: StreamSourcesResource, lake: LakeResource
    ):
        source = sources.s3_source(stream)
        if source is None:
            return dg.SkipReason("S3 source is not configured (LDP_S3_SOURCE_URI).")
        results, cursor, backlog = source.drain(lake, context.cursor, sources.max_objects)
        if not results:
            return dg.SkipReason(f"{source.url}: no new objects.")
        days: dict[str, list[str]] = defaultdict(list)
        for result in results:
            for day in result.days:
                days[day].append(result.identity)
        context.log.info(f"{len(results)} objects staged, {backlog} left for the next ticks")
        return dg.SensorResult(
            run_requests=_requests(context, f"s3:{source.url}", stream, dict(days)),
            cursor=cursor.dump(),
        )

    return _sensor


def stream_sensors(kafka: bool, s3: bool) -> list[dg.SensorDefinition]:
    """Only the configured sources get sensors, so the UI lists what is really switched on."""
    sensors = []
    for stream in JOBS:
        if kafka:
            sensors.append(kafka_sensor(stream))
        if s3:
            sensors.append(s3_sensor(stream))
    return sensors
