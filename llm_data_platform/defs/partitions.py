"""Partitions of the lake tables: event days, and the training weeks built from them.

Built from the settings' first day by ``build_definitions(settings)`` and handed to every
domain's factories, so one ``Settings`` configures the whole graph (nothing is read from the
environment when a module is imported)."""

from dataclasses import dataclass
from datetime import date

import dagster as dg

# One run handles a whole date range: a backfill loads the embedding model once, not per day.
daily_backfill_policy = dg.BackfillPolicy.single_run()
# A week is built from its own seven days: a backfill of weeks runs one week per run.
weekly_backfill_policy = dg.BackfillPolicy.multi_run(1)


@dataclass(frozen=True)
class Partitions:
    """The daily and weekly partitions of one code location."""

    daily: dg.DailyPartitionsDefinition
    weekly: dg.WeeklyPartitionsDefinition

    def bounds(self) -> tuple[date, date]:
        """First and last day that exist as partitions now (the last moves at midnight UTC)."""
        first = date.fromisoformat(self.daily.get_first_partition_key())
        return first, date.fromisoformat(self.daily.get_last_partition_key())


def build_partitions(start: str) -> Partitions:
    """``start``: the first event day, ``YYYY-MM-DD``."""
    return Partitions(
        # end_offset=1: today's partition exists, so streaming arrivals land the day they happen.
        daily=dg.DailyPartitionsDefinition(start_date=start, end_offset=1),
        # Weeks start on Monday (day_offset=1) and hold the seven daily partitions of that week.
        weekly=dg.WeeklyPartitionsDefinition(start_date=start, day_offset=1),
    )
