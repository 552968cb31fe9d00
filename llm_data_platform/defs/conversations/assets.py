"""Clean conversations: normalised, PII-redacted, language-tagged, scored, deduplicated.

The work is done by plain transforms (``transforms/``); the asset wires them to the lake and
reports every count. Dropped rows are kept beside the table (``*_dropped``) with the reason.
"""

import dagster as dg
import pyarrow as pa

from llm_data_platform.lib.cleaning import CLEAN_ASSET, clean_partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.transforms.conversation_cleaning import CleaningConfig, clean_conversations


@dg.asset(
    **CLEAN_ASSET,
    kinds={"parquet", "pyarrow"},
    metadata={"lake_zone": "clean", "lake_sort_by": ["conversation_id", "event_time", "event_id"]},
)
def conversations_clean(
    context: dg.AssetExecutionContext,
    raw_conversations: dict[str, pa.Table],
    lake: LakeResource,
    pipeline: PipelineSettings,
) -> dict[str, pa.Table]:
    """Messages normalised, PII-redacted, language-tagged, quality-scored and deduplicated."""
    config = CleaningConfig(min_quality_score=pipeline.min_quality)
    return clean_partitions(
        context,
        raw_conversations,
        lambda raw: clean_conversations(raw, config),
        lake,
        "conversations_clean_dropped",
    )
