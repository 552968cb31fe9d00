"""Sensors: landed files become runs of exactly the day partitions their events belong to.

Cursor contract (no file missed, none run twice): a watermark on the time files landed, an
overlap window below it inside which file identities already taken are remembered, at most
``max_files`` files per tick in (landed, key) order, and run keys built from the identities
of the files that caused them (Dagster never launches a run key twice).
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass

import dagster as dg

from llm_data_platform.defs.ingest.assets import partitions_of
from llm_data_platform.defs.ingest.jobs import ingest_conversations_job, ingest_documents_job
from llm_data_platform.resources.landing import LandingFile, LandingFolderResource
from llm_data_platform.settings import load_settings
from llm_data_platform.streaming.cursor import WatermarkCursor, take_new

# The landing folder uses the arrival cursor of every source (streaming/cursor.py).
LandingCursor = WatermarkCursor


@dataclass(frozen=True)
class TickPlan:
    files: list[LandingFile]
    partitions: dict[str, list[str]]  # partition key -> identities of the files feeding it
    cursor: LandingCursor
    backlog: int  # new files left for later ticks


def plan_tick(files: list[LandingFile], cursor: LandingCursor, stream: str, max_files: int):
    """Pure planning step of a tick, unit-testable without Dagster's sensor machinery."""
    take = take_new(
        files, cursor, max_files, arrived=lambda f: f.landed, identity=lambda f: f.identity
    )
    partitions: dict[str, list[str]] = defaultdict(list)
    for file in take.items:
        for key in partitions_of(stream, file):
            partitions[key].append(file.identity)
    return TickPlan(take.items, dict(partitions), take.cursor, take.backlog)


def run_key(stream: str, partition: str, identities: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(identities)).encode()).hexdigest()[:20]
    return f"{stream}:{partition}:{digest}"


def landing_sensor(stream: str, job) -> dg.SensorDefinition:
    settings = load_settings()

    @dg.sensor(
        name=f"landing_{stream}_sensor",
        job=job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"New files in the landing folder's {stream}/ → runs of their event days.",
    )
    def _sensor(context: dg.SensorEvaluationContext, landing: LandingFolderResource):
        cursor = LandingCursor.parse(context.cursor)
        plan = plan_tick(landing.list_files(stream), cursor, stream, settings.sensor_max_files)
        requests = [
            dg.RunRequest(
                run_key=run_key(stream, partition, identities),
                partition_key=partition,
                tags={"ldp/stream": stream, "ldp/files": str(len(identities))},
            )
            for partition, identities in sorted(plan.partitions.items())
        ]
        if not plan.files:
            return dg.SkipReason(f"No new files in {landing.stream_dir(stream)}.")
        context.log.info(
            f"{len(plan.files)} new {stream} files → {len(requests)} partitions; "
            f"{plan.backlog} left for the next ticks"
        )
        return dg.SensorResult(run_requests=requests, cursor=plan.cursor.dump())

    return _sensor


landing_conversations_sensor = landing_sensor("conversations", ingest_conversations_job)
landing_documents_sensor = landing_sensor("documents", ingest_documents_job)


LANDING_SENSORS = [landing_conversations_sensor, landing_documents_sensor]
