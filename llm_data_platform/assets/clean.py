"""Clean zone: normalised, redacted, deduplicated conversations; extracted documents.

The work is done by plain transforms (``transforms/``); these assets wire them to the lake and
report every count. Dropped rows are kept beside the table (``*_dropped``) with the reason.
"""

import time
from collections import Counter
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


def _dropped_metadata(lake: LakeResource, table: str, sample: pa.Table | None) -> dict:
    meta: dict[str, object] = {
        "dropped_table": dg.MetadataValue.path(lake.uri(lake.table_path("clean", table)))
    }
    if sample is not None and sample.num_rows:
        meta["dropped_preview"] = dg.MetadataValue.md(preview_markdown(sample))
    return meta


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
    started = time.perf_counter()
    settings = load_settings()
    config = CleaningConfig(min_quality_score=settings.min_quality)
    out: dict[str, pa.Table] = {}
    totals: Counter[str] = Counter()
    sample = None
    for key, raw in raw_conversations.items():
        result = clean_conversations(raw, config)
        lake.write_partition("clean", "conversations_clean_dropped", key, result.dropped)
        out[key] = result.clean
        totals.update(result.counts)
        if sample is None and result.dropped.num_rows:
            sample = result.dropped
    context.add_output_metadata(
        {
            **{k: int(v) for k, v in sorted(totals.items())},
            **_dropped_metadata(lake, "conversations_clean_dropped", sample),
            "clean_seconds": round(time.perf_counter() - started, 3),
        }
    )
    return out


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
    started = time.perf_counter()
    out: dict[str, pa.Table] = {}
    totals: Counter[str] = Counter()
    sample = None
    for key, raw in raw_documents.items():
        result = clean_documents(raw)
        lake.write_partition("clean", "documents_clean_dropped", key, result.dropped)
        out[key] = result.clean
        totals.update(result.counts)
        if sample is None and result.dropped.num_rows:
            sample = result.dropped
    context.add_output_metadata(
        {
            **{k: int(v) for k, v in sorted(totals.items())},
            **_dropped_metadata(lake, "documents_clean_dropped", sample),
            "clean_seconds": round(time.perf_counter() - started, 3),
        }
    )
    return out
