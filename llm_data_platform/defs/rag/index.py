"""Serve zone: the Chroma collection, synced exactly to the latest version of every live document.

Two versions live side by side (blue/green, see ``resources/index_versions.py``): a build syncs
the candidate slot incrementally; a blocking retrieval-quality check gates its promotion.
Nothing is loaded through an IO manager: DuckDB scans the lake's chunk and embedding tables
lazily, the diff against what the collection holds decides what to upsert and delete, and the
vectors to upsert stream in batches of the client's maximum batch size.
"""

import io
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from dagster_duckdb import DuckDBResource

from llm_data_platform.lib.embedding_cache import to_matrix
from llm_data_platform.lib.index_slots import DIGEST_KEY, held_versions, record_held
from llm_data_platform.lib.index_versions import (
    IndexVersion,
    candidate_version,
    promote,
    record_candidate,
)
from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.resources.lake import LakeResource

if TYPE_CHECKING:
    import duckdb as duckdb_lib
    import pyarrow.dataset as pads

MANIFEST_COLUMNS = ["chunk_id", "doc_id", "version", "content_hash"]

LIVE_CHUNKS_SQL = """
with latest as (
    select doc_id, version, is_deleted,
           row_number() over (partition by doc_id order by updated_at desc, dt desc) as rn
    from docs
), live as (
    select doc_id, version from latest where rn = 1 and not is_deleted
)
select c.chunk_id, c.doc_id, c.version, c.content_hash, c.dt
from chunks c join live using (doc_id, version)
qualify row_number() over (partition by c.chunk_id order by c.dt desc) = 1
"""

UPSERT_ROWS_SQL = """
select c.chunk_id, c.doc_id, c.version, c.content_hash, c.text, c.title, c.heading_path,
       c.source_uri, c.chunk_index, c.char_start, c.char_end, c.n_tokens, e.embedding
from wanted w
join chunks c on c.chunk_id = w.chunk_id and c.dt = w.dt
join emb e on e.chunk_id = c.chunk_id and e.dt = c.dt and e.model_id = $model_id
order by c.chunk_id
"""


def manifest_path(lake: LakeResource) -> str:
    return lake.path("serve", "rag_index", "manifest.parquet")


def read_manifest(lake: LakeResource) -> pa.Table | None:
    data = lake.read_bytes(manifest_path(lake))
    return None if data is None else pq.read_table(io.BytesIO(data))


def _other(slot: str) -> str:
    return "green" if slot == "blue" else "blue"


@dataclass(frozen=True)
class _DesiredChunks:
    """The chunks the index should hold (``LIVE_CHUNKS_SQL``), with their ids and document
    versions as lists, and as the chunk id → version map a slot that holds them has."""

    table: pa.Table
    ids: list[str]
    versions: list[str]
    wanted: dict[str, str]

    @classmethod
    def of(cls, table: pa.Table) -> "_DesiredChunks":
        ids, versions = table["chunk_id"].to_pylist(), table["version"].to_pylist()
        return cls(table, ids, versions, dict(zip(ids, versions, strict=True)))


@dataclass(frozen=True)
class _SyncOutcome:
    """Which index version a ``rag_index`` run left as the candidate, and what it changed."""

    slot: str
    version: int
    collection: Any  # the chromadb collection of that slot
    upserted: int
    deleted: int
    unchanged: int


def _lake_tables(lake: LakeResource) -> tuple["pads.Dataset", "pads.Dataset", "pads.Dataset"]:
    """The documents, chunk and embedding tables the index is built from; a clear failure
    (with the command to run) when one was never materialized."""
    docs = lake.dataset("clean", "documents_clean")
    chunks = lake.dataset("curated", "document_chunks")
    emb = lake.dataset("curated", "chunk_embeddings")
    if docs is None or chunks is None or emb is None:
        raise dg.Failure(
            "rag_index needs documents_clean, document_chunks and chunk_embeddings in the lake. "
            "Materialize them for at least one day first, e.g. `dagster asset materialize -m "
            "llm_data_platform --select raw_documents,documents_clean,document_chunks,"
            "chunk_embeddings --partition 2026-01-05`."
        )
    return docs, chunks, emb


def _next_slot_and_version(live: Any, live_meta: dict) -> tuple[str, int]:
    """The slot that is not live (blue when nothing is) and the version number after live's."""
    slot = _other(str(live_meta["slot"])) if live is not None else "blue"
    return slot, int(live_meta.get("version", 0)) + 1


@dataclass(frozen=True)
class _Stores:
    """Where a sync reads and writes: the lake, its DuckDB connection, Chroma, the model."""

    lake: LakeResource
    con: "duckdb_lib.DuckDBPyConnection"
    chroma: ChromaResource
    embeddings: EmbeddingsResource


