"""conversations_history_duplicates: duplicate groups across every day of the dedup index.

The clean step compares day D with the ``LDP_DEDUP_HISTORY_DAYS`` days before it. This asset
reads ALL days of its index tables (``conversations_content_hashes``,
``conversations_near_dup_signatures``; deps, scanned as Parquet, never through the IO
manager) and finds what that window cannot see: a message or conversation copied from weeks
or months before, and copies a day missed because it was cleaned before the day it copies
(an out-of-order backfill). The index holds only what each day kept, so nothing here repeats
a drop the day step made already. Rule and parameters: ``transforms/history_duplicates.py``;
the parameters are the clean step's (the signatures' ``params`` must match them, others are
counted as skipped, as the day step skips them).

Unpartitioned: the result is a function of every day at once; a daily or weekly partition
would re-read all earlier days anyway, and groups span partitions. It is written whole, as
one lake commit, at ``clean/conversations_history_duplicates/dt=all/`` (where the IO manager
keeps unpartitioned tables). Materialized on demand (after a backfill or a rule change, or
on a schedule of your choice): a run costs a scan of the whole history.

Engine: ``LDP_HISTORY_ENGINE`` (the ``history_engine`` resource), ``local`` (numpy/Arrow in
the step's process) or ``spark`` (pyspark DataFrames over the same files; a local lake only,
see ``transforms/history_duplicates_spark.py``). Both give the same table.
"""

import posixpath
import time
from collections import Counter

import dagster as dg
import pyarrow as pa

from llm_data_platform.defs.conversations.dedup_history import CONTENT_HASHES, NEAR_DUP_SIGNATURES
from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.lake import DATA_FILE, LakeResource
from llm_data_platform.resources.spark import ENGINES, HistoryEngineResource
from llm_data_platform.transforms.cross_dedup import DedupConfig
from llm_data_platform.transforms.history_duplicates import (
    HISTORY_DUPLICATES,
    SORT_KEYS,
    HistoryResult,
    ScopeParams,
    history_duplicates,
    scope_params,
)

HISTORY_DUPLICATES_TABLE = "conversations_history_duplicates"
HASH_COLUMNS = ["event_id", "content_hash"]


def _read(lake: LakeResource, table: str, columns: list[str]) -> pa.Table | None:
    """Every day of an index table, with its ``dt``."""
    dataset = lake.dataset("clean", table)
    return None if dataset is None else dataset.to_table(columns=["dt", *columns])


def _run_local(lake: LakeResource, scopes: tuple[ScopeParams, ScopeParams]) -> HistoryResult:
    """The hashes read whole; the signatures (most of the bytes) one scope at a time."""
    hashes = _read(lake, CONTENT_HASHES, HASH_COLUMNS)
    return history_duplicates(hashes, lake.dataset("clean", NEAR_DUP_SIGNATURES), scopes)


def _run_spark(
    lake: LakeResource, engine: HistoryEngineResource, scopes: tuple[ScopeParams, ScopeParams]
) -> HistoryResult:
    from llm_data_platform.transforms.history_duplicates_spark import history_duplicates_spark

    if lake.is_remote:
        raise dg.Failure(
            f"LDP_HISTORY_ENGINE=spark reads the lake's files through Hadoop, and the lake is "
            f"{lake.root}: Spark needs Hadoop's object-store connector for it (hadoop-aws and "
            "the AWS SDK bundle for s3://, the GCS connector for gs://, matching pyspark's "
            "Hadoop version, with spark.hadoop.fs.* credentials), which pyspark does not ship "
            "and this project does not configure. Run it with LDP_HISTORY_ENGINE=local (it "
            "reads remote lakes), or run Spark against a local or mounted LDP_LAKE_ROOT."
        )

    def folder(table: str) -> str | None:
        return lake.table_path("clean", table) if lake.list_partitions("clean", table) else None

    spark = engine.session()
    return history_duplicates_spark(
        spark, folder(CONTENT_HASHES), folder(NEAR_DUP_SIGNATURES), scopes
    )


def _write(lake: LakeResource, table: pa.Table) -> tuple[str, int]:
    """The whole table as one lake commit; (its uri, bytes)."""
    path = posixpath.join(lake.partition_path("clean", HISTORY_DUPLICATES_TABLE, "all"), DATA_FILE)
    commit = lake.commit()
    size = commit.add_table(path, table, sort_by=SORT_KEYS)
    commit.apply()
    return lake.uri(path), size


def _days(lake: LakeResource) -> list[str]:
    days = set(lake.list_partitions("clean", CONTENT_HASHES))
    return sorted(days | set(lake.list_partitions("clean", NEAR_DUP_SIGNATURES)))


def history_duplicates_asset(dedup: DedupConfig) -> dg.AssetsDefinition:
    """The asset, with the clean step's dedup parameters (``dedup``)."""
    scopes = scope_params(dedup)

    @dg.asset(
        name=HISTORY_DUPLICATES_TABLE,
        deps=[CONTENT_HASHES, NEAR_DUP_SIGNATURES],
        group_name="clean",
        kinds={"parquet", "spark"},
        description="Duplicate groups across every day of the dedup index (exact by content "
        "hash, near by LSH and signature agreement): copies further apart than the clean "
        "step's history window. Engine: LDP_HISTORY_ENGINE (local or spark).",
        metadata={"lake_zone": "clean", "lake_sort_by": SORT_KEYS},
    )
    def conversations_history_duplicates(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        history_engine: HistoryEngineResource,
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        days = _days(lake)
        if history_engine.engine not in ENGINES:
            raise dg.Failure(
                f"history_engine.engine={history_engine.engine!r}: use one of {list(ENGINES)} "
                "(LDP_HISTORY_ENGINE)."
            )
        if history_engine.engine == "spark":
            result = _run_spark(lake, history_engine, scopes)
        else:
            result = _run_local(lake, scopes)
        table = result.table.cast(HISTORY_DUPLICATES)
        computed = time.perf_counter() - started
        uri, size = _write(lake, table)
        by_kind = Counter(
            f"{s}/{k}"
            for s, k in zip(table["scope"].to_pylist(), table["kind"].to_pylist(), strict=True)
        )
        context.log.info(
            f"{history_engine.engine}: {result.counts['groups']} groups, "
            f"{table.num_rows} members over {len(days)} days in {computed:.1f} s"
        )
        return dg.MaterializeResult(
            metadata={
                **{k: int(v) for k, v in sorted(result.counts.items())},
                "days_scanned": len(days),
                "first_day": days[0] if days else "",
                "last_day": days[-1] if days else "",
                "engine": history_engine.engine,
                "members_by_kind": dg.MetadataValue.json(dict(sorted(by_kind.items()))),
                "params": dg.MetadataValue.json({p.scope: vars(p) for p in scopes}),
                "dagster/row_count": table.num_rows,
                "compute_seconds": round(computed, 3),
                "seconds": round(time.perf_counter() - started, 3),
                "bytes": size,
                "path": dg.MetadataValue.path(uri),
                "preview": dg.MetadataValue.md(preview_markdown(table)),
            }
        )

    return conversations_history_duplicates
