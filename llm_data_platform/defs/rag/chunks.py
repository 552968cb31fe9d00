"""Curated zone, retrieval side: token-aware chunks and their embeddings, by update day."""

import time

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.defs.partitions import Partitions, daily_backfill_policy
from llm_data_platform.defs.rag.side_tables import EMBEDDING_CACHE
from llm_data_platform.lib.embedding_cache import EmbeddingCache, embeddings_array
from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.transforms.chunking import chunk_documents
from llm_data_platform.transforms.embedding_text import embedding_inputs, input_hash


def document_chunks(
    context: dg.AssetExecutionContext,
    documents_clean: dict[str, pa.Table],
    pipeline: PipelineSettings,
) -> dict[str, pa.Table]:
    """Token-aware chunks with stable, content-derived ids and lineage to the document version."""
    settings = pipeline
    started = time.perf_counter()
    out: dict[str, pa.Table] = {}
    docs = chunks = tokens = 0
    for key, clean in documents_clean.items():
        table = chunk_documents(
            clean,
            max_tokens=settings.chunk_max_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
        )
        out[key] = table
        docs += int(pc.sum(pc.invert(clean["is_deleted"])).as_py() or 0)
        chunks += table.num_rows
        tokens += int(pc.sum(table["n_tokens"]).as_py() or 0)
    context.add_output_metadata(
        {
            "documents": docs,
            "chunks": chunks,
            "tokens": tokens,
            "mean_tokens_per_chunk": round(tokens / chunks, 1) if chunks else 0.0,
            "max_tokens": settings.chunk_max_tokens,
            "overlap_tokens": settings.chunk_overlap_tokens,
            "chunk_seconds": round(time.perf_counter() - started, 3),
        }
    )
    return out


def chunk_embeddings(
    context: dg.AssetExecutionContext,
    document_chunks: dict[str, pa.Table],
    embeddings: EmbeddingsResource,
    lake: LakeResource,
) -> dict[str, pa.Table]:
    """One vector per chunk. Only text never embedded before (by content hash) hits the model."""
    started = time.perf_counter()
    dimension = embeddings.dimension
    cache = EmbeddingCache(lake, embeddings.model_id, dimension)
    # Cache key: the exact text the model sees (heading path + chunk text).
    inputs = {key: embedding_inputs(t) for key, t in document_chunks.items()}
    keys = {key: [input_hash(x) for x in xs] for key, xs in inputs.items()}
    texts_by_hash: dict[str, str] = {}
    for key in inputs:
        texts_by_hash.update(zip(keys[key], inputs[key], strict=True))
    all_hashes = sorted(texts_by_hash)
    cached = cache.lookup(all_hashes)
    todo = [h for h in all_hashes if h not in cached]
    embed_seconds = 0.0
    if todo:
        step = max(1, embeddings.batch_size * 4)
        fresh: dict[str, np.ndarray] = {}
        for i in range(0, len(todo), step):
            batch = todo[i : i + step]
            t0 = time.perf_counter()
            vectors = embeddings.embed([texts_by_hash[h] for h in batch])
            embed_seconds += time.perf_counter() - t0
            cache.add(batch, vectors)  # durable before use: a crash keeps what was paid for
            fresh.update(zip(batch, vectors, strict=True))
            context.log.info(f"embedded {min(i + step, len(todo))}/{len(todo)} new chunks")
        cached.update(fresh)

    out: dict[str, pa.Table] = {}
    for key, table in document_chunks.items():
        hashes = keys[key]
        matrix = (
            np.stack([cached[h] for h in hashes])
            if hashes
            else np.zeros((0, dimension), np.float32)
        )
        out[key] = pa.table(
            {
                "chunk_id": table["chunk_id"],
                "doc_id": table["doc_id"],
                "version": table["version"],
                "content_hash": table["content_hash"],
                "input_hash": pa.array(hashes, pa.string()),
                "model_id": pa.array([embeddings.model_id] * len(hashes), pa.string()),
                "embedding": embeddings_array(matrix),
            }
        )
    context.add_output_metadata(
        {
            "chunks": sum(t.num_rows for t in document_chunks.values()),
            "unique_texts": len(all_hashes),
            "cache_hits": len(all_hashes) - len(todo),
            "embedded": len(todo),
            "embedding_model": embeddings.model_id,
            "dimension": dimension,
            "embed_seconds": round(embed_seconds, 3),
            "total_seconds": round(time.perf_counter() - started, 3),
        }
    )
    context.log_event(
        dg.AssetObservation(
            asset_key=EMBEDDING_CACHE,
            metadata={
                "embedding_model": embeddings.model_id,
                "vectors_added": len(todo),
                "cache_hits": len(all_hashes) - len(todo),
                "partitions": dg.MetadataValue.json(sorted(document_chunks)),
            },
        )
    )
    return out


def chunk_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """Chunks and embeddings, on the daily partitions."""
    return [
        dg.asset(
            partitions_def=partitions.daily,
            backfill_policy=daily_backfill_policy,
            group_name="curated",
            kinds={"parquet"},
            metadata={"lake_zone": "curated", "lake_sort_by": ["doc_id", "chunk_index"]},
        )(document_chunks),
        dg.asset(
            partitions_def=partitions.daily,
            backfill_policy=daily_backfill_policy,
            group_name="curated",
            kinds={"parquet", "pytorch"},
            metadata={"lake_zone": "curated", "lake_sort_by": ["chunk_id"]},
            pool="embedding_model",
            deps=[EMBEDDING_CACHE],
        )(chunk_embeddings),
    ]
