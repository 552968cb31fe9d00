"""Staging: each arrival parsed once into micro-batches, in a run — for every source.

``stage_conversations`` / ``stage_documents`` materialize the micro-batch tables of a stream
(``conversations_batches`` and its quarantine, …). Sensors only look — the landing folder's
listing, Kafka's offsets, the S3 prefix's listing — and request a run; reading, parsing and
writing happen here, on a pool (one staging step per stream at a time), visible in the UI
with their counts. Run with no files named, a landing run stages every file whose current
version is not staged yet (a catch-up after an outage, or a first run).

A bad file — corrupt or truncated gzip, a bomb, a huge line, undecodable bytes — becomes
quarantine rows naming the file and the reason; it never stops the other files.
"""

import time
from collections.abc import Callable

import dagster as dg
import pyarrow as pa

from llm_data_platform import schemas
from llm_data_platform.defs.ingest.stage_sources import (
    Staged,
    stage_kafka,
    stage_kinesis,
    stage_landing,
    stage_s3,
)
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.resources.stream_sources import StreamSourcesResource
from llm_data_platform.streaming.microbatch import batch_table_names

STREAMS = ("conversations", "documents")


class StageConfig(dg.Config):
    """What to stage. ``landing``: the files named (keys under the stream folder), or every
    file whose current version is not staged yet; ``kafka``: the topic's messages up to its
    watermarks at the start of the run; ``kinesis``: every shard's records after its
    checkpoint; ``s3``: the object versions named (``etag key``)."""

    source: str = "landing"
    files: list[str] = []
    objects: list[str] = []


def batch_asset_keys(stream: str) -> tuple[dg.AssetKey, dg.AssetKey]:
    """(micro-batch events, micro-batch quarantine) asset keys of a stream."""
    events, quarantine = batch_table_names(stream)
    return dg.AssetKey(events), dg.AssetKey(quarantine)


def staged_days(materialization: dg.AssetMaterialization | None) -> list[str]:
    """The event days a staging materialization touched (its ``days`` metadata); what
    decides which days are ingested after it."""
    entry = materialization.metadata.get("days") if materialization is not None else None
    return list(entry.value) if entry is not None else []


def _metadata(stream: str, staged: Staged, seconds: float) -> tuple[dict, dict]:
    events = {
        **{f"units_{k}": v for k, v in sorted(staged.units.items())},
        "lines_received": staged.received,
        "events_staged": staged.kept,
        "lines_quarantined": staged.quarantined,
        "forgotten_dropped": staged.forgotten,
        "late_events": staged.late_events,
        "days": dg.MetadataValue.json(sorted(staged.days)),
        "bytes_read": staged.bytes_read,
        "bytes_written": staged.bytes_written,
        "stage_seconds": round(seconds, 3),
    }
    quarantine: dict[str, object] = {
        "lines_quarantined": staged.quarantined,
        "quarantine_reasons": dict(staged.reasons),
    }
    if staged.sample:
        table = pa.Table.from_pylist(staged.sample, schema=schemas.QUARANTINE)
        quarantine["preview"] = dg.MetadataValue.md(preview_markdown(table))
    if staged.received != staged.kept + staged.quarantined + staged.forgotten:
        raise dg.Failure(
            f"{stream}: {staged.received} lines in, {staged.kept} events + "
            f"{staged.quarantined} quarantined + {staged.forgotten} forgotten out"
        )
    return events, quarantine


def staging_asset(stream: str, partitions: Partitions) -> dg.AssetsDefinition:
    """Staging is not partitioned itself; events outside the partitions are quarantined."""
    events_key, quarantine_key = batch_asset_keys(stream)

    @dg.multi_asset(
        name=f"stage_{stream}",
        specs=[
            dg.AssetSpec(
                events_key,
                group_name="ingest",
                kinds={"parquet"},
                description=f"Micro-batches of the {stream} stream, one per arrival "
                "(landing file version, Kafka offset range, Kinesis sequence range, S3 object "
                "version), by event day.",
                metadata={"lake_zone": "raw"},
            ),
            dg.AssetSpec(
                quarantine_key,
                group_name="ingest",
                kinds={"parquet"},
                description=f"Lines and files of the {stream} stream that could not be read, "
                "with the reason and the original bytes.",
                metadata={"lake_zone": "raw"},
            ),
        ],
        pool=f"stage_{stream}",
        # a failed read of the lake or a source is retried in the run: a run that also ingests
        # (sync_documents_job) is not retried whole for it, and the sensor has moved on
        retry_policy=dg.RetryPolicy(max_retries=2, delay=2),
    )
    def _stage(
        context: dg.AssetExecutionContext,
        config: StageConfig,
        landing: LandingFolderResource,
        sources: StreamSourcesResource,
        lake: LakeResource,
    ):
        started = time.perf_counter()
        acknowledge: Callable[[], object] | None = None
        if config.source == "landing":
            keys = config.files or [f.key for f in landing.list_files(stream)]
            staged = stage_landing(context, stream, keys, landing, lake, partitions.bounds())
        elif config.source == "kafka":
            staged, acknowledge = stage_kafka(context, stream, sources, lake, partitions.bounds())
        elif config.source == "kinesis":
            staged, acknowledge = stage_kinesis(context, stream, sources, lake, partitions.bounds())
        elif config.source == "s3":
            staged = stage_s3(context, stream, config.objects, sources, lake, partitions.bounds())
        else:
            raise dg.Failure(
                f"Unknown source {config.source!r}: use landing, kafka, kinesis or s3."
            )
        events, quarantine = _metadata(stream, staged, time.perf_counter() - started)
        context.log.info(
            f"{stream} from {config.source}: {dict(staged.units)}; days {sorted(staged.days)}"
        )
        yield dg.MaterializeResult(asset_key=events_key, metadata=events)
        yield dg.MaterializeResult(asset_key=quarantine_key, metadata=quarantine)
        if acknowledge is not None:  # the days are on record: forget the reported batches
            acknowledge()

    return _stage


def staging_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    return [staging_asset(stream, partitions) for stream in STREAMS]
