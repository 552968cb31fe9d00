"""Partitions of the lake tables: event days, and the training weeks built from them."""

from datetime import date

import dagster as dg

from llm_data_platform.settings import load_settings

_start = load_settings().partitions_start

# end_offset=1: today's partition exists, so streaming arrivals land the day they happen.
daily_partitions = dg.DailyPartitionsDefinition(start_date=_start, end_offset=1)

# Weeks start on Monday (day_offset=1) and hold the seven daily partitions of that week.
weekly_partitions = dg.WeeklyPartitionsDefinition(start_date=_start, day_offset=1)

# One run handles a whole date range: a backfill loads the embedding model once, not per day.
daily_backfill_policy = dg.BackfillPolicy.single_run()


def partition_bounds() -> tuple[date, date]:
    """First and last day that exist as partitions now (the last moves at midnight UTC)."""
    first = date.fromisoformat(daily_partitions.get_first_partition_key())
    return first, date.fromisoformat(daily_partitions.get_last_partition_key())
