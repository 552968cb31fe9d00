"""Raw zone: every event once, by event day — the compaction of that day's micro-batches.

A raw partition reads only ``dt=<day>`` of its stream's micro-batch tables (every source
writes there: landing files, Kafka offset ranges, S3 objects) and keeps each ``event_id``
once, the first arrival winning; replays are counted. It never lists or opens landing files,
so a run costs that day's data, whatever the history. Quarantined lines of the day go to
the quarantine asset beside it. Received = kept + quarantined + replays, per partition.
"""

import time
from datetime import timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.defs.ingest.staging import batch_asset_keys
from llm_data_platform.defs.partitions import daily_backfill_policy, daily_partitions
from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.microbatch import DayBatches, read_day_detailed
from llm_data_platform.transforms.records import STREAMS, reason_family

RAW_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=26), warn_window=timedelta(hours=2)
)
SORT_BY = {"conversations": ["event_time", "event_id"], "documents": ["updated_at", "doc_id"]}


def _day_metadata(stream: str, day: DayBatches) -> tuple[dict, dict]:
    """(raw, quarantine) metadata of one partition."""
    spec = STREAMS[stream]
    rows, quarantine = day.rows, day.quarantine
    late = 0
    if rows.num_rows:
        arrived = pc.cast(rows["arrived_at"], pa.date32())
        event_day = pc.cast(rows[spec.row_time_key], pa.date32())
        late = int(pc.sum(pc.greater(arrived, event_day)).as_py() or 0)
    reasons: dict[str, int] = {}
    for item in pc.value_counts(quarantine["reason"]).to_pylist():
        family = reason_family(item["values"])
        reasons[family] = reasons.get(family, 0) + item["counts"]
    raw_meta: dict[str, object] = {
        "received": rows.num_rows + quarantine.num_rows + day.duplicates,
        "kept": rows.num_rows,
        "quarantined": quarantine.num_rows,
        "replays_dropped": day.duplicates,
        "late_events": late,
        "micro_batches": len(day.batches),
        "events_per_source": day.per_source,
    }
    if stream == "conversations" and rows.num_rows:
        for item in pc.value_counts(rows["event_type"]).to_pylist():
            raw_meta[f"events_{item['values']}"] = item["counts"]
    quarantine_meta: dict[str, object] = {"quarantine_reasons": reasons}
    if quarantine.num_rows:
        quarantine_meta["quarantine_preview"] = dg.MetadataValue.md(preview_markdown(quarantine))
    return raw_meta, quarantine_meta


def raw_asset(stream: str, name: str) -> dg.AssetsDefinition:
    events_key, quarantine_key = batch_asset_keys(stream)
    common = dict(group_name="raw", kinds={"parquet", "python"})
    quarantine_sort = ["source_file", "source_line"]

    @dg.multi_asset(
        name=f"compact_{stream}",
        outs={
            name: dg.AssetOut(
                description=f"Every {stream} event once, by event day, with arrival metadata.",
                freshness_policy=RAW_FRESHNESS,
                is_required=False,
                metadata={"lake_zone": "raw", "lake_sort_by": SORT_BY[stream]},
                **common,
            ),
            f"{name}_quarantine": dg.AssetOut(
                description=f"Lines of the {stream} stream that were rejected, with the reason.",
                is_required=False,
                metadata={"lake_zone": "raw", "lake_sort_by": quarantine_sort},
                **common,
            ),
        },
        deps=[events_key, quarantine_key],
        partitions_def=daily_partitions,
        backfill_policy=daily_backfill_policy,
        can_subset=True,
    )
    def _compact(context: dg.AssetExecutionContext, lake: LakeResource):
        """Both tables come from one read of the day; a subset selection writes only its own."""
        started = time.perf_counter()
        selected = {k.to_user_string() for k in context.selected_asset_keys}
        rows: dict[str, pa.Table] = {}
        rejected: dict[str, pa.Table] = {}
        for key in context.partition_keys:
            day = read_day_detailed(lake, stream, key)
            rows[key], rejected[key] = day.rows, day.quarantine
            if not day.batches:
                context.log.warning(
                    f"{name} {key}: no staged micro-batches for this day. Landing files are "
                    "staged by the landing sensors (`dagster dev`), or by hand: `dagster asset "
                    f"materialize -m llm_data_platform --select {stream}_batches,"
                    f"{stream}_batches_quarantine`."
                )
            raw_meta, quarantine_meta = _day_metadata(stream, day)
            for asset, meta in ((name, raw_meta), (f"{name}_quarantine", quarantine_meta)):
                if asset in selected:
                    context.add_asset_metadata(meta, asset_key=asset, partition_key=key)
            context.log.info(
                f"{name} {key}: {raw_meta['kept']} kept, {raw_meta['quarantined']} quarantined, "
                f"{raw_meta['replays_dropped']} replays from {raw_meta['micro_batches']} batches"
            )
        seconds = {"compact_seconds": round(time.perf_counter() - started, 3)}
        for asset, tables in ((name, rows), (f"{name}_quarantine", rejected)):
            if asset in selected:
                context.add_asset_metadata(seconds, asset_key=asset)
                yield dg.Output(tables, output_name=asset)

    return _compact


compact_conversations = raw_asset("conversations", "raw_conversations")
compact_documents = raw_asset("documents", "raw_documents")
