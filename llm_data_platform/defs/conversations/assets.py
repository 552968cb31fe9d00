"""Clean conversations: normalised, PII-redacted, language-tagged, scored, deduplicated.

The work is done by plain transforms (``transforms/``); the step wires them to the lake and
reports every count per day. Dropped rows are the asset beside it, with the reason; the dedup
index of what the day kept (``dedup_history.py``) is two more tables of the same commit.
"""

from functools import partial

import dagster as dg

from llm_data_platform import schemas
from llm_data_platform.defs.conversations.dedup_history import ConversationDay
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.lib.cleaning import clean_asset
from llm_data_platform.lib.drift_lake import clean_day_histograms
from llm_data_platform.settings import Settings
from llm_data_platform.transforms.conversation_cleaning import CleaningConfig
from llm_data_platform.transforms.cross_dedup import DedupConfig
from llm_data_platform.transforms.near_dedup import NearDupParams


def dedup_config(settings: Settings) -> DedupConfig:
    """Cross-conversation and history dedup as the settings choose it."""
    return DedupConfig(
        enabled=settings.dedup_across,
        min_words=settings.dedup_min_words,
        near=NearDupParams(
            threshold=settings.near_dup_threshold,
            num_perm=settings.near_dup_num_perm,
            shingle=settings.near_dup_shingle,
            bands=settings.near_dup_bands,
        ),
    )


def conversations_clean_asset(partitions: Partitions, settings: Settings) -> dg.AssetsDefinition:
    """raw_conversations → conversations_clean, the rows it dropped and its dedup index."""
    dedup = dedup_config(settings)
    return clean_asset(
        "conversations_clean",
        "raw_conversations",
        description="Messages normalised, PII-redacted, language-tagged, quality-scored and "
        "deduplicated within turns, across conversations and against earlier days.",
        kinds={"parquet", "pyarrow"},
        sort_by=["conversation_id", "event_time", "event_id"],
        read_order=["conversation_id", "event_time", "event_id"],
        schema=schemas.CONVERSATIONS_CLEAN,
        raw_schema=schemas.RAW_CONVERSATIONS,
        make_transform=lambda pipeline: ConversationDay(
            CleaningConfig(min_quality_score=pipeline.min_quality, dedup=dedup),
            settings.dedup_history_days,
        ),
        partitions=partitions,
        # token-length, quality-score and cluster-size pictures on each day's materialization
        day_metadata=partial(clean_day_histograms, token_sample=settings.drift_token_sample),
    )
