"""The cross-domain daily job: every daily partition from raw to curated, and its schedule."""

import dagster as dg

from llm_data_platform.defs.partitions import daily_partitions

# Every daily-partitioned asset, raw to curated.
DAILY_ASSETS = (
    "raw_conversations",
    "raw_conversations_quarantine",
    "raw_documents",
    "raw_documents_quarantine",
    "conversations_clean",
    "conversations_clean_dropped",
    "documents_clean",
    "documents_clean_dropped",
    "training_examples",
    "document_chunks",
    "chunk_embeddings",
)

daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=daily_partitions,
    description="Every daily partition from raw to curated; idempotent, safe to re-run.",
)

# Yesterday's partition, once it is complete (01:00 UTC).
daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job, hour_of_day=1, default_status=dg.DefaultScheduleStatus.RUNNING
)
