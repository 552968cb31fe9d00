"""Day-over-history drift of the clean conversations: a day's profile, and verdicts against
the pooled profile of the days before it. Dagster-free: the checks wire it to the lake.

A day's profile comes from the lake (the clean table and its dropped table), not from the
instance's event log: a check then gives the same verdict whatever order a backfill built the
days in, and whatever instance (a fresh DAGSTER_HOME, another deployment) runs it.

Noise: a small day differs from its baseline by chance. A rate's allowance is three standard
errors of a difference of two proportions; a distribution's is the mean plus three standard
deviations of the population-stability index (PSI) of two samples of one distribution
(PSI ≈ χ²(bins − 1) · (1/n₁ + 1/n₂)). A verdict is "drift" only beyond both the configured
threshold and that allowance, so a 100-message day does not page anyone, and on big days the
threshold alone decides.
"""

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Half-octave bins of word pieces per message: chat turns run from "ok" to pasted tracebacks,
# and fixed edges keep every day's histogram comparable (and plottable) without the history.
TOKEN_EDGES: tuple[float, ...] = (
    0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, math.inf,
)  # fmt: skip
QUALITY_EDGES: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(20)) + (math.inf,)
# Rows per duplicate cluster (the kept representative and its dropped copies), when the
# dropped table names the representative (``duplicate_of``).
CLUSTER_EDGES: tuple[float, ...] = (2, 3, 4, 6, 10, 20, 50, math.inf)
PSI_EPSILON = 1e-4  # share given to an empty bin, so PSI stays finite
NOISE_SIGMAS = 3.0


def is_dedup(reason: str) -> bool:
    """A drop for being a copy (replayed event, repeated turn, exact or near copy elsewhere);
    every other reason (empty, low_quality:*, a reason added later) is a rejection."""
    return "duplicate" in reason


def bin_labels(edges: Sequence[float]) -> list[str]:
    """``[a, b)`` labels of histogram bins, the last open-ended (``≥a``)."""
    labels = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if math.isinf(hi):
            labels.append(f"≥{lo:g}")
        elif isinstance(lo, int) and hi - lo == 1:
            labels.append(f"{lo:g}")
        else:
            labels.append(f"{lo:g}–{hi:g}")
    return labels


