"""Gates on the retrieval side: chunks fit the model, vectors are sane, the index matches."""

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.assets.serve import read_manifest
from llm_data_platform.checks._partitions import checked_keys
from llm_data_platform.partitions import daily_partitions
from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.resources.embedding_cache import to_matrix
from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.embedding_text import embedding_inputs
from llm_data_platform.transforms.tokenizer import count_tokens, model_max_tokens

# The model adds [CLS] and [SEP]; a longer chunk would be silently truncated when embedded.
SPECIAL_TOKENS = 2


@dg.asset_check(asset="document_chunks", blocking=True, partitions_def=daily_partitions)
def chunks_fit_embedding_model(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """No chunk longer than the model's window (nothing truncated), none empty, ids unique."""
    keys = checked_keys(context)
    table = lake.read_partitions("curated", "document_chunks", keys=keys)
    if table is None or table.num_rows == 0:
        return dg.AssetCheckResult(passed=True, metadata={"chunks": 0})
    # ids are unique within a day; an unchanged section legitimately reappears on a later day
    duplicate_ids = 0
    for key in keys:
        day = lake.read_partition("curated", "document_chunks", key)
        if day is not None:
            duplicate_ids += day.num_rows - len(pc.unique(day["chunk_id"]))
    limit = model_max_tokens() - SPECIAL_TOKENS
    # What the model really sees is heading path + text: count that, with its own tokenizer.
    input_tokens = pa.array(count_tokens(embedding_inputs(table)), pa.int32())
    too_long = int(pc.sum(pc.greater(input_tokens, limit)).as_py() or 0)
    empty = int(pc.sum(pc.less(pc.utf8_length(pc.utf8_trim_whitespace(table["text"])), 1)).as_py())
    return dg.AssetCheckResult(
        passed=too_long == 0 and empty == 0 and duplicate_ids == 0,
        metadata={
            "chunks": table.num_rows,
            "token_limit": limit,
            "max_input_tokens": int(pc.max(input_tokens).as_py()),
            "too_long": too_long,
            "empty": empty,
            "duplicate_ids": duplicate_ids,
        },
    )


@dg.asset_check(asset="chunk_embeddings", blocking=True, partitions_def=daily_partitions)
def embeddings_well_formed(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, embeddings: EmbeddingsResource
) -> dg.AssetCheckResult:
    """One finite, unit-length vector of the configured dimension per chunk."""
    keys = checked_keys(context)
    emb = lake.read_partitions("curated", "chunk_embeddings", keys=keys)
    chunks = lake.read_partitions("curated", "document_chunks", keys=keys, columns=["chunk_id"])
    n_chunks = chunks.num_rows if chunks is not None else 0
    if emb is None or emb.num_rows == 0:
        return dg.AssetCheckResult(passed=n_chunks == 0, metadata={"vectors": 0})
    matrix = to_matrix(emb["embedding"], embeddings.dimension)
    norms = np.linalg.norm(matrix, axis=1)
    finite = bool(np.isfinite(matrix).all())
    unit = bool(np.allclose(norms, 1.0, atol=1e-3))
    return dg.AssetCheckResult(
        passed=finite
        and unit
        and emb.num_rows == n_chunks
        and matrix.shape[1] == embeddings.dimension,
        metadata={
            "vectors": emb.num_rows,
            "chunks": n_chunks,
            "dimension": int(matrix.shape[1]),
            "finite": finite,
            "unit_norm": unit,
        },
    )


@dg.asset_check(asset="rag_index", blocking=True)
def rag_index_matches_manifest(
    lake: LakeResource, chroma: ChromaResource, embeddings: EmbeddingsResource
) -> dg.AssetCheckResult:
    """The collection holds exactly the chunk ids of the manifest: no stale, none missing."""
    manifest = read_manifest(lake)
    if manifest is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "no manifest"})
    collection = chroma.get_collection(embeddings.model_id, embeddings.dimension, create=False)
    held: set[str] = set()
    offset = 0
    while True:
        got = collection.get(include=[], limit=5000, offset=offset)
        held.update(got["ids"])
        if len(got["ids"]) < 5000:
            break
        offset += 5000
    expected = set(manifest["chunk_id"].to_pylist())
    return dg.AssetCheckResult(
        passed=held == expected,
        metadata={
            "manifest_chunks": len(expected),
            "index_chunks": len(held),
            "missing": len(expected - held),
            "stale": len(held - expected),
        },
    )


RAG_CHECKS = [chunks_fit_embedding_model, embeddings_well_formed, rag_index_matches_manifest]