def _sync_slot(
    context: dg.AssetExecutionContext,
    stores: _Stores,
    desired: _DesiredChunks,
    slot: str,
    version: int,
) -> _SyncOutcome:
    """Syncs ``slot`` to ``desired`` as ``version``: deletes what it should not hold and upserts
    what is missing or of another document version, so an unchanged chunk costs nothing."""
    con, chroma = stores.con, stores.chroma
    model_id, dimension = stores.embeddings.model_id, stores.embeddings.dimension
    wanted_ids, versions = desired.ids, desired.versions
    collection = chroma.get_collection(model_id, dimension, create=True, slot=slot)
    chroma.persist_often(collection)
    held = held_versions(stores.lake, collection, model_id, slot)
    # from here until record_held the slot's lake record is not to be trusted
    chroma.set_metadata(collection, live_seq=0, version=version, **{DIGEST_KEY: ""})
    stale = [
        i
        for i, (cid, ver) in enumerate(zip(wanted_ids, versions, strict=True))
        if held.get(cid) != ver
    ]
    to_delete = sorted(held.keys() - desired.wanted.keys())
    batch = chroma.get_client().get_max_batch_size()
    for i in range(0, len(to_delete), batch):
        collection.delete(ids=to_delete[i : i + batch])
    table = desired.table
    rows = table.take(pa.array(stale, pa.int64())) if stale else table.slice(0, 0)
    con.register("wanted", rows)
    upserted = 0
    reader = con.sql(UPSERT_ROWS_SQL, params={"model_id": model_id}).to_arrow_reader(batch)
    for record_batch in reader:
        upserted += _upsert(collection, record_batch, dimension)
        context.log.info(f"upserted {upserted}/{len(stale)} chunks into {slot}")
    if upserted != len(stale):
        raise dg.Failure(
            f"{len(stale) - upserted} chunks have no embedding from {model_id}. "
            "Re-materialize chunk_embeddings for their days (the embedding model "
            "changed or a day is missing)."
        )
    unchanged = len(wanted_ids) - len(stale)
    record_held(stores.lake, chroma, collection, model_id, slot, desired.wanted)
    return _SyncOutcome(slot, version, collection, upserted, len(to_delete), unchanged)


def _seed_standby(
    context: dg.AssetExecutionContext,
    stores: _Stores,
    desired: _DesiredChunks,
    live: Any,
    outcome: _SyncOutcome,
) -> int:
    """While nothing is live, the other slot gets the same chunks as the first candidate, so
    the build after the first promotion syncs only what changed (not every chunk into an
    empty slot); once a version is live, the other slot holds the previous one (rollback) and
    each build syncs the slot it overwrites by the difference. Chunks upserted here."""
    if live is not None:
        return 0
    other = _other(outcome.slot)
    seeded = _sync_slot(context, stores, desired, other, outcome.version)
    return seeded.upserted


def _write_manifest(lake: LakeResource, desired: pa.Table) -> None:
    """What the index should hold (chunk, document, version, hash), for checks and readers
    that must not query Chroma."""
    manifest = desired.select(MANIFEST_COLUMNS).sort_by("chunk_id")
    buffer = io.BytesIO()
    pq.write_table(manifest, buffer, compression="zstd")
    lake.write_bytes(manifest_path(lake), buffer.getvalue())


def _record_candidate_version(
    lake: LakeResource, outcome: _SyncOutcome, model_id: str, is_live: bool
) -> IndexVersion:
    """Records the synced slot as the candidate; an unchanged live version keeps its verdict
    and metrics, so it is not evaluated again."""
    candidate = IndexVersion(
        slot=outcome.slot,
        version=outcome.version,
        collection=outcome.collection.name,
        model_id=model_id,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        chunks=outcome.collection.count(),
        passed=True if is_live else None,
        metrics=(candidate_version(lake, model_id).metrics if is_live else {}) or {},
    )
    record_candidate(lake, candidate)
    return candidate