def histogram(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of ``values`` in ``[edges[i], edges[i+1])``; NaN is not counted."""
    values = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    idx = np.searchsorted(np.asarray(edges[1:-1], dtype=float), values, side="right")
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.int64)


def _zeros(edges: Sequence[float]) -> np.ndarray:
    return np.zeros(len(edges) - 1, np.int64)


@dataclass
class DayProfile:
    """What the drift checks compare, for one day (additive: profiles of days pool by sum)."""

    received: int = 0  # clean rows + dropped rows
    messages: int = 0  # kept message rows
    pii_messages: int = 0  # kept messages with at least one redaction
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    token_hist: np.ndarray = field(default_factory=lambda: _zeros(TOKEN_EDGES))
    quality_hist: np.ndarray = field(default_factory=lambda: _zeros(QUALITY_EDGES))
    cluster_hist: np.ndarray = field(default_factory=lambda: _zeros(CLUSTER_EDGES))

    @property
    def deduplicated(self) -> int:
        return sum(n for r, n in self.dropped.items() if is_dedup(r))

    @property
    def rejected(self) -> int:
        return sum(n for r, n in self.dropped.items() if not is_dedup(r))

    def __add__(self, other: "DayProfile") -> "DayProfile":
        return DayProfile(
            received=self.received + other.received,
            messages=self.messages + other.messages,
            pii_messages=self.pii_messages + other.pii_messages,
            dropped=self.dropped + other.dropped,
            token_hist=self.token_hist + other.token_hist,
            quality_hist=self.quality_hist + other.quality_hist,
            cluster_hist=self.cluster_hist + other.cluster_hist,
        )


def pooled(profiles: Iterable[DayProfile]) -> DayProfile:
    """The baseline: the days' profiles summed (each day weighs by its volume)."""
    total = DayProfile()
    for p in profiles:
        total = total + p
    return total


class Profiler:
    """Builds a day's profile batch by batch: from the lake (the drift checks) or from the
    chunks a clean step writes (histograms on the materialization, no second read).

    ``count_tokens(list[str]) -> list[int]`` counts an evenly spaced ``token_share`` of the
    kept messages (spacing kept across batches), so a day of millions tokenizes a bounded
    sample."""

    def __init__(self, count_tokens: Callable[[list[str]], list[int]], token_share: float = 1.0):
        self.count_tokens, self.token_share = count_tokens, min(max(token_share, 0.0), 1.0)
        self.profile = DayProfile()
        self._seen = 0

    def add_clean(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Clean rows with event_type, pii_redactions, quality_score and content."""
        p = self.profile
        p.received += batch.num_rows
        msgs = batch.filter(pc.fill_null(pc.equal(batch["event_type"], "message"), False))
        n = msgs.num_rows
        p.messages += n
        pii = pc.fill_null(msgs["pii_redactions"], 0).to_numpy(zero_copy_only=False)
        p.pii_messages += int(np.count_nonzero(pii))
        scores = msgs["quality_score"].to_numpy(zero_copy_only=False).astype(float)
        p.quality_hist += histogram(scores, QUALITY_EDGES)
        at = np.arange(self._seen, self._seen + n, dtype=np.float64)
        share = self.token_share
        take = np.flatnonzero(np.floor((at + 1) * share) > np.floor(at * share))
        if len(take):
            texts = msgs["content"].take(pa.array(take)).to_pylist()
            lengths = np.asarray(self.count_tokens(texts), dtype=float)
            p.token_hist += histogram(lengths, TOKEN_EDGES)
        self._seen += n

    def add_dropped(
        self, reasons: pa.Array | pa.ChunkedArray, duplicate_of: pa.Array | None = None
    ) -> None:
        """The ``reason`` (and, where the table has it, ``duplicate_of``) of dropped rows."""
        self.profile.received += len(reasons)
        reasons = pc.fill_null(reasons, "unknown")
        counted = pc.value_counts(reasons)
        values = counted.field("values").to_pylist()
        for value, count in zip(values, counted.field("counts").to_pylist(), strict=True):
            self.profile.dropped[value] += count
        if duplicate_of is not None:
            copies = pc.and_(pc.match_substring(reasons, "duplicate"), pc.is_valid(duplicate_of))
            per_cluster = pc.value_counts(pc.filter(duplicate_of, copies)).field("counts")
            sizes = per_cluster.to_numpy(zero_copy_only=False).astype(float) + 1
            self.profile.cluster_hist += histogram(sizes, CLUSTER_EDGES)


def profile_day(
    clean_batches: Iterable[pa.RecordBatch],
    dropped_batches: Iterable[pa.RecordBatch],
    count_tokens: Callable[[list[str]], list[int]],
    token_share: float = 1.0,
) -> DayProfile:
    """Profile of one day from its clean batches and its dropped batches (``reason``, and
    ``duplicate_of`` when the table has it)."""
    profiler = Profiler(count_tokens, token_share)
    for batch in clean_batches:
        profiler.add_clean(batch)
    for batch in dropped_batches:
        names = batch.schema.names
        profiler.add_dropped(
            batch["reason"], batch["duplicate_of"] if "duplicate_of" in names else None
        )
    return profiler.profile


@dataclass(frozen=True)
class Verdict:
    """One metric of one day against its baseline."""

    value: float | None  # today's rate or PSI
    baseline: float | None  # the baseline rate (None for a distribution: PSI's baseline is 0)
    threshold: float  # configured largest change (rate points, or PSI)
    allowance: float  # what chance alone explains at these volumes
    passed: bool
    verdict: str  # "ok", "drift", or why no comparison was made


def no_comparison(threshold: float, why: str, value: float | None = None) -> Verdict:
    """A day that cannot be compared passes: a warning needs evidence."""
    return Verdict(value, None, threshold, 0.0, True, why)


def compare_rate(num: int, den: int, base_num: int, base_den: int, max_change: float) -> Verdict:
    """Today's ``num/den`` against the baseline's pooled rate, in absolute rate points."""
    if den == 0:
        return no_comparison(max_change, "no rows today")
    rate = num / den
    if base_den == 0:
        return no_comparison(max_change, "no rows in the baseline", rate)
    base = base_num / base_den
    pooled_p = (num + base_num) / (den + base_den)
    allowance = NOISE_SIGMAS * math.sqrt(pooled_p * (1 - pooled_p) * (1 / den + 1 / base_den))
    drifted = abs(rate - base) > max(max_change, allowance)
    return Verdict(rate, base, max_change, allowance, not drifted, "drift" if drifted else "ok")


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population-stability index of ``actual`` against ``expected`` (counts per bin)."""
    e = np.maximum(expected / max(expected.sum(), 1), PSI_EPSILON)
    a = np.maximum(actual / max(actual.sum(), 1), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_allowance(bins: int, n_today: int, n_base: int) -> float:
    """Mean + 3 sd of PSI between two samples of one distribution (χ² approximation)."""
    dof = max(bins - 1, 1)
    return (dof + NOISE_SIGMAS * math.sqrt(2 * dof)) * (1 / n_today + 1 / n_base)


def compare_distribution(today: np.ndarray, base: np.ndarray, max_psi: float) -> Verdict:
    """Today's histogram against the baseline's, by PSI over the bins either one uses."""
    n_today, n_base = int(today.sum()), int(base.sum())
    if n_today == 0:
        return no_comparison(max_psi, "no messages today")
    if n_base == 0:
        return no_comparison(max_psi, "no messages in the baseline")
    value = psi(base, today)
    used = int(np.count_nonzero((today + base) > 0))
    allowance = psi_allowance(used, n_today, n_base)
    drifted = value > max(max_psi, allowance)
    return Verdict(value, None, max_psi, allowance, not drifted, "drift" if drifted else "ok")


def shares(counts: np.ndarray) -> list[float]:
    """Counts as shares of their total (zeros for an empty histogram)."""
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]
