"""The RAG domain's side tables, in the graph: the embedding cache and the index evaluations.

Neither is materialized by a step of its own: the cache grows as ``chunk_embeddings`` embeds
text it has not seen, and an evaluation is written each time ``rag_index``'s quality check
runs. So they are declared as assets and *observed* by the step that writes them: both show
in the lineage, with their history of observations (what was added, which version scored
what) on their asset pages.
"""

import dagster as dg

EMBEDDING_CACHE = dg.AssetKey("embedding_cache")
INDEX_EVALUATIONS = dg.AssetKey("rag_index_evaluations")

embedding_cache = dg.AssetSpec(
    EMBEDDING_CACHE,
    group_name="curated",
    kinds={"parquet"},
    description="Vectors by (embedding model, content hash) of the exact text the model saw: "
    "text embedded once is never sent to the model again. Append-only files under "
    "curated/embedding_cache/model=<model>/, observed by chunk_embeddings.",
    metadata={"lake_zone": "curated", "lake_path": "curated/embedding_cache"},
)

rag_index_evaluations = dg.AssetSpec(
    INDEX_EVALUATIONS,
    deps=["rag_index"],
    group_name="serve",
    kinds={"json"},
    description="Retrieval quality of each index version on the evaluation set (hit@1, hit@5, "
    "MRR@10, passed), one JSON per version; observed by the rag_index quality check.",
    metadata={"lake_zone": "serve"},
)

SIDE_TABLES = [embedding_cache, rag_index_evaluations]
