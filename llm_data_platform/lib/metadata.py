"""Materialization metadata shared by every asset: rows, bytes, timing, a preview."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pyarrow as pa

PREVIEW_ROWS = 5
PREVIEW_CHARS = 120
# Columns that hold what a user wrote (a message, a raw line, a training example). Previews
# show their length, never their text: the event log cannot be purged by user, so what a
# user wrote must never enter it (``ldp forget`` then has nothing to miss there).
USER_TEXT_COLUMNS = frozenset({"content", "record", "messages_json"})


def preview_markdown(table: pa.Table, rows: int = PREVIEW_ROWS) -> str:
    """A Markdown table of the first rows, long strings shortened so the UI stays readable,
    user text replaced by its length."""
    head = table.slice(0, rows).to_pylist()
    if not head:
        return "_(empty)_"
    columns = table.column_names

    def cell(value: Any, column: str) -> str:
        if column in USER_TEXT_COLUMNS and value is not None:
            return f"‹{len(str(value))} chars›"
        text = "" if value is None else str(value)
        text = text.replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c], c) for c in columns) + " |" for r in head]
    return "\n".join(lines)


def table_metadata(table: pa.Table, info: Any | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dagster/row_count": table.num_rows,
        "preview": dg.MetadataValue.md(preview_markdown(table)),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(f.name, str(f.type)) for f in table.schema]
        ),
    }
    if info is not None:
        meta["bytes"] = info.bytes
        meta["write_seconds"] = round(info.seconds, 3)
        meta["path"] = dg.MetadataValue.path(info.uri)
    return meta


def counts_metadata(counts: dict[str, int | float], prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in sorted(counts.items())}


def commit_partition_tables(
    context: Any, lake: Any, key: str, tables: dict[str, tuple[str, pa.Table, list[str] | None]]
) -> None:
    """Partition ``key`` of several assets of one step, ``{asset: (zone, table, sort_by)}``,
    written as ONE lake commit (all new or all old after a crash), each asset's table
    metadata recorded on its partition. The step then outputs None for them."""
    import posixpath

    from llm_data_platform.resources.lake import DATA_FILE, WriteInfo

    commit = lake.commit()
    infos: dict[str, WriteInfo] = {}
    for asset, (zone, table, sort_by) in tables.items():
        path = posixpath.join(lake.partition_path(zone, asset, key), DATA_FILE)
        size = commit.add_table(path, table, sort_by)
        infos[asset] = WriteInfo(lake.uri(path), table.num_rows, size, 0.0)
    commit.apply()
    for asset, (_, table, _) in tables.items():
        meta = table_metadata(table, infos[asset])
        context.add_asset_metadata(meta, asset_key=asset, partition_key=key)
