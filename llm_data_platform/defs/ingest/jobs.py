"""Ingest jobs: what a landed arrival sets off, per stream, for the days its events belong to."""

import dagster as dg

from llm_data_platform.defs.partitions import daily_partitions

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

INGEST_JOBS = {"conversations": ingest_conversations_job, "documents": ingest_documents_job}
