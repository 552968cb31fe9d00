"""Quality gates on the conversation tables. Blocking checks stop bad data flowing on."""

from collections import Counter

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.defs.conversations.drift import drift_checks
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.settings import Settings
from llm_data_platform.transforms.expectations import (
    CONVERSATIONS_CLEAN_MESSAGES,
    validate_arrow_batches,
    validate_gx,
)
from llm_data_platform.transforms.pii import redact_pii

MAX_QUARANTINE_RATE = 0.10


def _read(lake: LakeResource, zone: str, table: str, keys: list[str]) -> pa.Table | None:
    return lake.read_partitions(zone, table, keys=keys)


def raw_conversations_quarantine_rate(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Warns when more than 10% of a day's lines are malformed: an upstream producer broke."""
    keys = list(context.partition_keys)
    n_kept = lake.count_rows("raw", "raw_conversations", keys) or 0
    n_bad = lake.count_rows("raw", "raw_conversations_quarantine", keys) or 0
    rate = n_bad / (n_kept + n_bad) if n_kept + n_bad else 0.0
    return dg.AssetCheckResult(
        passed=rate <= MAX_QUARANTINE_RATE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantine_rate": round(rate, 4), "quarantined": n_bad, "kept": n_kept},
    )


def conversations_clean_has_no_pii(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Re-scans the clean text with the PII detectors: any hit blocks training and indexing.
    Read in record batches: a day of millions of messages is never held whole."""
    keys = list(context.partition_keys)
    if lake.count_rows("clean", "conversations_clean", keys) is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "partition missing"})
    leaks: Counter[str] = Counter()
    scanned = 0
    for key in keys:
        if lake.count_rows("clean", "conversations_clean", [key]) is None:
            continue
        for batch in lake.iter_partition_batches(
            "clean", "conversations_clean", key, 100_000, columns=["content"]
        ):
            leaks.update({k: v for k, v in redact_pii(batch["content"]).counts.items() if v})
            scanned += batch.num_rows
    return dg.AssetCheckResult(
        passed=not leaks,
        metadata={"rows_scanned": scanned, "pii_found": dict(leaks) or {"none": 0}},
    )


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
        counts[table] = lake.count_rows(zone, table, keys) or 0
    raw = counts["raw_conversations"]
    accounted = counts["conversations_clean"] + counts["conversations_clean_dropped"]
    return dg.AssetCheckResult(passed=raw == accounted, metadata={**counts, "accounted": accounted})


def conversations_clean_expectations(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, pipeline: PipelineSettings
) -> dg.AssetCheckResult:
    """Column expectations of the clean messages, by the configured engine (Arrow kernels by
    default; Great Expectations with LDP_EXPECTATIONS_ENGINE=great_expectations)."""
    keys = list(context.partition_keys)
    if lake.count_rows("clean", "conversations_clean", keys) is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "partition missing"})
    columns = ["event_type", *sorted({e.column for e in CONVERSATIONS_CLEAN_MESSAGES})]

    def messages():
        for key in keys:
            if lake.count_rows("clean", "conversations_clean", [key]) is None:
                continue
            for batch in lake.iter_partition_batches(
                "clean", "conversations_clean", key, 100_000, columns=columns
            ):
                yield batch.filter(pc.equal(batch["event_type"], "message"))

    if pipeline.expectations_engine == "great_expectations":
        whole = pa.Table.from_batches(list(messages()))  # GX validates a whole frame
        outcomes = validate_gx(whole, CONVERSATIONS_CLEAN_MESSAGES)
    else:
        outcomes = validate_arrow_batches(messages(), CONVERSATIONS_CLEAN_MESSAGES)
    rows = lake.count_rows("clean", "conversations_clean", keys)
    failed = [o.expectation.name for o in outcomes if not o.passed]
    return dg.AssetCheckResult(
        passed=not failed,
        metadata={
            "engine": pipeline.expectations_engine,
            "expectations": len(outcomes),
            "failed": failed or ["none"],
            "unexpected_rows": {o.expectation.name: o.unexpected for o in outcomes},
            "rows": rows,
        },
    )


def conversation_checks(
    partitions: Partitions, settings: Settings
) -> list[dg.AssetChecksDefinition]:
    """The conversation tables' checks, on the code location's partitions: the gates, then
    the drift checks (non-blocking, thresholds from ``settings``)."""
    return [
        dg.asset_check(asset="raw_conversations", partitions_def=partitions.daily)(
            raw_conversations_quarantine_rate
        ),
        dg.asset_check(asset="conversations_clean", blocking=True, partitions_def=partitions.daily)(
            conversations_clean_has_no_pii
        ),
        dg.asset_check(asset="conversations_clean", blocking=True, partitions_def=partitions.daily)(
            conversations_clean_reconciles_with_raw
        ),
        dg.asset_check(asset="conversations_clean", partitions_def=partitions.daily)(
            conversations_clean_expectations
        ),
        *drift_checks(partitions, settings),
    ]
