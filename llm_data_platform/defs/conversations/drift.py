"""Drift of conversations_clean against earlier days: non-blocking checks that warn.

One step evaluates five checks together (a ``multi_asset_check``), so each day of the lake is
profiled once per run, not once per check: dedup rate, PII hit rate, rejection rate (rates
against the pooled rate of up to ``history_days`` earlier days) and the token-length and
quality-score distributions (PSI against the pooled histogram). The history comes from the
lake (``lib/drift_lake.py``; the statistics are ``lib/drift.py``), so a backfill of a range
judges every day of it against the days before it, whichever run built them. A range run
gives one result per check: the first drifted day (else the last) heads it, and every day
has a row of ``per_day``.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg

from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.lib import drift
from llm_data_platform.lib.drift_lake import ASSET, HISTOGRAMS, LakeProfiles, histogram_entry
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.settings import Settings


class DriftSettings(dg.ConfigurableResource):
    """Thresholds of the drift checks (LDP_DRIFT_*), bound to the checks that use them."""

    history_days: int = 7  # a week: weekday and weekend traffic both in the baseline
    min_history_days: int = 3  # a baseline of one or two days is mostly their own noise
    max_dedup_change: float = 0.05  # absolute change in rate, beyond chance
    max_pii_change: float = 0.02
    max_rejection_change: float = 0.05
    max_psi: float = 0.2  # PSI rule of thumb: < 0.1 stable, 0.1-0.25 shifting, > 0.25 moved
    token_sample: int = 5_000  # messages tokenized per day: PSI noise at 5k is ~0.01 << 0.2


def drift_settings(settings: Settings) -> DriftSettings:
    return DriftSettings(
        history_days=settings.drift_history_days,
        min_history_days=settings.drift_min_history_days,
        max_dedup_change=settings.drift_max_dedup_change,
        max_pii_change=settings.drift_max_pii_change,
        max_rejection_change=settings.drift_max_rejection_change,
        max_psi=settings.drift_max_psi,
        token_sample=settings.drift_token_sample,
    )


Judge = Callable[[drift.DayProfile, drift.DayProfile, DriftSettings], drift.Verdict]


@dataclass(frozen=True)
class Metric:
    """One drift check: its name, what it measures, how a day is judged, what is plotted."""

    check: str
    what: str
    judge: Judge
    histogram: str | None = None  # DayProfile attribute of a distribution metric
    plot: str | None = None  # DayProfile histogram shown beside a rate (not judged)


METRICS: tuple[Metric, ...] = (
    Metric(
        "conversations_clean_dedup_rate_drift",
        "share of received events dropped as replays or repeated turns",
        lambda t, b, s: drift.compare_rate(
            t.deduplicated, t.received, b.deduplicated, b.received, s.max_dedup_change
        ),
        plot="cluster_hist",
    ),
    Metric(
        "conversations_clean_pii_rate_drift",
        "share of kept messages with at least one PII redaction",
        lambda t, b, s: drift.compare_rate(
            t.pii_messages, t.messages, b.pii_messages, b.messages, s.max_pii_change
        ),
    ),
    Metric(
        "conversations_clean_rejection_rate_drift",
        "share of received events rejected as empty or low quality",
        lambda t, b, s: drift.compare_rate(
            t.rejected, t.received, b.rejected, b.received, s.max_rejection_change
        ),
    ),
    Metric(
        "conversations_clean_token_length_drift",
        "distribution of word pieces per kept message (PSI)",
        lambda t, b, s: drift.compare_distribution(t.token_hist, b.token_hist, s.max_psi),
        histogram="token_hist",
    ),
    Metric(
        "conversations_clean_quality_score_drift",
        "distribution of quality scores of kept messages (PSI)",
        lambda t, b, s: drift.compare_distribution(t.quality_hist, b.quality_hist, s.max_psi),
        histogram="quality_hist",
    ),
)


@dataclass(frozen=True)
class DayVerdict:
    key: str
    history: list[str]
    verdict: drift.Verdict
    today: drift.DayProfile | None
    baseline: drift.DayProfile


def judge_days(
    profiles: LakeProfiles, keys: list[str], settings: DriftSettings
) -> dict[str, list[DayVerdict]]:
    """Every metric's verdict on every day of ``keys``, each against its own earlier days."""
    out: dict[str, list[DayVerdict]] = {m.check: [] for m in METRICS}
    for key in keys:
        today = profiles.get(key)
        history = profiles.history(key, settings.history_days)
        baseline = drift.pooled(p for k in history if (p := profiles.get(k)) is not None)
        for metric in METRICS:
            if today is None:
                verdict = drift.Verdict(None, None, 0.0, 0.0, False, "partition missing")
            else:
                verdict = metric.judge(today, baseline, settings)
                if len(history) < settings.min_history_days:
                    why = f"no baseline: {len(history)} of {settings.min_history_days} days"
                    verdict = replace(verdict, passed=True, verdict=why)
            out[metric.check].append(DayVerdict(key, history, verdict, today, baseline))
    return out


