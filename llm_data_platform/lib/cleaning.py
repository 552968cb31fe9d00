"""The shared wiring of the clean assets: a transform per day, its dropped rows and counts."""

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import dagster as dg
import pyarrow as pa

from llm_data_platform.defs.partitions import daily_backfill_policy, daily_partitions
from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.lake import LakeResource

CLEAN_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=30), warn_window=timedelta(hours=4)
)
CLEAN_ASSET = dict(
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    group_name="clean",
    freshness_policy=CLEAN_FRESHNESS,
)


def clean_partitions(
    context: dg.AssetExecutionContext,
    raw_by_day: dict[str, pa.Table],
    clean: Callable[[pa.Table], object],
    lake: LakeResource,
    dropped_table: str,
) -> dict[str, pa.Table]:
    """Run a cleaning transform per day; dropped rows go beside the table, counts to metadata.

    ``clean`` returns an object with ``clean``, ``dropped`` (tables) and ``counts`` (dict).
    """
    started = time.perf_counter()
    out: dict[str, pa.Table] = {}
    totals: Counter[str] = Counter()
    sample = None
    for key, raw in raw_by_day.items():
        result = clean(raw)
        lake.write_partition("clean", dropped_table, key, result.dropped)
        out[key] = result.clean
        totals.update(result.counts)
        if sample is None and result.dropped.num_rows:
            sample = result.dropped
    meta: dict[str, object] = {k: int(v) for k, v in sorted(totals.items())}
    meta["dropped_table"] = dg.MetadataValue.path(lake.uri(lake.table_path("clean", dropped_table)))
    if sample is not None:
        meta["dropped_preview"] = dg.MetadataValue.md(preview_markdown(sample))
    meta["clean_seconds"] = round(time.perf_counter() - started, 3)
    context.add_output_metadata(meta)
    return out
