"""Conversations domain: the clean conversations table and its quality gates."""

import dagster as dg

from llm_data_platform.defs.conversations.assets import conversations_clean_asset, dedup_config
from llm_data_platform.defs.conversations.checks import conversation_checks
from llm_data_platform.defs.conversations.dedup_history import index_specs
from llm_data_platform.defs.conversations.history_duplicates import history_duplicates_asset
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.settings import Settings


def build_defs(settings: Settings, partitions: Partitions) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            conversations_clean_asset(partitions, settings),
            *index_specs(partitions),
            history_duplicates_asset(dedup_config(settings)),
        ],
        asset_checks=conversation_checks(partitions, settings),
    )
