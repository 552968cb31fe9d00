"""Clean zone: normalised, redacted, deduplicated conversations; extracted documents.

The work is done by plain transforms (``transforms/``); these assets wire them to the lake and
report every count. Dropped rows are kept beside the table (``*_dropped``) with the reason.
"""

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import dagster as dg
import pyarrow as pa

from llm_data_platform.partitions import daily_backfill_policy, daily_partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.metadata import preview_markdown
from llm_data_platform.settings import load_settings
from llm_data_platform.transforms.conversation_cleaning import CleaningConfig, clean_conversations
from llm_data_platform.transforms.document_cleaning import clean_documents

CLEAN_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=30), warn_window=timedelta(hours=4)
)
_COMMON = dict(
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


@dg.asset(
    **_COMMON,
    kinds={"parquet", "pyarrow"},
    metadata={"lake_zone": "clean", "lake_sort_by": ["conversation_id", "event_time", "event_id"]},
)
def conversations_clean(
    context: dg.AssetExecutionContext,
    raw_conversations: dict[str, pa.Table],
    lake: LakeResource,
) -> dict[str, pa.Table]:
    """Messages normalised, PII-redacted, language-tagged, quality-scored and deduplicated."""
    config = CleaningConfig(min_quality_score=load_settings().min_quality)
    return clean_partitions(
        context,
        raw_conversations,
        lambda raw: clean_conversations(raw, config),
        lake,
        "conversations_clean_dropped",
    )


@dg.asset(
    **_COMMON,
    kinds={"parquet", "html"},
    metadata={"lake_zone": "clean", "lake_sort_by": ["doc_id"]},
)
def documents_clean(
    context: dg.AssetExecutionContext,
    raw_documents: dict[str, pa.Table],
    lake: LakeResource,
) -> dict[str, pa.Table]:
    """Text extracted from each document's latest version of the day; deletions as tombstones."""
    return clean_partitions(
        context, raw_documents, clean_documents, lake, "documents_clean_dropped"
    )
