"""Conversations domain: the clean conversations table and its quality gates."""

import dagster as dg

from llm_data_platform.defs.conversations.assets import clean_raw_conversations
from llm_data_platform.defs.conversations.checks import CONVERSATION_CHECKS
from llm_data_platform.settings import Settings

ASSETS = [clean_raw_conversations]
CHECKS = CONVERSATION_CHECKS


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=ASSETS, asset_checks=CHECKS)
