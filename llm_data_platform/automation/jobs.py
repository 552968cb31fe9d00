"""Jobs: the asset selections that sensors, schedules and the CLI launch."""

import dagster as dg

from llm_data_platform.partitions import daily_partitions, weekly_partitions

ingest_conversations_job = dg.define_asset_job(
    "ingest_conversations_job",
    selection=["raw_conversations", "conversations_clean"],
    partitions_def=daily_partitions,
    description="Landed chat events → raw → clean, for the days the new events belong to.",
)

ingest_documents_job = dg.define_asset_job(
    "ingest_documents_job",
    selection=["raw_documents", "documents_clean", "document_chunks", "chunk_embeddings"],
    partitions_def=daily_partitions,
    description="Landed document versions → raw → clean → chunks → embeddings.",
)

# Every daily-partitioned asset, raw to curated.
DAILY_ASSETS = (
    "raw_conversations",
    "raw_documents",
    "conversations_clean",
    "documents_clean",
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

rag_index_job = dg.define_asset_job(
    "rag_index_job",
    selection=["rag_index", "rag_index_live"],
    description="Build the next index version (upserts and deletes), evaluate it, promote it.",
)

weekly_training_job = dg.define_asset_job(
    "weekly_training_job",
    selection=["training_batches"],
    partitions_def=weekly_partitions,
    description="Build the week's validated fine-tuning batch from its daily examples.",
)

retrieval_eval_set_job = dg.define_asset_job(
    "retrieval_eval_set_job",
    selection=["retrieval_eval_set"],
    description="Reload the retrieval-evaluation questions (decontamination, index quality).",
)

ALL_JOBS = [
    retrieval_eval_set_job,
    ingest_conversations_job,
    ingest_documents_job,
    daily_job,
    rag_index_job,
    weekly_training_job,
]
