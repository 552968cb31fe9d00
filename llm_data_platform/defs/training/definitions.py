"""Training domain: daily fine-tuning examples, the weekly validated batches, the fine-tune job."""

import dagster as dg

from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.defs.training.assets import training_assets
from llm_data_platform.defs.training.automation import weekly_training
from llm_data_platform.defs.training.checks import training_checks
from llm_data_platform.defs.training.fine_tune import fine_tune_asset
from llm_data_platform.defs.training.resources import training_settings
from llm_data_platform.settings import Settings


def build_defs(settings: Settings, partitions: Partitions) -> dg.Definitions:
    job, schedule = weekly_training(partitions)
    training = training_settings(settings)
    return dg.Definitions(
        assets=[*training_assets(partitions, training), fine_tune_asset(partitions, training)],
        asset_checks=training_checks(partitions, training),
        jobs=[job],
        schedules=[schedule],
    )
