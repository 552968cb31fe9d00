"""A clean conversations day as the drift checks see it, read from the lake, and its
histograms as UI metadata (a picture and a bin table each).

Shared by the drift checks (``defs/conversations/drift.py``) and, for histograms on the
materialization itself, by the clean step: ``clean_day_histograms(lake, key)``.
"""

import posixpath
from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import pyarrow.parquet as pq

from llm_data_platform.lib import drift
from llm_data_platform.lib.plots import histogram_markdown
from llm_data_platform.resources.lake import DATA_FILE, LakeResource

ASSET = "conversations_clean"
DROPPED = "conversations_clean_dropped"
CLEAN_COLUMNS = ["event_type", "pii_redactions", "quality_score", "content"]
BATCH_ROWS = 100_000

HISTOGRAMS = {  # DayProfile attribute: bin edges, axis label, what is counted
    "token_hist": (drift.TOKEN_EDGES, "word pieces per message", "messages"),
    "quality_hist": (drift.QUALITY_EDGES, "quality score", "messages"),
    "cluster_hist": (drift.CLUSTER_EDGES, "rows per duplicate cluster", "clusters"),
}


class LakeProfiles:
    """Day profiles read from the lake once each (a range run reuses them across days)."""

    def __init__(self, lake: LakeResource, token_sample: int):
        self.lake, self.token_sample = lake, max(token_sample, 1)
        self.days = set(lake.list_partitions("clean", ASSET))
        self._cache: dict[str, drift.DayProfile] = {}

    def get(self, key: str) -> drift.DayProfile | None:
        """The day's profile; None when the day has no clean file."""
        if key not in self.days:
            return None
        if key not in self._cache:
            self._cache[key] = self._read(key)
        return self._cache[key]

    def _read(self, key: str) -> drift.DayProfile:
        from llm_data_platform.transforms.tokenizer import count_tokens  # loads tokenizers

        rows = self.lake.count_rows("clean", ASSET, [key]) or 0
        share = min(1.0, self.token_sample / rows) if rows else 1.0  # rows ≥ its messages
        clean = self.lake.iter_partition_batches(
            "clean", ASSET, key, BATCH_ROWS, columns=CLEAN_COLUMNS
        )
        dropped: Iterator = iter(())
        columns = self._dropped_columns(key)
        if columns:
            dropped = self.lake.iter_partition_batches(
                "clean", DROPPED, key, BATCH_ROWS, columns=columns
            )
        return drift.profile_day(clean, dropped, count_tokens, share)

    def _dropped_columns(self, key: str) -> list[str]:
        """``reason``, and ``duplicate_of`` where the day's dropped file has it (days written
        before the dedup stage named representatives do not); [] without a file."""
        path = posixpath.join(self.lake.partition_path("clean", DROPPED, key), DATA_FILE)
        if not self.lake.exists(path):
            return []
        fs, _ = self.lake.filesystem()
        names = pq.read_schema(path, filesystem=fs).names
        return [c for c in ("reason", "duplicate_of") if c in names]

    def history(self, key: str, days: int) -> list[str]:
        """The existing days among the ``days`` calendar days before ``key``, oldest first."""
        day = date.fromisoformat(key)
        earlier = [(day - timedelta(days=i)).isoformat() for i in range(days, 0, -1)]
        return [k for k in earlier if k in self.days]


def histogram_entry(
    attr: str,
    today: drift.DayProfile,
    baseline: drift.DayProfile | None,
    title: str,
    *,
    with_counts: bool = False,
) -> dg.MetadataValue | None:
    """One histogram of a profile as a picture and a bin table (today's shares, beside the
    baseline's when it has any; today's counts too with ``with_counts``); None when neither
    has anything to show."""
    edges, xlabel, _ = HISTOGRAMS[attr]
    series = {}
    if baseline is not None and getattr(baseline, attr).sum():
        series["baseline"] = drift.shares(getattr(baseline, attr))
    if getattr(today, attr).sum():
        series["today"] = drift.shares(getattr(today, attr))
    if not series:
        return None
    counts = getattr(today, attr).tolist() if with_counts else None
    md = histogram_markdown(
        drift.bin_labels(edges), series, title=title, xlabel=xlabel, counts=counts
    )
    return dg.MetadataValue.md(md)


def histograms_metadata(today: drift.DayProfile) -> dict[str, dg.MetadataValue]:
    """A day's token-length, quality-score and (when the dedup stage names representatives)
    duplicate-cluster-size histograms, for the UI, each bin with its count."""
    meta: dict[str, dg.MetadataValue] = {}
    for attr, (_, xlabel, unit) in HISTOGRAMS.items():
        title = f"{xlabel} ({int(getattr(today, attr).sum())} {unit})"
        entry = histogram_entry(attr, today, None, title, with_counts=True)
        if entry is not None:
            meta[f"{attr.removesuffix('_hist')}_histogram"] = entry
    return meta


def clean_day_histograms(
    lake: LakeResource, key: str, token_sample: int = 5_000
) -> dict[str, dg.MetadataValue]:
    """A clean day's histograms as written, for its materialization metadata (one read of
    four columns); {} for a day with no clean file."""
    today = LakeProfiles(lake, token_sample).get(key)
    return {} if today is None else histograms_metadata(today)
