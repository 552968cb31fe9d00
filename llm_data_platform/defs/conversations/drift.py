"""Drift of conversations_clean against earlier days: non-blocking checks that warn.

One step evaluates five checks together (a ``multi_asset_check``), so each day of the lake is
profiled once per run, not once per check: dedup rate, PII hit rate, rejection rate (rates
against the pooled rate of up to ``history_days`` earlier days) and the token-length and
quality-score distributions (PSI against the pooled histogram). The history comes from the
lake (``lib/drift_lake.py``; the statistics are ``lib/drift.py``), so a backfill of a range
judges every day of it against the days before it, whichever run built them. A range run
records one evaluation per check and day, each with its partition.
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


def _baseline_entry(day: DayVerdict, metric: Metric) -> Any:
    """The baseline rate; for a distribution (PSI is 0 against itself), what it pooled."""
    if metric.histogram is None:
        v = day.verdict.baseline
        return dg.MetadataValue.float(v) if v is not None else "none"
    n = int(getattr(day.baseline, metric.histogram).sum())
    return f"histogram of {n} messages over {len(day.history)} earlier days"


@dataclass(frozen=True)
class DayResult:
    """One check's verdict on one day, as the UI shows it."""

    check: str
    key: str
    passed: bool
    metadata: dict[str, Any]
    description: str


def _day_result(metric: Metric, day: DayVerdict) -> DayResult:
    v, distribution = day.verdict, metric.histogram is not None
    meta: dict[str, Any] = {
        "value": dg.MetadataValue.float(v.value) if v.value is not None else "none",
        "baseline": _baseline_entry(day, metric),
        "threshold": dg.MetadataValue.float(v.threshold),
        "noise_allowance": dg.MetadataValue.float(round(v.allowance, 6)),
        "verdict": v.verdict,
        "baseline_days": dg.MetadataValue.json(day.history),
        "measures": metric.what,
    }
    if metric.check == "conversations_clean_rejection_rate_drift" and day.today is not None:
        meta["dropped_by_reason"] = dg.MetadataValue.json(
            {"today": dict(day.today.dropped), "baseline": dict(day.baseline.dropped)}
        )
    shown = metric.histogram or metric.plot
    if shown and day.today is not None:
        xlabel = HISTOGRAMS[shown][1]
        title = f"{xlabel}: {day.key} vs {len(day.history)} earlier days"
        entry = histogram_entry(shown, day.today, day.baseline, title)
        if entry is not None:
            meta[shown.replace("_hist", "_histogram")] = entry
    limits = f"threshold ±{_fmt(v.threshold, distribution)}"
    text = f"{_fmt(v.value, distribution)} ({v.verdict}; {limits})"
    return DayResult(metric.check, day.key, v.passed, meta, text)


def evaluate_drift(lake: LakeResource, keys: list[str], settings: DriftSettings) -> list[DayResult]:
    """Every check's result on every day of ``keys`` (each day profiled once)."""
    verdicts = judge_days(LakeProfiles(lake, settings.token_sample), keys, settings)
    return [_day_result(m, day) for m in METRICS for day in verdicts[m.check]]


def _target(context: dg.AssetCheckExecutionContext, key: str):
    """The materialization of ``key`` a day's evaluation is about (what AssetCheckResult
    records for a single partition)."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(ASSET), asset_partitions=[key]), limit=1
    ).records
    if not records:
        return None
    mat = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=mat.event_log_entry.run_id, storage_id=mat.storage_id, timestamp=mat.timestamp
    )


def conversations_clean_drift(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, drift_settings: DriftSettings
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
    """Warns when a clean day's dedup, PII or rejection rate, or its token-length or quality
    distribution, moved away from the days before it (see the module doc).

    A range run (a backfill) records one evaluation per day: an AssetCheckResult there would
    be one evaluation without a partition, and Dagster 1.13 marks every day of the range
    "skipped". So each day is an AssetCheckEvaluation with its partition, and the step then
    yields the checks' (empty) outputs itself."""
    keys = list(context.partition_keys)
    results = evaluate_drift(lake, keys, drift_settings)
    warn = dg.AssetCheckSeverity.WARN
    if len(keys) == 1:
        for r in results:
            yield dg.AssetCheckResult(
                check_name=r.check, asset_key=ASSET, passed=r.passed, severity=warn,
                metadata=r.metadata, description=r.description,
            )  # fmt: skip
        return
    for r in results:
        yield dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(ASSET), check_name=r.check, passed=r.passed, severity=warn,
            metadata=r.metadata, description=r.description, blocking=False, partition=r.key,
            target_materialization_data=_target(context, r.key),
        )  # fmt: skip
    for output_name in context.op_execution_context.assets_def.check_specs_by_output_name:
        yield dg.Output(None, output_name=output_name)


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