def _fmt(value: float | None, distribution: bool) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if distribution else f"{value:.2%}"


def _per_day_markdown(days: list[DayVerdict], distribution: bool) -> str:
    lines = [
        "| day | value | baseline | threshold | noise allowance | earlier days | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for d in days:
        v = d.verdict
        base = "–" if distribution else _fmt(v.baseline, False)
        limits = f"±{_fmt(v.threshold, distribution)} | ±{_fmt(v.allowance, distribution)}"
        lines.append(
            f"| {d.key} | {_fmt(v.value, distribution)} | {base} | {limits} "
            f"| {len(d.history)} | {v.verdict} |"
        )
    return "\n".join(lines)


def _baseline_entry(head: DayVerdict, metric: Metric) -> Any:
    """The baseline rate; for a distribution (PSI is 0 against itself), what it pooled."""
    if metric.histogram is None:
        v = head.verdict.baseline
        return dg.MetadataValue.float(v) if v is not None else "none"
    n = int(getattr(head.baseline, metric.histogram).sum())
    return f"histogram of {n} messages over {len(head.history)} earlier days"


def _result(metric: Metric, days: list[DayVerdict]) -> dg.AssetCheckResult:
    """One check's result over the run's days: the first drifted (else last) day heads it."""
    failed = [d for d in days if not d.verdict.passed]
    head = failed[0] if failed else days[-1]
    v, distribution = head.verdict, metric.histogram is not None
    meta: dict[str, Any] = {
        "day": head.key,
        "value": dg.MetadataValue.float(v.value) if v.value is not None else "none",
        "baseline": _baseline_entry(head, metric),
        "threshold": dg.MetadataValue.float(v.threshold),
        "noise_allowance": dg.MetadataValue.float(round(v.allowance, 6)),
        "verdict": v.verdict,
        "baseline_days": dg.MetadataValue.json(head.history),
        "measures": metric.what,
        "days_checked": len(days),
        "days_drifted": dg.MetadataValue.json([d.key for d in failed]),
        "per_day": dg.MetadataValue.md(_per_day_markdown(days, distribution)),
    }
    if metric.check == "conversations_clean_rejection_rate_drift" and head.today is not None:
        meta["dropped_by_reason"] = dg.MetadataValue.json(
            {"today": dict(head.today.dropped), "baseline": dict(head.baseline.dropped)}
        )
    shown = metric.histogram or metric.plot
    if shown and head.today is not None:
        xlabel = HISTOGRAMS[shown][1]
        title = f"{xlabel}: {head.key} vs {len(head.history)} earlier days"
        entry = histogram_entry(shown, head.today, head.baseline, title)
        if entry is not None:
            meta[shown.replace("_hist", "_histogram")] = entry
    value = _fmt(v.value, distribution)
    return dg.AssetCheckResult(
        check_name=metric.check,
        asset_key=ASSET,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=meta,
        description=f"{head.key}: {value} ({v.verdict})",
    )


def conversations_clean_drift(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, drift_settings: DriftSettings
) -> Iterator[dg.AssetCheckResult]:
    """Warns when a clean day's dedup, PII or rejection rate, or its token-length or quality
    distribution, moved away from the days before it (see the module doc)."""
    keys = list(context.partition_keys)
    profiles = LakeProfiles(lake, drift_settings.token_sample)
    verdicts = judge_days(profiles, keys, drift_settings)
    for metric in METRICS:
        yield _result(metric, verdicts[metric.check])


def drift_checks(partitions: Partitions, settings: Settings) -> list[dg.AssetChecksDefinition]:
    """The five drift checks, one step, non-blocking, with their thresholds bound."""
    specs = [
        dg.AssetCheckSpec(
            m.check,
            asset=ASSET,
            blocking=False,
            partitions_def=partitions.daily,
            description=f"Drift of the {m.what} against earlier days (warns).",
        )
        for m in METRICS
    ]
    check = dg.multi_asset_check(
        name="conversations_clean_drift",
        specs=specs,
        resource_defs={"drift_settings": drift_settings(settings)},
    )(conversations_clean_drift)
    return [check]
