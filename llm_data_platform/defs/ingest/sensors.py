"""Landing sensors: list what is new, ask for a staging run; staged days become raw runs.

A landing tick only lists the folder (a stat per file, nothing opened) and requests one
staging run naming the new file versions. Cursor contract (no file missed, none run twice):
a watermark on the time files landed, an overlap window below it inside which identities
already taken are remembered, at most ``max_files`` per tick in (landed, key) order, and run
keys built from the file versions (Dagster never launches a run key twice).

When a staging run has materialized the micro-batches, its metadata names the event days it
touched; ``raw_after_staging`` turns each into a run of that day's ingest job.

A knowledge-base sync (``ldp ingest-docs``) names its landing file with the latest day of its
events (``…-day-YYYY-MM-DD.jsonl``): for such a file the documents sensor asks for ONE run that
stages it and ingests that day (``sync_documents_job``); the after-staging sensor then finds
that day compacted since the staging and adds runs only for the file's other days, if any.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg

from llm_data_platform.defs.ingest.jobs import STAGE_JOBS, ingest_job_name, sync_job_name
from llm_data_platform.defs.ingest.staging import StageConfig, batch_asset_keys, staged_days
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.streaming.cursor import WatermarkCursor, take_new
from llm_data_platform.streaming.landing_source import LandingFile

if TYPE_CHECKING:  # what define_asset_job returns; not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

RAW_ASSETS = {"conversations": "raw_conversations", "documents": "raw_documents"}
# The landing folder uses the arrival cursor of every source (streaming/cursor.py).
LandingCursor = WatermarkCursor


@dataclass(frozen=True)
class TickPlan:
    files: list[LandingFile]  # to stage now, in order
    cursor: LandingCursor  # to save with the run request
    backlog: int  # new files left for later ticks


def plan_tick(files: list[LandingFile], cursor: LandingCursor, max_files: int) -> TickPlan:
    """Pure planning step of a tick, unit-testable without Dagster's sensor machinery."""
    take = take_new(
        files, cursor, max_files, arrived=lambda f: f.landed, identity=lambda f: f.identity
    )
    return TickPlan(take.items, take.cursor, take.backlog)


def digest(identities: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(identities)).encode()).hexdigest()[:20]


def staging_request(stream: str, run_key: str, config: StageConfig, tags: dict) -> dg.RunRequest:
    """A run of ``stage_<stream>_job`` with this staging config (every source's sensor)."""
    return dg.RunRequest(
        run_key=run_key,
        run_config=dg.RunConfig(ops={f"stage_{stream}": config}),
        tags={"ldp/stream": stream, **tags},
    )


def stage_request(stream: str, files: list[LandingFile]) -> dg.RunRequest:
    """The staging run of these file versions (its key: their identities)."""
    return staging_request(
        stream,
        f"stage:{stream}:{digest([f.identity for f in files])}",
        StageConfig(files=[f.key for f in files]),
        {"ldp/files": str(len(files))},
    )


NAMED_DAY = re.compile(r"-day-(\d{4}-\d{2}-\d{2})\.jsonl$")


def named_day(files: list[LandingFile], partitions: Partitions) -> str | None:
    """The day the newest of ``files`` names (a knowledge-base sync's latest event day), when
    it is a partition; else None (the days are known once the files are parsed)."""
    found = NAMED_DAY.search(max(files, key=lambda f: (f.landed, f.key)).key)
    if found is None:
        return None
    try:
        day = date.fromisoformat(found.group(1))
    except ValueError:
        return None
    first, last = partitions.bounds()
    return day.isoformat() if first <= day <= last else None


def for_job(request: dg.RunRequest, job_name: str, day: str | None) -> dg.RunRequest:
    """The staging request as a run of ``job_name`` (for ``day``): same key, same config."""
    return dg.RunRequest(
        run_key=request.run_key,
        job_name=job_name,
        partition_key=day,
        run_config=request.run_config,
        tags=request.tags,
    )


