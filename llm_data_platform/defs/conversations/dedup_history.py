"""The dedup index of conversations_clean: what each day kept, read back by the days after.

Two daily tables in the clean zone, written by the clean step in the same lake commit as
``conversations_clean`` and its dropped rows (so a day's index always matches its clean
table), assets of the graph that step observes (``index_specs``):

- ``conversations_content_hashes``: event id, conversation id and content hash of every kept
  message that took part in cross-conversation dedup (at least ``LDP_DEDUP_MIN_WORDS``);
- ``conversations_near_dup_signatures``: the MinHash signature of each of those messages and
  of each kept conversation of two messages or more, with the parameters that made it.

Day D is deduplicated against the ``LDP_DEDUP_HISTORY_DAYS`` days before it, read through the
lake resource (never through the IO manager, and never day D itself: a re-run of D reads the
same history and replaces D's index whole). A range backfilled in one run cleans its days in
order and commits each before the next starts, so it gives what day-by-day runs give. A
re-run of an earlier day does not re-clean the days after it; backfill the range for that.
"""

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa

from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.conversation_cleaning import (
    CleaningConfig,
    CleaningResult,
    clean_conversations,
)
from llm_data_platform.transforms.cross_dedup import DedupState

CONTENT_HASHES = "conversations_content_hashes"
NEAR_DUP_SIGNATURES = "conversations_near_dup_signatures"
INDEX_TABLES = {
    CONTENT_HASHES: "Content hash of every message conversations_clean kept that took part in "
    "dedup across conversations; the exact-duplicate index the next days read.",
    NEAR_DUP_SIGNATURES: "MinHash signatures of the messages and conversations "
    "conversations_clean kept; the near-duplicate index the next days read.",
}


def index_specs(partitions: Partitions) -> list[dg.AssetSpec]:
    """The index tables in the graph, observed by the clean step that writes them (they are
    part of its commit, not a step of their own)."""
    return [
        dg.AssetSpec(
            name,
            deps=["conversations_clean"],
            description=description,
            group_name="clean",
            kinds={"parquet"},
            partitions_def=partitions.daily,
            metadata={"lake_zone": "clean"},
        )
        for name, description in INDEX_TABLES.items()
    ]


def history_keys(key: str, days: int) -> list[str]:
    """The ``days`` days before ``key``, oldest first."""
    day = date.fromisoformat(key)
    return [(day - timedelta(days=d)).isoformat() for d in range(days, 0, -1)]


class ConversationDay:
    """``clean_conversations`` for the chunks of one day at a time, with one ``DedupState``
    per day loaded from the earlier days' index tables (the hooks ``lib/cleaning`` calls)."""

    def __init__(self, config: CleaningConfig, history_days: int) -> None:
        self.base, self.history_days = config, history_days
        self.config = config
        self.state: DedupState | None = None
        self.read: dict[str, int] = {}

    def start_day(self, lake: LakeResource, key: str, workdir: str | None = None) -> None:
        """A new state for day ``key``, loaded with its history; ``workdir``: where the
        day's index tables are written as its chunks keep messages (not held to the end)."""
        self.state = DedupState(self.base.dedup, spill_dir=workdir)
        self.config = replace(self.base, dedup_state=self.state)
        self.read = {"history_days_read": 0, "history_messages": 0, "history_conversations": 0}
        if not self.base.dedup.enabled:
            return
        for day in history_keys(key, self.history_days):
            hashes = lake.read_partition("clean", CONTENT_HASHES, day)
            signatures = lake.read_partition("clean", NEAR_DUP_SIGNATURES, day)
            if hashes is None and signatures is None:
                continue
            self.read["history_days_read"] += 1
            self.state.load_history(hashes, signatures)
        self.read["history_messages"] = len(self.state.messages)
        self.read["history_conversations"] = len(self.state.conversations)
        self.read["history_content_hashes"] = len(self.state.hashes)

    def __call__(self, raw: pa.Table) -> CleaningResult:
        return clean_conversations(raw, self.config)

    def finish_day(self) -> tuple[dict[str, pa.Table | str], dict[str, Any]]:
        """(the day's index tables by asset name — local Parquet files when ``start_day`` had
        a workdir —, metadata for the clean table)."""
        if self.state is None:
            raise RuntimeError("finish_day before start_day")
        spilled = self.state.spill_dir is not None
        hashes, signatures = self.state.day_files() if spilled else self.state.day_tables()
        meta = dict(self.read, history_skipped_signatures=self.state.history_skipped)
        return {CONTENT_HASHES: hashes, NEAR_DUP_SIGNATURES: signatures}, meta
