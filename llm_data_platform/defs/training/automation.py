"""Training automation: the weekly fine-tuning batch, built on Monday for the week before."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from llm_data_platform.defs.partitions import Partitions

if TYPE_CHECKING:  # what define_asset_job returns; not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def weekly_training(
    partitions: Partitions,
) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """(job, schedule) of the weekly batch."""
    job = dg.define_asset_job(
        "weekly_training_job",
        selection=["training_batches", "fine_tune_job"],
        partitions_def=partitions.weekly,
        description="Build the week's validated fine-tuning batch from its daily examples, "
        "then its fine-tuning job (skipped unless LDP_FINE_TUNE=on).",
    )
    # Last week's batch, on Monday at 03:00 UTC, after the daily run of Sunday's partition.
    schedule = dg.build_schedule_from_partitioned_job(
        job, hour_of_day=3, default_status=dg.DefaultScheduleStatus.RUNNING
    )
    return job, schedule
