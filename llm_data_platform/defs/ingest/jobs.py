"""Ingest jobs: what a landed arrival sets off, per stream, for the days its events belong to."""

import dagster as dg

from llm_data_platform.defs.partitions import daily_partitions

ingest_conversations_job = dg.define_asset_job(
    "ingest_conversations_job",
    selection=[
        "raw_conversations",
        "raw_conversations_quarantine",
        "conversations_clean",
        "conversations_clean_dropped",
    ],
    partitions_def=daily_partitions,
    description="Landed chat events → raw → clean, for the days the new events belong to.",
)

ingest_documents_job = dg.define_asset_job(
    "ingest_documents_job",
    selection=[
        "raw_documents",
        "raw_documents_quarantine",
        "documents_clean",
        "documents_clean_dropped",
        "document_chunks",
        "chunk_embeddings",
    ],
    partitions_def=daily_partitions,
    description="Landed document versions → raw → clean → chunks → embeddings.",
)

STAGE_JOBS = {
    stream: dg.define_asset_job(
        f"stage_{stream}_job",
        selection=[f"{stream}_batches", f"{stream}_batches_quarantine"],
        description=f"Parse new arrivals of the {stream} stream into micro-batches.",
        # idempotent (batches are named by content or offsets): a failed run is retried
        tags={"dagster/max_retries": "2"},
    )
    for stream in ("conversations", "documents")
}

INGEST_JOBS = {"conversations": ingest_conversations_job, "documents": ingest_documents_job}
