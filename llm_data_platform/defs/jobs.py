"""The cross-domain daily job: every daily partition from raw to curated, and its schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from llm_data_platform.defs.partitions import Partitions

if TYPE_CHECKING:  # what define_asset_job returns; not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

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
    "training_selection_log",
    "document_chunks",
    "chunk_embeddings",
)


def daily(partitions: Partitions) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """(job, schedule): every daily partition, raw to curated; yesterday's at 01:00 UTC, once
    it is complete."""
    job = dg.define_asset_job(
        "daily_job",
        selection=dg.AssetSelection.assets(*DAILY_ASSETS),
        partitions_def=partitions.daily,
        description="Every daily partition from raw to curated; idempotent, safe to re-run.",
        # idempotent (partitions replaced whole): a run whose process died is retried once;
        # one that failed on its data is not (it would fail the same way)
        tags={"dagster/max_retries": "1", "dagster/retry_on_asset_or_op_failure": "false"},
    )
    schedule = dg.build_schedule_from_partitioned_job(
        job, hour_of_day=1, default_status=dg.DefaultScheduleStatus.RUNNING
    )
    return job, schedule
