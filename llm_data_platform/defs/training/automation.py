"""Training automation: the weekly fine-tuning batch, built on Monday for the week before."""

import dagster as dg

from llm_data_platform.defs.partitions import weekly_partitions

weekly_training_job = dg.define_asset_job(
    "weekly_training_job",
    selection=["training_batches"],
    partitions_def=weekly_partitions,
    description="Build the week's validated fine-tuning batch from its daily examples.",
)

# Last week's batch, on Monday at 03:00 UTC, after the daily run of Sunday's partition.
weekly_training_schedule = dg.build_schedule_from_partitioned_job(
    weekly_training_job, hour_of_day=3, default_status=dg.DefaultScheduleStatus.RUNNING
)
