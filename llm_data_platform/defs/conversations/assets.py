"""Clean conversations: normalised, PII-redacted, language-tagged, scored, deduplicated.

The work is done by plain transforms (``transforms/``); the step wires them to the lake and
reports every count per day. Dropped rows are the asset beside it, with the reason.
"""

import dagster as dg

from llm_data_platform import schemas
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.lib.cleaning import clean_asset
from llm_data_platform.transforms.conversation_cleaning import CleaningConfig, clean_conversations


def conversations_clean_asset(partitions: Partitions) -> dg.AssetsDefinition:
    """raw_conversations → conversations_clean and the rows it dropped."""
    return clean_asset(
        "conversations_clean",
        "raw_conversations",
        description="Messages normalised, PII-redacted, language-tagged, quality-scored and "
        "deduplicated.",
        kinds={"parquet", "pyarrow"},
        sort_by=["conversation_id", "event_time", "event_id"],
        read_order=["conversation_id", "event_time", "event_id"],
        schema=schemas.CONVERSATIONS_CLEAN,
        raw_schema=schemas.RAW_CONVERSATIONS,
        make_transform=lambda pipeline: (
            lambda raw: clean_conversations(
                raw, CleaningConfig(min_quality_score=pipeline.min_quality)
            )
        ),
        partitions=partitions,
    )
