"""The clean assets' shape: a transform per day → the clean table and, beside it, the rows it
dropped with the reason — two assets of one step (they are one result, written together)."""

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dagster as dg
import pyarrow as pa

from llm_data_platform.defs.partitions import daily_backfill_policy, daily_partitions
from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.pipeline import PipelineSettings

CLEAN_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=30), warn_window=timedelta(hours=4)
)
# ``transform(raw)`` returns an object with ``clean``, ``dropped`` (tables), ``counts`` (dict)
Transform = Callable[[pa.Table], Any]


def clean_asset(
    name: str,
    raw: str,
    *,
    description: str,
    kinds: set[str],
    sort_by: list[str],
    make_transform: Callable[[PipelineSettings], Transform],
) -> dg.AssetsDefinition:
    dropped = f"{name}_dropped"

    @dg.multi_asset(
        name=f"clean_{raw}",
        ins={"raw": dg.AssetIn(raw)},
        outs={
            name: dg.AssetOut(
                description=description,
                group_name="clean",
                kinds=kinds,
                freshness_policy=CLEAN_FRESHNESS,
                metadata={"lake_zone": "clean", "lake_sort_by": sort_by},
            ),
            dropped: dg.AssetOut(
                description=f"Rows of {raw} that {name} dropped, each with the reason.",
                group_name="clean",
                kinds={"parquet"},
                metadata={"lake_zone": "clean"},
            ),
        },
        partitions_def=daily_partitions,
        backfill_policy=daily_backfill_policy,
    )
    def _clean(
        context: dg.AssetExecutionContext, raw: dict[str, pa.Table], pipeline: PipelineSettings
    ) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
        transform = make_transform(pipeline)
        kept: dict[str, pa.Table] = {}
        removed: dict[str, pa.Table] = {}
        for key, table in raw.items():
            started = time.perf_counter()
            result = transform(table)
            kept[key], removed[key] = result.clean, result.dropped
            counts = {k: int(v) for k, v in sorted(result.counts.items())}
            counts["clean_seconds"] = round(time.perf_counter() - started, 3)
            context.add_asset_metadata(counts, asset_key=name, partition_key=key)
            preview = {"dropped_rows": result.dropped.num_rows}
            if result.dropped.num_rows:
                preview["dropped_preview"] = dg.MetadataValue.md(preview_markdown(result.dropped))
            context.add_asset_metadata(preview, asset_key=dropped, partition_key=key)
        return kept, removed

    return _clean
