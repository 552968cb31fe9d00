"""Training domain: daily fine-tuning examples and the weekly validated batches."""

import dagster as dg

from llm_data_platform.defs.training.assets import training_batches, training_examples
from llm_data_platform.defs.training.automation import (
    weekly_training_job,
    weekly_training_schedule,
)
from llm_data_platform.defs.training.checks import TRAINING_CHECKS
from llm_data_platform.settings import Settings

ASSETS = [training_examples, training_batches]
CHECKS = TRAINING_CHECKS


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[weekly_training_job],
        schedules=[weekly_training_schedule],
    )
