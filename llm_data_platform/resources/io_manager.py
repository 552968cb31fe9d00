"""IO manager that stores Arrow tables as day- or week-partitioned Parquet in the lake.

An asset says where it lives with definition metadata: ``lake_zone`` (raw, clean, curated,
serve) and optionally ``lake_sort_by`` (columns the file is sorted by, for pruning and
reproducible bytes). The table name is the asset's name.
"""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from llm_data_platform.lib.metadata import table_metadata
from llm_data_platform.resources.lake import LakeResource


def _location(definition_metadata: dict) -> tuple[str, list[str] | None]:
    zone = definition_metadata.get("lake_zone")
    if zone is None:
        raise dg.Failure(
            "This asset has no 'lake_zone' in its metadata, so the lake IO manager cannot place "
            "it. Add metadata={'lake_zone': 'raw'|'clean'|'curated'|'serve'} to the asset."
        )
    sort_by = definition_metadata.get("lake_sort_by")
    return str(zone), list(sort_by) if sort_by else None


class LakeIOManager(dg.ConfigurableIOManager):
    """Partitioned assets exchange ``dict[partition_key, pa.Table]``, so one run can process a
    whole date range (``BackfillPolicy.single_run``); unpartitioned ones a plain ``pa.Table``.

    An input declared with ``AssetIn(metadata={"allow_missing_partitions": True})`` (a week
    built from the days that exist) skips absent partitions with a warning; otherwise a
    missing upstream partition fails with the command that fixes it.
    """

    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            return
        zone, sort_by = _location(context.definition_metadata or {})
        table_name = context.asset_key.path[-1]
        if not context.has_asset_partitions:
            _require_table(table_name, obj)
            info = self.lake.write_partition(zone, table_name, "all", obj, sort_by=sort_by)
            context.add_output_metadata(table_metadata(obj, info))
            return
        keys = list(context.asset_partition_keys)
        if not isinstance(obj, dict) or set(obj) != set(keys):
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise dg.Failure(
                f"{table_name} must return one table per partition as a dict keyed by partition "
                f"for {keys}; got {got}."
            )
        for key in keys:
            _require_table(table_name, obj[key])
            info = self.lake.write_partition(zone, table_name, key, obj[key], sort_by=sort_by)
            meta = table_metadata(obj[key], info)
            if len(keys) == 1:
                context.add_output_metadata(meta)
            else:  # a range run: each day's own rows, bytes and preview on that day
                context.step_context.add_asset_metadata(
                    meta, asset_key=context.asset_key, partition_key=key
                )

    def load_input(self, context: dg.InputContext) -> object:
        upstream = context.upstream_output
        zone, _ = _location(upstream.definition_metadata or {} if upstream else {})
        table_name = context.asset_key.path[-1]
        if not context.has_asset_partitions:
            return self._read_one(zone, table_name, "all")
        keys = list(context.asset_partition_keys)
        allow_missing = bool((context.definition_metadata or {}).get("allow_missing_partitions"))
        out: dict[str, pa.Table] = {}
        missing: list[str] = []
        for key in keys:
            table = self.lake.read_partition(zone, table_name, key)
            if table is None:
                missing.append(key)
            else:
                out[key] = table
        if missing and not allow_missing:
            raise dg.Failure(
                f"{zone}/{table_name} has no data for partitions {missing}. Materialize them "
                f"first: `dagster asset materialize -m llm_data_platform --select {table_name} "
                f"--partition {missing[0]}`."
            )
        if missing:
            context.log.info(f"{table_name}: no data for {missing}; those days are skipped.")
        return out

    def _read_one(self, zone: str, table_name: str, key: str) -> pa.Table:
        result = self.lake.read_partition(zone, table_name, key)
        if result is None:
            raise dg.Failure(
                f"{zone}/{table_name} has no data. Materialize it first: "
                f"`dagster asset materialize -m llm_data_platform --select {table_name}`."
            )
        return result


def _require_table(name: str, obj: object) -> None:
    if not isinstance(obj, pa.Table):
        raise dg.Failure(
            f"{name} produced {type(obj).__name__}; the lake IO manager stores pyarrow Tables "
            "(convert with pa.Table.from_pandas(df, preserve_index=False))."
        )
