"""The history-wide duplicates of ``history_duplicates`` on Apache Spark (pyspark DataFrames).

Same rule, same result table (the module doc of ``history_duplicates``): Spark does the part
that grows with the history — scanning every day's Parquet files, exploding each signature
into its LSH bands, the per-bucket windows (earliest node, node before), the joins that fetch
both signatures of a candidate pair and the agreement test — and hands the verified pairs
(the duplicates: a small share of the rows) to the driver, where ``group_members`` makes the
groups, the code the in-process engine runs. One more Spark join then fetches each member's
and representative's content hash and signatures for the kind and similarity.

Paths: Spark reads the table folders itself (``<lake>/clean/<table>/dt=<day>/``, the
``dt`` column from the folder names; the dot-named pending files of an unfinished commit are
skipped, as every reader of the lake skips them). That is a local lake, or a path every
executor sees under the same name (a shared mount). An ``s3://`` or ``gs://`` lake would need
Hadoop's object-store connectors (``hadoop-aws`` + the AWS SDK bundle, or the GCS connector,
matching pyspark's Hadoop) on the classpath and ``spark.hadoop.fs.s3a.*`` credentials: they do
not ship with pyspark, so the asset refuses a remote lake with ``LDP_HISTORY_ENGINE=spark``.

pyspark is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from llm_data_platform.transforms.history_duplicates import (
    EDGES,
    HistoryResult,
    ScopeParams,
    count_groups,
    finish,
    group_members,
    sort_result,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


def _read(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.option("basePath", path).parquet(path)


def _node(prefix: str = "") -> Column:
    from pyspark.sql import functions as F

    return F.struct(F.col(f"{prefix}dt").alias("dt"), F.col(f"{prefix}id").alias("id"))


def _flat(pairs: DataFrame) -> DataFrame:
    """Struct pairs ``a``, ``b`` -> the ``EDGES`` columns."""
    from pyspark.sql import functions as F

    return pairs.select(
        F.col("a.dt").alias("a_dt"),
        F.col("a.id").alias("a_id"),
        F.col("b.dt").alias("b_dt"),
        F.col("b.id").alias("b_id"),
    )


def _exact_edges(hashes: DataFrame) -> DataFrame:
    """Each message to the earliest message of its content hash, across days."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    t = hashes.where(F.col("content_hash").isNotNull()).select(
        "dt", F.col("event_id").alias("id"), "content_hash"
    )
    first = F.first(_node()).over(Window.partitionBy("content_hash").orderBy("dt", "id"))
    pairs = t.select(first.alias("a"), _node().alias("b"))
    return _flat(pairs.where(F.col("a.dt") != F.col("b.dt")))


def _comparable(signatures: DataFrame, params: ScopeParams) -> DataFrame:
    from pyspark.sql import functions as F

    keep = (
        (F.col("scope") == params.scope)
        & (F.col("params") == params.fingerprint)
        & (F.size("signature") == params.num_perm)
    )
    return signatures.where(keep).select("dt", "id", "signature")


def _agreement(left: str, right: str) -> Column:
    """Equal values of two signature arrays."""
    from pyspark.sql import functions as F

    equal = F.zip_with(left, right, lambda x, y: (x == y).cast("int"))
    return F.aggregate(equal, F.lit(0), lambda acc, x: acc + x)


