"""Which partitions a partitioned check is looking at (one key, or a backfill's range)."""

import dagster as dg


def checked_keys(context: dg.AssetCheckExecutionContext) -> list[str]:
    try:
        return list(context.partition_keys)
    except Exception:  # noqa: BLE001 - older contexts expose only partition_key
        return [context.partition_key]