@dg.asset(
    group_name="serve",
    kinds={"chromadb", "duckdb"},
    deps=["documents_clean", "document_chunks", "chunk_embeddings"],
    pool="chroma",
)
def rag_index(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    duckdb: DuckDBResource,
    chroma: ChromaResource,
    embeddings: EmbeddingsResource,
) -> dg.MaterializeResult:
    """The next version of the Chroma index: the candidate slot, synced to exactly the chunks of
    every live document's latest version. ``rag_index_live`` promotes it once it has passed the
    retrieval-evaluation check."""
    started = time.perf_counter()
    docs, chunks, emb = _lake_tables(lake)
    model_id, dimension = embeddings.model_id, embeddings.dimension
    live = chroma.live_collection(model_id, dimension)
    live_meta = (live.metadata or {}) if live is not None else {}
    with duckdb.get_connection() as con:
        con.register("docs", docs)
        con.register("chunks", chunks)
        con.register("emb", emb)
        table = con.sql(LIVE_CHUNKS_SQL).to_arrow_table()
        desired = _DesiredChunks.of(table)

        held = held_versions(lake, live, model_id, live_meta["slot"]) if live is not None else None
        if held == desired.wanted:
            # Nothing changed since the live version: no new version, nothing to evaluate.
            slot, version = str(live_meta["slot"]), int(live_meta.get("version", 0))
            outcome = _SyncOutcome(slot, version, live, 0, 0, len(desired.ids))
            standby = 0
            context.log.info(f"index unchanged: live version {version} ({slot}) holds it all")
        else:
            slot, version = _next_slot_and_version(live, live_meta)
            # A server that stops answering mid-sync fails the run with its name and the fix;
            # only the candidate slot was touched, the live version serves on.
            with chroma.reachable():
                stores = _Stores(lake, con, chroma, embeddings)
                outcome = _sync_slot(context, stores, desired, slot, version)
                standby = _seed_standby(context, stores, desired, live, outcome)
    _write_manifest(lake, desired.table)
    is_live = live is not None and outcome.collection.name == live.name
    candidate = _record_candidate_version(lake, outcome, model_id, is_live)
    return dg.MaterializeResult(
        metadata={
            "index_version": outcome.version,
            "slot": outcome.slot,
            "already_live": is_live,
            "chunks_in_index": candidate.chunks,
            "live_documents": len(set(desired.table["doc_id"].to_pylist())),
            "upserted": outcome.upserted,
            "deleted": outcome.deleted,
            "unchanged": outcome.unchanged,
            "standby_upserted": standby,
            "manifest": dg.MetadataValue.path(lake.uri(manifest_path(lake))),
            "collection": outcome.collection.name,
            "embedding_model": model_id,
            "location": chroma.location,
            "sync_seconds": round(time.perf_counter() - started, 3),
        }
    )


@dg.asset(group_name="serve", kinds={"chromadb"}, deps=["rag_index"], pool="chroma")
def rag_index_live(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    chroma: ChromaResource,
    embeddings: EmbeddingsResource,
) -> dg.MaterializeResult:
    """Promotes the candidate index version to live — only when its evaluation passed.

    In a run with rag_index this step does not even start if the blocking quality check fails;
    run on its own, it re-reads the candidate's recorded evaluation and refuses a failed one.
    """
    candidate = candidate_version(lake, embeddings.model_id)
    if candidate is None:
        raise dg.Failure("No candidate index version: materialize rag_index first.")
    if candidate.passed is not True:
        raise dg.Failure(
            f"Index version {candidate.version} ({candidate.slot}) has not passed the retrieval "
            f"evaluation (recorded: {candidate.passed}, {candidate.metrics}); the live version "
            "stays. Fix the data or the thresholds, then re-materialize rag_index."
        )
    live = chroma.live_collection(embeddings.model_id, embeddings.dimension)
    if live is not None and live.name == candidate.collection:
        context.log.info(f"version {candidate.version} is already live")
    else:
        chroma.promote(embeddings.model_id, embeddings.dimension, candidate.slot, candidate.version)
        promote(lake, candidate)
    return dg.MaterializeResult(
        metadata={
            "live_version": candidate.version,
            "slot": candidate.slot,
            "collection": candidate.collection,
            "chunks": candidate.chunks,
            **{k: v for k, v in candidate.metrics.items() if isinstance(v, int | float)},
        }
    )


def _upsert(collection, batch: pa.RecordBatch, dimension: int) -> int:
    if not batch.num_rows:
        return 0
    vectors = to_matrix(batch.column("embedding"), dimension)
    if vectors.shape[1] != dimension:
        raise dg.Failure(
            f"Embeddings have {vectors.shape[1]} dimensions, the index expects {dimension}."
        )
    rows = batch.drop_columns(["embedding"]).to_pylist()
    metadatas = [
        {k: ("" if v is None else v) for k, v in row.items() if k not in {"chunk_id", "text"}}
        for row in rows
    ]
    collection.upsert(
        ids=[r["chunk_id"] for r in rows],
        embeddings=vectors,
        documents=[r["text"] for r in rows],
        metadatas=metadatas,
    )
    return len(rows)