def _band_keys(params: ScopeParams) -> tuple[Column, list[str]]:
    """Per signature, an array of (band, k0, k1, ...): the band's values (columns ``band``,
    ``band + bands``, ... as ``band_keys`` takes them) packed two to a long. The values are
    32-bit, so the packing is one to one: equal keys are equal values, no hash involved."""
    from pyspark.sql import functions as F

    sig = F.col("signature")
    names = [f"k{i}" for i in range((params.rows + 1) // 2)]
    structs = []
    for band in range(params.bands):
        values = [sig[band + j * params.bands] for j in range(params.rows)]
        keys = [
            F.shiftleft(values[j], 32).bitwiseOR(values[j + 1])
            for j in range(0, params.rows - 1, 2)
        ]
        if params.rows % 2:
            keys.append(values[-1])
        parts = [k.alias(n) for k, n in zip(keys, names, strict=True)]
        structs.append(F.struct(F.lit(band).alias("band"), *parts))
    return F.array(*structs), names


def _numbered(sigs: DataFrame) -> DataFrame:
    """``sigs`` with ``n``: a long in (day, id) order (the day's number in the high 32 bits,
    the id's rank within its day in the low), so the bucket windows sort and the candidate
    pairs carry one long per node instead of two strings (measured: the window was most of
    the step). Ranked per day: no window over the whole history."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    days = sorted(r["dt"] for r in sigs.select("dt").distinct().collect())
    if not days:
        return sigs.withColumn("n", F.lit(None).cast("long"))
    number = F.create_map(*[F.lit(x) for i, d in enumerate(days) for x in (d, i)])
    rank = F.row_number().over(Window.partitionBy("dt").orderBy("id")) - 1
    return sigs.withColumn("n", F.shiftleft(number[F.col("dt")].cast("long"), 32) + rank)


def _candidates(numbered: DataFrame, params: ScopeParams) -> DataFrame:
    """Cross-day (earlier, later) pairs of ``n``: per band bucket (the band's values), each
    node to the bucket's earliest node and to the node before it, by (day, id)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys, names = _band_keys(params)
    banded = numbered.select("n", F.inline(keys))
    window = Window.partitionBy("band", *names).orderBy("n")
    marked = banded.select(
        F.col("n").alias("b"),
        F.first("n").over(window).alias("head"),
        F.lag("n").over(window).alias("prev"),
    )
    pairs = marked.select(F.col("head").alias("a"), "b").unionByName(
        marked.select(F.col("prev").alias("a"), "b")
    )
    other_day = F.shiftright(F.col("a"), 32) != F.shiftright(F.col("b"), 32)
    return pairs.where(F.col("a").isNotNull() & other_day).distinct()


def _near_edges(
    sigs: DataFrame, params: ScopeParams, counts: dict
) -> tuple[DataFrame, list[DataFrame]]:
    """(verified cross-day pairs as ``EDGES``, the cached frames to drop once collected)."""
    from pyspark.sql import functions as F

    numbered = _numbered(sigs).cache()
    pairs = _candidates(numbered, params).cache()
    counts[f"{params.scope}_candidates"] = pairs.count()
    ends = []
    for end in ("a", "b"):
        ends.append(
            numbered.select(
                F.col("n").alias(end),
                F.col("dt").alias(f"{end}_dt"),
                F.col("id").alias(f"{end}_id"),
                F.col("signature").alias(f"s{end}"),
            )
        )
    joined = pairs.join(ends[0], "a").join(ends[1], "b")
    verified = joined.where(_agreement("sa", "sb") >= params.required)
    return verified.select(*EDGES.names), [numbered, pairs]


def _arrow(df: DataFrame, schema: pa.Schema) -> pa.Table:
    return df.toArrow().select(schema.names).cast(schema)


def _attributes(
    spark: SparkSession,
    members: pa.Table,
    sigs: DataFrame,
    hashes: DataFrame | None,
) -> tuple[pa.Table, pa.Array, pa.Array]:
    """(members, same content hash as the representative, equal signature values), one
    Spark join of the members with both ends' hashes and signatures."""
    from pyspark.sql import functions as F

    df = spark.createDataFrame(members)
    for end, prefix in (("representative", "r_"), ("member", "m_")):
        on = [
            F.col(f"{end}_day") == F.col(f"{prefix}dt"),
            F.col(f"{end}_id") == F.col(f"{prefix}id"),
        ]
        s = sigs.select(*[F.col(c).alias(prefix + c) for c in ("dt", "id", "signature")])
        df = df.join(s, on, "left").drop(f"{prefix}dt", f"{prefix}id")
        if hashes is not None:
            h = hashes.select(
                F.col("dt").alias(f"{prefix}dt"),
                F.col("event_id").alias(f"{prefix}id"),
                F.col("content_hash").alias(f"{prefix}hash"),
            )
            df = df.join(h, on, "left").drop(f"{prefix}dt", f"{prefix}id")
    agree = F.when(
        F.col("r_signature").isNotNull() & F.col("m_signature").isNotNull(),
        _agreement("r_signature", "m_signature"),
    )
    same = F.col("r_hash") == F.col("m_hash") if hashes is not None else F.lit(None)
    out = df.select(*members.schema.names, same.cast("boolean").alias("same"), agree.alias("agree"))
    table = out.toArrow()
    return table.select(members.schema.names).cast(members.schema), table["same"], table["agree"]


def history_duplicates_spark(
    spark: SparkSession,
    hashes_path: str | None,
    signatures_path: str | None,
    scopes: tuple[ScopeParams, ScopeParams],
) -> HistoryResult:
    """The table folders of the two index tables (None: no day yet) -> what
    ``history_duplicates`` returns for the same files."""
    counts: dict[str, int] = {}
    hashes = _read(spark, hashes_path) if hashes_path else None
    if hashes is not None:
        counts["message_hashes"] = hashes.count()
    signatures = _read(spark, signatures_path) if signatures_path else None
    tables = []
    for params in scopes:
        if signatures is None:
            sigs = spark.createDataFrame([], "dt string, id string, signature array<long>")
        else:
            sigs = _comparable(signatures, params)
        counts[f"{params.scope}_signatures"] = sigs.count()
        use_hashes = hashes if params.scope == "message" else None
        near, cached = _near_edges(sigs, params, counts)
        edges = near if use_hashes is None else _exact_edges(use_hashes).unionByName(near)
        edge_table = _arrow(edges, EDGES)
        for frame in cached:
            frame.unpersist()
        counts[f"{params.scope}_edges"] = edge_table.num_rows
        members = group_members(params.scope, edge_table)
        if members.num_rows:
            members, same, agree = _attributes(spark, members, sigs, use_hashes)
            tables.append(finish(members, same, agree, params.num_perm))
    if signatures is not None:
        counts["skipped_signatures"] = signatures.count() - sum(
            counts[f"{p.scope}_signatures"] for p in scopes
        )
    table = sort_result(tables)
    counts.update(groups=count_groups(table), members=table.num_rows)
    return HistoryResult(table, counts)
