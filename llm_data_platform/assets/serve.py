"""Serve zone: the Chroma collection, synced exactly to the latest version of every live document.

Nothing is loaded through an IO manager: DuckDB scans the lake's chunk and embedding tables
lazily, the diff against what the collection holds decides what to upsert and delete, and the
vectors to upsert stream in batches of the client's maximum batch size.
"""

import io
import time

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from dagster_duckdb import DuckDBResource

from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.resources.embedding_cache import to_matrix
from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.resources.lake import LakeResource

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


def existing_entries(collection) -> dict[str, dict]:
    """What the collection holds now (id → metadata), paged so a large index fits."""
    held: dict[str, dict] = {}
    page = 5000
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=page, offset=offset)
        for chunk_id, meta in zip(got["ids"], got["metadatas"], strict=True):
            held[chunk_id] = meta or {}
        if len(got["ids"]) < page:
            return held
        offset += page


def manifest_path(lake: LakeResource) -> str:
    return lake.path("serve", "rag_index", "manifest.parquet")


def read_manifest(lake: LakeResource) -> pa.Table | None:
    data = lake.read_bytes(manifest_path(lake))
    return None if data is None else pq.read_table(io.BytesIO(data))


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
    """The Chroma collection, holding exactly the chunks of every live document's latest version."""
    started = time.perf_counter()
    docs = lake.dataset("clean", "documents_clean")
    chunks = lake.dataset("curated", "document_chunks")
    emb = lake.dataset("curated", "chunk_embeddings")
    if docs is None or chunks is None or emb is None:
        raise dg.Failure(
            "rag_index needs documents_clean, document_chunks and chunk_embeddings in the lake. "
            "Materialize them for at least one day first, e.g. `dagster asset materialize -m "
            "llm_data_platform --select 'documents_clean+' --partition 2026-01-05`."
        )
    model_id, dimension = embeddings.model_id, embeddings.dimension
    collection = chroma.get_collection(model_id, dimension)
    with duckdb.get_connection() as con:
        con.register("docs", docs)
        con.register("chunks", chunks)
        con.register("emb", emb)
        desired = con.sql(LIVE_CHUNKS_SQL).to_arrow_table()
        held = existing_entries(collection)
        wanted_ids = desired["chunk_id"].to_pylist()
        versions = desired["version"].to_pylist()
        stale = [
            i
            for i, (cid, ver) in enumerate(zip(wanted_ids, versions, strict=True))
            if held.get(cid, {}).get("version") != ver
        ]
        to_delete = sorted(set(held) - set(wanted_ids))
        batch = chroma.get_client().get_max_batch_size()
        for i in range(0, len(to_delete), batch):
            collection.delete(ids=to_delete[i : i + batch])
        wanted = desired.take(pa.array(stale, pa.int64())) if stale else desired.slice(0, 0)
        con.register("wanted", wanted)
        upserted = 0
        reader = con.execute(UPSERT_ROWS_SQL, {"model_id": model_id}).to_arrow_reader(batch)
        for record_batch in reader:
            upserted += _upsert(collection, record_batch, dimension)
            context.log.info(f"upserted {upserted}/{len(stale)} chunks")
    if upserted != len(stale):
        raise dg.Failure(
            f"{len(stale) - upserted} chunks have no embedding from {model_id}. Re-materialize "
            "chunk_embeddings for their days (the embedding model changed or a day is missing)."
        )
    manifest = desired.select(MANIFEST_COLUMNS).sort_by("chunk_id")
    buffer = io.BytesIO()
    pq.write_table(manifest, buffer, compression="zstd")
    lake.write_bytes(manifest_path(lake), buffer.getvalue())
    count = collection.count()
    live_docs = len(set(desired["doc_id"].to_pylist()))
    summary = {
        "collection": collection.name,
        "embedding_model": model_id,
        "dimension": dimension,
        "location": chroma.location,
    }
    return dg.MaterializeResult(
        metadata={
            "chunks_in_index": count,
            "live_documents": live_docs,
            "upserted": upserted,
            "deleted": len(to_delete),
            "unchanged": len(wanted_ids) - len(stale),
            "manifest": dg.MetadataValue.path(lake.uri(manifest_path(lake))),
            "index": dg.MetadataValue.json(summary),
            "sync_seconds": round(time.perf_counter() - started, 3),
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
