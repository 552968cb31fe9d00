"""Schedules: the daily safety-net run, the nightly index sync, the weekly training batch."""

import dagster as dg

from llm_data_platform.automation.jobs import daily_job, rag_index_job, weekly_training_job

# Yesterday's partition, once it is complete (01:00 UTC).
daily_schedule = dg.build_schedule_from_partitioned_job(daily_job, hour_of_day=1)

rag_index_schedule = dg.ScheduleDefinition(
    name="rag_index_schedule", job=rag_index_job, cron_schedule="0 2 * * *"
)

# Last week's batch, on Monday at 03:00 UTC, after the daily run of Sunday's partition.
weekly_training_schedule = dg.build_schedule_from_partitioned_job(
    weekly_training_job, hour_of_day=3
)

ALL_SCHEDULES = [daily_schedule, rag_index_schedule, weekly_training_schedule]
