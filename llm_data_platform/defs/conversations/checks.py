"""Quality gates on the conversation tables. Blocking checks stop bad data flowing on."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.defs.partitions import daily_partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.transforms.expectations import (
    CONVERSATIONS_CLEAN_MESSAGES,
    validate_arrow,
    validate_gx,
)
from llm_data_platform.transforms.pii import redact_pii

MAX_QUARANTINE_RATE = 0.10


def _read(lake: LakeResource, zone: str, table: str, keys: list[str]) -> pa.Table | None:
    return lake.read_partitions(zone, table, keys=keys)


@dg.asset_check(asset="raw_conversations", partitions_def=daily_partitions)
def raw_conversations_quarantine_rate(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Warns when more than 10% of a day's lines are malformed: an upstream producer broke."""
    keys = list(context.partition_keys)
    kept = _read(lake, "raw", "raw_conversations", keys)
    bad = _read(lake, "raw", "raw_conversations_quarantine", keys)
    n_kept = kept.num_rows if kept is not None else 0
    n_bad = bad.num_rows if bad is not None else 0
    rate = n_bad / (n_kept + n_bad) if n_kept + n_bad else 0.0
    return dg.AssetCheckResult(
        passed=rate <= MAX_QUARANTINE_RATE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantine_rate": round(rate, 4), "quarantined": n_bad, "kept": n_kept},
    )


@dg.asset_check(asset="conversations_clean", blocking=True, partitions_def=daily_partitions)
def conversations_clean_has_no_pii(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Re-scans the clean text with the PII detectors: any hit blocks training and indexing."""
    table = _read(lake, "clean", "conversations_clean", list(context.partition_keys))
    if table is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "partition missing"})
    result = redact_pii(table["content"])
    leaks = {k: v for k, v in result.counts.items() if v}
    return dg.AssetCheckResult(
        passed=not leaks,
        metadata={"rows_scanned": table.num_rows, "pii_found": leaks or {"none": 0}},
    )


@dg.asset_check(asset="conversations_clean", blocking=True, partitions_def=daily_partitions)
def conversations_clean_reconciles_with_raw(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Every raw event is either kept or in the dropped table with a reason: nothing vanishes."""
    keys = list(context.partition_keys)
    counts = {}
    for zone, table in (
        ("raw", "raw_conversations"),
        ("clean", "conversations_clean"),
        ("clean", "conversations_clean_dropped"),
    ):
        t = _read(lake, zone, table, keys)
        counts[table] = t.num_rows if t is not None else 0
    raw = counts["raw_conversations"]
    accounted = counts["conversations_clean"] + counts["conversations_clean_dropped"]
    return dg.AssetCheckResult(passed=raw == accounted, metadata={**counts, "accounted": accounted})


@dg.asset_check(asset="conversations_clean", partitions_def=daily_partitions)
def conversations_clean_expectations(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, pipeline: PipelineSettings
) -> dg.AssetCheckResult:
    """Column expectations of the clean messages, by the configured engine (Arrow kernels by
    default; Great Expectations with LDP_EXPECTATIONS_ENGINE=great_expectations)."""
    table = _read(lake, "clean", "conversations_clean", list(context.partition_keys))
    if table is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "partition missing"})
    messages = table.filter(pc.equal(table["event_type"], "message"))
    engine = validate_gx if pipeline.expectations_engine == "great_expectations" else None
    outcomes = (engine or validate_arrow)(messages, CONVERSATIONS_CLEAN_MESSAGES)
    failed = [o.expectation.name for o in outcomes if not o.passed]
    return dg.AssetCheckResult(
        passed=not failed,
        metadata={
            "engine": pipeline.expectations_engine,
            "expectations": len(outcomes),
            "failed": failed or ["none"],
            "unexpected_rows": {o.expectation.name: o.unexpected for o in outcomes},
            "rows": messages.num_rows,
        },
    )


CONVERSATION_CHECKS = [
    raw_conversations_quarantine_rate,
    conversations_clean_has_no_pii,
    conversations_clean_reconciles_with_raw,
    conversations_clean_expectations,
]
