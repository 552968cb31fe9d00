"""Staging: each landing file version parsed once into micro-batches, in a run.

``stage_conversations`` / ``stage_documents`` materialize the micro-batch tables of a stream
(``conversations_batches`` and its quarantine, …). The landing sensor only lists files and
asks for a run naming them; reading, parsing and writing happen here, on a pool, visible in
the UI with their counts. Run with no files named, a run stages every landing file whose
current version is not staged yet (a catch-up after an outage, or a first run).

A bad file — corrupt or truncated gzip, a bomb, a huge line, undecodable bytes — becomes
quarantine rows naming the file and the reason; it never stops the other files.
"""

import time
from collections import Counter

import dagster as dg
import pyarrow as pa

from llm_data_platform import schemas
from llm_data_platform.defs.partitions import partition_bounds
from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.streaming.landing_source import StagedFile
from llm_data_platform.streaming.microbatch import batch_table_names

STREAMS = ("conversations", "documents")


class StageConfig(dg.Config):
    """Landing files to stage (keys relative to the stream folder); empty: every new one."""

    files: list[str] = []


def batch_asset_keys(stream: str) -> tuple[dg.AssetKey, dg.AssetKey]:
    """(micro-batch events, micro-batch quarantine) asset keys of a stream."""
    events, quarantine = batch_table_names(stream)
    return dg.AssetKey(events), dg.AssetKey(quarantine)


def _stage_all(
    context: dg.AssetExecutionContext,
    stream: str,
    keys: list[str],
    landing: LandingFolderResource,
    lake: LakeResource,
) -> list[StagedFile]:
    bounds = partition_bounds()
    results: list[StagedFile] = []
    for done, key in enumerate(keys, start=1):
        result = landing.stage(lake, stream, key, bounds)
        results.append(result)
        if result.status == "staged":
            context.log.info(
                f"[{done}/{len(keys)}] {stream}/{key}: {result.rows} events, "
                f"{result.quarantined} quarantined, days {sorted(result.days)} "
                f"({result.seconds:.2f} s)"
            )
    return results


def _metadata(stream: str, results: list[StagedFile], seconds: float) -> tuple[dict, dict]:
    status = Counter(r.status for r in results)
    staged = [r for r in results if r.status == "staged"]
    reasons: Counter[str] = Counter()
    for r in staged:
        reasons.update(r.reasons)
    days = sorted({d for r in staged for d in r.days})
    sample = [row for r in staged for row in r.quarantine_sample][:5]
    received = sum(r.received for r in staged)
    kept = sum(r.rows for r in staged)
    quarantined = sum(r.quarantined for r in staged)
    events = {
        "files_staged": status["staged"],
        "files_unchanged": status["unchanged"],
        "files_vanished": status["vanished"],
        "lines_received": received,
        "events_staged": kept,
        "lines_quarantined": quarantined,
        "late_events": sum(r.late_events for r in staged),
        "days": dg.MetadataValue.json(days),
        "bytes_read": sum(r.bytes_read for r in staged),
        "bytes_written": sum(r.bytes_written for r in staged),
        "stage_seconds": round(seconds, 3),
    }
    quarantine: dict[str, object] = {
        "lines_quarantined": quarantined,
        "quarantine_reasons": dict(reasons),
        "files_with_quarantine": sum(1 for r in staged if r.quarantined),
    }
    if sample:
        table = pa.Table.from_pylist(sample, schema=schemas.QUARANTINE)
        quarantine["preview"] = dg.MetadataValue.md(preview_markdown(table))
    if received != kept + quarantined:
        raise dg.Failure(f"{stream}: {received} lines in, {kept} events + {quarantined} out")
    return events, quarantine


def staging_asset(stream: str) -> dg.AssetsDefinition:
    events_key, quarantine_key = batch_asset_keys(stream)

    @dg.multi_asset(
        name=f"stage_{stream}",
        specs=[
            dg.AssetSpec(
                events_key,
                group_name="ingest",
                kinds={"parquet"},
                description=f"Micro-batches of the {stream} stream, one per arrival "
                "(landing file version, Kafka offset range, S3 object version), by event day.",
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
    )
    def _stage(
        context: dg.AssetExecutionContext,
        config: StageConfig,
        landing: LandingFolderResource,
        lake: LakeResource,
    ):
        started = time.perf_counter()
        keys = config.files or [f.key for f in landing.list_files(stream)]
        results = _stage_all(context, stream, keys, landing, lake)
        events, quarantine = _metadata(stream, results, time.perf_counter() - started)
        context.log.info(
            f"{stream}: {events['files_staged']} files staged, {events['files_unchanged']} "
            f"unchanged, {events['files_vanished']} gone; days {events['days'].value}"
        )
        yield dg.MaterializeResult(asset_key=events_key, metadata=events)
        yield dg.MaterializeResult(asset_key=quarantine_key, metadata=quarantine)

    return _stage


stage_conversations = staging_asset("conversations")
stage_documents = staging_asset("documents")
STAGING_ASSETS = [stage_conversations, stage_documents]
