"""What is in the lake, for people: rows per table, what was dropped and why, batch files."""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field

import dagster as dg
import pyarrow.compute as pc

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.records import reason_family


def daily_tables(defs: dg.Definitions) -> list[tuple[str, str]]:
    """(zone, table) of every daily-partitioned asset stored in the lake, from the graph
    itself: a table added to the graph is reported without a list to keep in step."""
    graph = defs.resolve_asset_graph()
    out = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        zone = (node.metadata or {}).get("lake_zone")
        partitions = node.partitions_def
        daily = isinstance(partitions, dg.DailyPartitionsDefinition)
        if zone and daily:
            out.append((str(zone), key.to_user_string()))
    order = {"raw": 0, "clean": 1, "curated": 2, "serve": 3}
    return sorted(out, key=lambda zt: (order.get(zt[0], 9), zt[1]))


@dataclass
class LakeSummary:
    rows: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)

    def render(self) -> str:
        lines = ["Rows per table:"]
        for name, n in self.rows.items():
            lines.append(f"  {name:<30} {n:>8,}")
            for reason, count in sorted(self.reasons.get(name, {}).items()):
                lines.append(f"      {count:>6,}  {reason}")
        lines.append("Training batches:")
        if not self.batches:
            lines.append("  (none)")
        for week, manifest in sorted(self.batches.items()):
            for name, info in manifest["files"].items():
                lines.append(
                    f"  week {week} {name:<17} {info['examples']:>5} examples "
                    f"{info['tokens']:>8,} tokens  {manifest['path']}/{name}"
                )
        return "\n".join(lines)


def lake_summary(
    lake: LakeResource, defs: dg.Definitions, days: list[str] | None = None
) -> LakeSummary:
    summary = LakeSummary()
    for zone, table in daily_tables(defs):
        data = lake.read_partitions(zone, table, keys=days)
        summary.rows[table] = data.num_rows if data is not None else 0
        if data is not None and "reason" in data.column_names and data.num_rows:
            families = Counter(map(reason_family, data["reason"].to_pylist()))
            summary.reasons[table] = dict(families)
        if table == "documents_clean" and data is not None and data.num_rows:
            summary.reasons[table] = {
                "deletions (tombstones)": int(pc.sum(data["is_deleted"]).as_py() or 0)
            }
    for week in lake.list_partitions_any("curated", "training_batches", "week"):
        directory = lake.partition_path("curated", "training_batches", week, name="week")
        raw = lake.read_bytes(posixpath.join(directory, "manifest.json"))
        if raw:
            manifest = json.loads(raw)
            manifest["path"] = lake.uri(directory)
            summary.batches[week] = manifest
    return summary