def landing_sensor(
    stream: str,
    max_files: int,
    interval_seconds: int,
    sync: tuple[UnresolvedAssetJobDefinition, Partitions] | None = None,
) -> dg.SensorDefinition:
    """``sync``: the job that stages and ingests a day in one run, and the partitions its
    day must be in (documents); without it every request is a staging run."""

    @dg.sensor(
        name=f"landing_{stream}_sensor",
        jobs=[STAGE_JOBS[stream]] + ([sync[0]] if sync else []),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"New files in the landing folder's {stream}/ → a staging run.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, landing: LandingFolderResource, lake: LakeResource
    ):
        plan = plan_tick(landing.list_files(stream), LandingCursor.parse(context.cursor), max_files)
        # versions staged already (by `ldp demo`, a catch-up run) need no run
        files = [f for f in plan.files if not landing.is_staged(lake, stream, f)]
        if not files:
            if plan.files:
                return dg.SensorResult(
                    skip_reason="New files are staged already.", cursor=plan.cursor.dump()
                )
            return dg.SkipReason(f"No new files in {landing.stream_dir(stream)}.")
        plan = TickPlan(files, plan.cursor, plan.backlog)
        request = stage_request(stream, plan.files)
        day = named_day(plan.files, sync[1]) if sync else None
        if sync:  # a sensor of two jobs names the job of each request
            request = for_job(request, sync[0].name if day else STAGE_JOBS[stream].name, day)
        context.log.info(
            f"{len(plan.files)} new {stream} files → one "
            f"{'staging run' if day is None else f'run staging them and ingesting {day}'}; "
            f"{plan.backlog} left for the next ticks"
        )
        return dg.SensorResult(run_requests=[request], cursor=plan.cursor.dump())

    return _sensor


STAGINGS_PER_TICK = 50


def raw_after_staging(stream: str) -> dg.SensorDefinition:
    """Every staging run → runs of the event days it touched. Each staging materialization
    after the cursor is read, in order (an asset sensor would read only the newest one of a
    tick, and a staging run finishing beside another would lose its days)."""
    events_key, _ = batch_asset_keys(stream)

    @dg.sensor(
        name=f"raw_{stream}_after_staging_sensor",
        job_name=ingest_job_name(stream),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
        description=f"Each staging of {stream} → runs of the event days it touched.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        after = int(context.cursor) if context.cursor else None
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=events_key, after_storage_id=after),
            limit=STAGINGS_PER_TICK,
            ascending=True,
        ).records
        if not records:
            return dg.SkipReason(f"No staging of {stream} since the last tick.")
        latest: dict[str, dg.EventLogEntry] = {}  # day -> the last staging that touched it
        for record in records:
            for day in staged_days(record.event_log_entry.asset_materialization):
                latest[day] = record.event_log_entry
        stale = {
            d: e
            for d, e in latest.items()
            if not _ingested_by_its_run(context, stream, d, e)
            and not _compacted_since(context, stream, d, e)
        }
        requests = [
            dg.RunRequest(
                run_key=f"raw:{stream}:{day}:{staging.run_id}",
                partition_key=day,
                tags={"ldp/stream": stream, "ldp/staging_run": staging.run_id},
            )
            for day, staging in sorted(stale.items())
        ]
        cursor = str(records[-1].storage_id)
        if not requests:
            return dg.SensorResult(
                skip_reason="Those stagings touched no day, or every day was compacted since.",
                cursor=cursor,
            )
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return _sensor


def _ingested_by_its_run(
    context: dg.SensorEvaluationContext, stream: str, day: str, staging: dg.EventLogEntry
) -> bool:
    """Is the staging's own run ingesting ``day`` (a sync run of that day)? It may still be
    running: its raw day is not compacted yet, and a run of its own would only redo it."""
    run = context.instance.get_run_by_id(staging.run_id)
    return (
        run is not None
        and run.job_name == sync_job_name(stream)
        and run.tags.get("dagster/partition") == day
    )


def _compacted_since(
    context: dg.SensorEvaluationContext, stream: str, day: str, staging: dg.EventLogEntry
) -> bool:
    """Was raw ``day`` materialized after this staging (e.g. by ``ldp demo``)? Then a run
    would redo work already done."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(RAW_ASSETS[stream]), asset_partitions=[day]),
        limit=1,
    ).records
    return bool(records) and records[0].timestamp > staging.timestamp


def landing_sensors(
    max_files: int,
    interval_seconds: int,
    documents_interval_seconds: int,
    sync_documents: tuple[UnresolvedAssetJobDefinition, Partitions] | None = None,
) -> list[dg.SensorDefinition]:
    """Documents tick more often: an edited page waits for the tick on its way to users, and
    a knowledge-base folder is small to list."""
    return [
        landing_sensor("conversations", max_files, interval_seconds),
        raw_after_staging("conversations"),
        landing_sensor("documents", max_files, documents_interval_seconds, sync_documents),
        raw_after_staging("documents"),
    ]
