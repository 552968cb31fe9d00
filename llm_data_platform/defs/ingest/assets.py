"""Raw zone: every landed event, as received, with its arrival metadata.

A partition is an event day. Its run reads the landing files, keeps the events of that day
(late arrivals included) and writes them whole; malformed lines go to the quarantine table
beside it with the reason. Received = kept + quarantined, per partition, in the metadata.
"""

import time
from collections import Counter
from datetime import date, timedelta
from functools import lru_cache

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.defs.partitions import daily_backfill_policy, daily_partitions
from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFile, LandingFolderResource
from llm_data_platform.streaming.microbatch import read_day_detailed
from llm_data_platform.transforms.records import (
    STREAMS,
    ParsedLines,
    parse_lines,
    quarantine_table,
    reason_family,
    to_table,
)

RAW_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=26), warn_window=timedelta(hours=2)
)


def partition_bounds() -> tuple[date, date]:
    """First and last day that exist as partitions now (the last moves at midnight)."""
    first = date.fromisoformat(daily_partitions.get_first_partition_key())
    return first, date.fromisoformat(daily_partitions.get_last_partition_key())


def parse_landing_file(stream: str, file: LandingFile) -> ParsedLines:
    return _parse_landing_file(stream, file, partition_bounds())


@lru_cache(maxsize=4096)
def _parse_landing_file(stream: str, file: LandingFile, bounds: tuple[date, date]) -> ParsedLines:
    """Parsed once per process per file version (its identity includes mtime and size)."""
    spec = STREAMS[stream]
    return parse_lines(
        LandingFolderResource.read_lines(file),
        source_file=f"{stream}/{file.key}",
        arrived_at=file.arrived_at,
        validate=spec.validate,
        json_time_key=spec.json_time_key,
        row_time_key=spec.row_time_key,
        max_line_bytes=spec.max_line_bytes,
        first_day=bounds[0],
        last_day=bounds[1],
    )


def partitions_of(stream: str, file: LandingFile) -> set[str]:
    return {d.isoformat() for d in parse_landing_file(stream, file).days()}


def ingest_stream(
    context: dg.AssetExecutionContext,
    stream: str,
    asset_name: str,
    landing: LandingFolderResource,
    lake: LakeResource,
) -> dict[str, pa.Table]:
    started = time.perf_counter()
    spec = STREAMS[stream]
    keys = list(context.partition_keys)
    wanted = {date.fromisoformat(k): k for k in keys}
    rows: dict[str, list[dict]] = {k: [] for k in keys}
    bad: dict[str, list[dict]] = {k: [] for k in keys}
    files = landing.list_files(stream)
    files_used: Counter[str] = Counter()
    for file in files:
        parsed = parse_landing_file(stream, file)
        for day in parsed.days() & wanted.keys():
            good, rejected = parsed.for_day(day)
            rows[wanted[day]].extend(good)
            bad[wanted[day]].extend(rejected)
            files_used[file.key] += len(good) + len(rejected)

    out: dict[str, pa.Table] = {}
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    per_source: Counter[str] = Counter()
    quarantine_preview = None
    for key in keys:
        table = to_table(rows[key], spec.schema)
        quarantine = quarantine_table(bad[key])
        per_source["landing"] += table.num_rows
        # Micro-batches staged by the streaming sources (Kafka, S3) for this day: each event
        # once (a replay under another batch identity is dropped and counted).
        staged = read_day_detailed(lake, stream, key)
        replays = staged.duplicates if staged.files else 0
        if staged.files:
            table = pa.concat_tables([table, staged.rows.select(spec.schema.names)])
            quarantine = pa.concat_tables(
                [quarantine, staged.quarantine.select(quarantine.schema.names)]
            )
            totals.update(stream_replays_dropped=replays, stream_batches=len(staged.batches))
            for source, n in staged.per_source.items():
                per_source[source] += n
        arrived = pc.cast(table["arrived_at"], pa.date32())
        event_day = pc.cast(table[spec.row_time_key], pa.date32())
        late = int(pc.sum(pc.greater(arrived, event_day)).as_py() or 0)
        lake.write_partition("raw", f"{asset_name}_quarantine", key, quarantine)
        out[key] = table
        # received = kept + quarantined + replays dropped, for every partition
        totals.update(received=table.num_rows + quarantine.num_rows + replays, kept=table.num_rows)
        totals.update(quarantined=quarantine.num_rows, late_events=late)
        reasons.update(map(reason_family, quarantine["reason"].to_pylist()))
        if quarantine.num_rows and quarantine_preview is None:
            quarantine_preview = quarantine
    context.log.info(
        f"{asset_name} {keys[0]}..{keys[-1]}: {totals['kept']} kept, "
        f"{totals['quarantined']} quarantined from {len(files_used)} of {len(files)} files"
    )
    meta: dict[str, object] = {
        **{k: totals[k] for k in ("received", "kept", "quarantined", "late_events")},
        "events_per_source": dict(per_source),
        "stream_batches": totals["stream_batches"],
        "stream_replays_dropped": totals["stream_replays_dropped"],
        "landing_files_scanned": len(files),
        "landing_files_used": len(files_used),
        "quarantine_reasons": dict(reasons),
        "quarantine_table": dg.MetadataValue.path(
            lake.uri(lake.table_path("raw", f"{asset_name}_quarantine"))
        ),
        "ingest_seconds": round(time.perf_counter() - started, 3),
    }
    if quarantine_preview is not None:
        meta["quarantine_preview"] = dg.MetadataValue.md(preview_markdown(quarantine_preview))
    if stream == "conversations":
        for key in keys:
            for item in pc.value_counts(out[key]["event_type"]).to_pylist():
                meta[f"events_{item['values']}"] = (
                    meta.get(f"events_{item['values']}", 0) + item["counts"]
                )
    context.add_output_metadata(meta)
    return out


_COMMON = dict(
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    group_name="raw",
    kinds={"parquet", "python"},
    freshness_policy=RAW_FRESHNESS,
)


@dg.asset(
    **_COMMON,
    metadata={"lake_zone": "raw", "lake_sort_by": ["event_time", "event_id"]},
)
def raw_conversations(
    context: dg.AssetExecutionContext, landing: LandingFolderResource, lake: LakeResource
) -> dict[str, pa.Table]:
    """Chat messages and feedback events as received, by event day, plus arrival metadata."""
    return ingest_stream(context, "conversations", "raw_conversations", landing, lake)


@dg.asset(
    **_COMMON,
    metadata={"lake_zone": "raw", "lake_sort_by": ["updated_at", "doc_id"]},
)
def raw_documents(
    context: dg.AssetExecutionContext, landing: LandingFolderResource, lake: LakeResource
) -> dict[str, pa.Table]:
    """Knowledge-base document versions and deletions as received, by update day."""
    return ingest_stream(context, "documents", "raw_documents", landing, lake)
