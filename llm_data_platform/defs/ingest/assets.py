"""Raw zone: every event once, by event day — the compaction of that day's micro-batches.

A raw partition reads only ``dt=<day>`` of its stream's micro-batch tables (every source
writes there: landing files, Kafka offset ranges, S3 objects) and keeps each ``event_id``
once, the first arrival winning; replays are counted. It never lists or opens landing files,
so a run costs that day's data, whatever the history. Quarantined lines of the day go to
the quarantine asset beside it. Received = kept + quarantined + replays, per partition.
"""

import posixpath
import tempfile
import time
from datetime import timedelta

import dagster as dg
import pyarrow.compute as pc

from llm_data_platform.defs.ingest.staging import batch_asset_keys
from llm_data_platform.defs.partitions import Partitions, daily_backfill_policy
from llm_data_platform.lib.metadata import preview_markdown, table_metadata
from llm_data_platform.resources.lake import DATA_FILE, LakeResource, WriteInfo
from llm_data_platform.streaming.compaction import Compaction, compact_day
from llm_data_platform.transforms.records import reason_family

RAW_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=26), warn_window=timedelta(hours=2)
)
QUARANTINE_SORT = ["source_file", "source_line"]
SORT_BY = {"conversations": ["event_time", "event_id"], "documents": ["updated_at", "doc_id"]}


def _day_metadata(stream: str, day: Compaction) -> tuple[dict, dict]:
    """(raw, quarantine) metadata of one partition."""
    quarantine = day.quarantine
    reasons: dict[str, int] = {}
    for item in pc.value_counts(quarantine["reason"]).to_pylist():
        family = reason_family(item["values"])
        reasons[family] = reasons.get(family, 0) + item["counts"]
    raw_meta: dict[str, object] = {
        "dagster/row_count": day.rows,
        "received": day.rows + quarantine.num_rows + day.duplicates,
        "kept": day.rows,
        "quarantined": quarantine.num_rows,
        "replays_dropped": day.duplicates,
        "late_events": day.late_events,
        "micro_batches": len(day.batches),
        "events_per_source": day.per_source,
        **{f"events_{kind}": n for kind, n in sorted(day.event_types.items())},
    }
    quarantine_meta: dict[str, object] = {"quarantine_reasons": reasons}
    if quarantine.num_rows:
        quarantine_meta["quarantine_preview"] = dg.MetadataValue.md(preview_markdown(quarantine))
    return raw_meta, quarantine_meta


def _compact_day(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    stream: str,
    name: str,
    key: str,
    workdir: str,
    selected: set[str],
) -> None:
    """Compact one day, commit its two files to the lake, record their metadata."""
    day = compact_day(lake, stream, key, SORT_BY[stream], workdir)
    if not day.batches:
        context.log.warning(
            f"{name} {key}: no staged micro-batches for this day. Landing files are staged by "
            "the landing sensors (`dagster dev`), or by hand: `dagster asset materialize -m "
            f"llm_data_platform --select {stream}_batches,{stream}_batches_quarantine`."
        )
    raw_meta, quarantine_meta = _day_metadata(stream, day)
    # The day's events and its quarantine become visible together (one lake commit): a run
    # killed between the two writes leaves both old.
    commit = lake.commit()
    if name in selected:
        path = posixpath.join(lake.partition_path("raw", name, key), DATA_FILE)
        raw_meta["bytes"] = commit.add_file(path, day.path)
        raw_meta["path"] = dg.MetadataValue.path(lake.uri(path))
    if f"{name}_quarantine" in selected:
        path = posixpath.join(lake.partition_path("raw", f"{name}_quarantine", key), DATA_FILE)
        size = commit.add_table(path, day.quarantine, sort_by=QUARANTINE_SORT)
        info = WriteInfo(lake.uri(path), day.quarantine.num_rows, size, 0.0)
        table_meta = table_metadata(day.quarantine, info)
        table_meta.pop("preview")  # the quarantine preview below says the same
        quarantine_meta = {**table_meta, **quarantine_meta}
    commit.apply()
    for asset, meta in ((name, raw_meta), (f"{name}_quarantine", quarantine_meta)):
        if asset in selected:
            context.add_asset_metadata(meta, asset_key=asset, partition_key=key)
    context.log.info(
        f"{name} {key}: {day.rows} kept, {day.quarantine.num_rows} quarantined, "
        f"{day.duplicates} replays from {len(day.batches)} batches"
    )


def raw_asset(stream: str, name: str, partitions: Partitions) -> dg.AssetsDefinition:
    events_key, quarantine_key = batch_asset_keys(stream)
    common = dict(group_name="raw", kinds={"parquet", "python"})

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
                metadata={"lake_zone": "raw", "lake_sort_by": QUARANTINE_SORT},
                **common,
            ),
        },
        deps=[events_key, quarantine_key],
        partitions_def=partitions.daily,
        backfill_policy=daily_backfill_policy,
        can_subset=True,
    )
    def _compact(context: dg.AssetExecutionContext, lake: LakeResource):
        """Both tables come from one pass over the day; a subset selection writes only its
        own. The events file is written here, streamed: no step ever holds the whole day."""
        started = time.perf_counter()
        selected = {k.to_user_string() for k in context.selected_asset_keys}
        with tempfile.TemporaryDirectory(prefix=f"ldp-compact-{stream}-") as workdir:
            for key in context.partition_keys:
                _compact_day(context, lake, stream, name, key, workdir, selected)
        seconds = {"compact_seconds": round(time.perf_counter() - started, 3)}
        for asset in (name, f"{name}_quarantine"):
            if asset in selected:  # None: both tables are in the lake already
                context.add_asset_metadata(seconds, asset_key=asset)
                yield dg.Output(None, output_name=asset)

    return _compact


def raw_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    return [
        raw_asset("conversations", "raw_conversations", partitions),
        raw_asset("documents", "raw_documents", partitions),
    ]
