"""Sensors of the streaming sources: they look and ask; staging runs do the reading.

Kafka: a tick reads the group's committed offsets and the high watermarks (metadata calls,
no message) and, when the group is behind or committed batches are still unreported,
requests a staging run named by that snapshot — while a run is on its way the snapshot does
not change, so no second run is asked for. The run consumes, commits after durable, and
reports the days (``stage_sources.stage_kafka``).

Kinesis: a tick reads each shard's checkpoint (in the lake) and the first record after it
(one GetRecords of one record per shard) and, when a shard has a record after its checkpoint
or checkpointed batches are still unreported, requests a staging run named by that snapshot.

S3: a tick lists the prefix and requests a staging run naming the new object versions
(cursor of (last_modified, key) with an overlap window, at most ``max_objects`` a tick).

Either way the staging run's materialization names the days it touched, and
``raw_<stream>_after_staging_sensor`` turns them into raw runs, as for the landing folder.
"""

import json

import dagster as dg

from llm_data_platform.defs.ingest.jobs import STAGE_JOBS
from llm_data_platform.defs.ingest.sensors import digest, staging_request
from llm_data_platform.defs.ingest.staging import StageConfig
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.stream_sources import StreamSourcesResource
from llm_data_platform.streaming import kinesis_source
from llm_data_platform.streaming.kafka_source import pending_days, positions
from llm_data_platform.streaming.s3_source import S3Cursor

STREAM_SENSOR_INTERVAL_SECONDS = 10


def kafka_sensor(stream: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"kafka_{stream}_sensor",
        job=STAGE_JOBS[stream],
        minimum_interval_seconds=STREAM_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Kafka topic of the {stream} stream behind → a staging run.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, sources: StreamSourcesResource, lake: LakeResource
    ):
        config = sources.kafka_config(stream)
        if config is None:
            return dg.SkipReason("Kafka is not configured (LDP_KAFKA_BOOTSTRAP).")
        snapshot = positions(config)
        behind = sum(high - max(committed, 0) for committed, high in snapshot.values())
        unreported = sorted({i for ids in pending_days(lake, config).values() for i in ids})
        if not behind and not unreported:
            return dg.SkipReason(f"{config.topic}: no lag, nothing unreported.")
        state = json.dumps({"positions": sorted(snapshot.items()), "unreported": unreported})
        key = f"stage:kafka:{config.topic}:{digest([state])}"
        tags = {"ldp/source": f"kafka:{config.topic}", "ldp/lag": str(behind)}
        return dg.SensorResult(
            run_requests=[staging_request(stream, key, StageConfig(source="kafka"), tags)],
            cursor=json.dumps({"lag_seen": behind}),
        )

    return _sensor


def kinesis_sensor(stream: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"kinesis_{stream}_sensor",
        job=STAGE_JOBS[stream],
        minimum_interval_seconds=STREAM_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Records after the {stream} Kinesis stream's checkpoints → a staging run.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, sources: StreamSourcesResource, lake: LakeResource
    ):
        config = sources.kinesis_config(stream)
        if config is None:
            return dg.SkipReason(f"Kinesis is not configured for {stream} (LDP_KINESIS_STREAMS).")
        snapshot = kinesis_source.positions(config, lake, sources.kinesis_client())
        behind = sorted(shard for shard, (_, after) in snapshot.items() if after is not None)
        pending = kinesis_source.pending_days(config, lake)
        unreported = sorted({i for ids in pending.values() for i in ids})
        if not behind and not unreported:
            return dg.SkipReason(f"{config.stream_name}: every shard checkpointed, all reported.")
        state = json.dumps({"positions": sorted(snapshot.items()), "unreported": unreported})
        key = f"stage:kinesis:{config.stream_name}:{digest([state])}"
        tags = {
            "ldp/source": f"kinesis:{config.stream_name}",
            "ldp/shards_behind": str(len(behind)),
        }
        return dg.SensorResult(
            run_requests=[staging_request(stream, key, StageConfig(source="kinesis"), tags)],
            cursor=json.dumps({"shards_behind": behind}),
        )

    return _sensor


def s3_sensor(stream: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"s3_{stream}_sensor",
        job=STAGE_JOBS[stream],
        minimum_interval_seconds=STREAM_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"New objects under the S3 prefix of the {stream} stream → a staging run.",
    )
    def _sensor(context: dg.SensorEvaluationContext, sources: StreamSourcesResource):
        source = sources.s3_source(stream)
        if source is None:
            return dg.SkipReason("S3 source is not configured (LDP_S3_SOURCE_URI).")
        plan = source.poll(S3Cursor.parse(context.cursor), sources.max_objects)
        if not plan.objects:
            return dg.SkipReason(f"{source.url}: no new objects.")
        objects = [f"{o.etag} {o.key}" for o in plan.objects]
        key = f"stage:s3:{source.url}:{digest([o.identity for o in plan.objects])}"
        config = StageConfig(source="s3", objects=objects)
        tags = {"ldp/source": f"s3:{source.url}", "ldp/objects": str(len(objects))}
        context.log.info(f"{len(objects)} new objects → a staging run; {plan.backlog} left")
        return dg.SensorResult(
            run_requests=[staging_request(stream, key, config, tags)], cursor=plan.cursor.dump()
        )

    return _sensor


def stream_sensors(kafka: bool, s3: bool, kinesis: bool = False) -> list[dg.SensorDefinition]:
    """Only the configured sources get sensors, so the UI lists what is really switched on."""
    sensors = []
    for stream in STAGE_JOBS:
        if kafka:
            sensors.append(kafka_sensor(stream))
        if kinesis:
            sensors.append(kinesis_sensor(stream))
        if s3:
            sensors.append(s3_sensor(stream))
    return sensors
