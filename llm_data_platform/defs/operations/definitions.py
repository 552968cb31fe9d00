"""Operations: what keeps the platform's own runs healthy."""

import dagster as dg

from llm_data_platform.defs.operations.dead_runs import dead_runs_sensor
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.settings import Settings


def build_defs(settings: Settings, partitions: Partitions) -> dg.Definitions:
    return dg.Definitions(sensors=[dead_runs_sensor])
