"""Ingest jobs: staging per stream, and what a staged arrival sets off for its event days."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from llm_data_platform.defs.partitions import Partitions

if TYPE_CHECKING:  # what define_asset_job returns; not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

INGEST_SELECTIONS = {
    "conversations": (
        [
            "raw_conversations",
            "raw_conversations_quarantine",
            "conversations_clean",
            "conversations_clean_dropped",
        ],
        "Landed chat events → raw → clean, for the days the new events belong to.",
    ),
    "documents": (
        [
            "raw_documents",
            "raw_documents_quarantine",
            "documents_clean",
            "documents_clean_dropped",
            "document_chunks",
            "chunk_embeddings",
            # the index in the same run: an edit reaches users without a second run's sensor
            # tick, queue wait and process start (the gate still stands before promotion)
            "retrieval_eval_set",
            "rag_index",
            "rag_index_live",
        ],
        "Landed document versions → raw → clean → chunks → embeddings → the next index "
        "version, gated on retrieval quality, promoted.",
    ),
}


def ingest_job_name(stream: str) -> str:
    return f"ingest_{stream}_job"


def stage_job_name(stream: str) -> str:
    return f"stage_{stream}_job"


def sync_job_name(stream: str) -> str:
    return f"sync_{stream}_job"


# Per job: idempotent (each day's partitions are replaced whole, embeddings cached by content):
# a run whose process died is retried once, so the day is not left to the sensor, which has
# consumed the staging event; an asset failure (a data error) is not.
RETRY_DEAD_PROCESS = {"dagster/max_retries": "1", "dagster/retry_on_asset_or_op_failure": "false"}


def ingest_jobs(partitions: Partitions) -> list[UnresolvedAssetJobDefinition]:
    """Per stream, the daily-partitioned job a staged arrival sets off."""
    return [
        dg.define_asset_job(
            ingest_job_name(stream),
            selection=selection,
            partitions_def=partitions.daily,
            description=description,
            tags=RETRY_DEAD_PROCESS,
        )
        for stream, (selection, description) in INGEST_SELECTIONS.items()
    ]


def sync_documents_job(partitions: Partitions) -> UnresolvedAssetJobDefinition:
    """Staging and the day's ingest in ONE run, for an arrival whose day is known before it is
    parsed (a landed knowledge-base sync: its file's day): an edit reaches users without a
    second sensor tick, queue wait and run process. Days of the file other than the run's
    are left to the after-staging sensor (it skips days compacted since the staging)."""
    return dg.define_asset_job(
        sync_job_name("documents"),
        selection=["documents_batches", "documents_batches_quarantine"]
        + INGEST_SELECTIONS["documents"][0],
        partitions_def=partitions.daily,
        description="A landed documents file staged, then its day ingested, indexed, gated and "
        "promoted, in one run.",
        tags=RETRY_DEAD_PROCESS,
    )


STAGE_JOBS = {
    stream: dg.define_asset_job(
        stage_job_name(stream),
        selection=[f"{stream}_batches", f"{stream}_batches_quarantine"],
        description=f"Parse new arrivals of the {stream} stream into micro-batches.",
        # idempotent (batches are named by content or offsets): a failed run is retried
        tags={"dagster/max_retries": "2"},
    )
    for stream in ("conversations", "documents")
}
