"""Gates on the retrieval side: chunks fit the model, vectors are sane, the index matches."""

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.defs.rag.index import read_manifest
from llm_data_platform.defs.rag.side_tables import INDEX_EVALUATIONS
from llm_data_platform.lib.embedding_cache import EmbeddingCache, to_matrix
from llm_data_platform.lib.index_slots import chunk_ids
from llm_data_platform.lib.index_versions import candidate_version, record_evaluation
from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.transforms.embedding_text import embedding_inputs
from llm_data_platform.transforms.retrieval_metrics import retrieval_metrics
from llm_data_platform.transforms.tokenizer import count_tokens, model_max_tokens

# The model adds [CLS] and [SEP]; a longer chunk would be silently truncated when embedded.
SPECIAL_TOKENS = 2


def chunks_fit_embedding_model(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """No chunk longer than the model's window (nothing truncated), none empty, ids unique."""
    keys = list(context.partition_keys)
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


def embeddings_well_formed(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, embeddings: EmbeddingsResource
) -> dg.AssetCheckResult:
    """One finite, unit-length vector of the configured dimension per chunk."""
    keys = list(context.partition_keys)
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


def _candidate_collection(lake, chroma, embeddings):
    candidate = candidate_version(lake, embeddings.model_id)
    if candidate is None:
        return None, None
    collection = chroma.get_collection(
        embeddings.model_id, embeddings.dimension, create=False, slot=candidate.slot
    )
    return candidate, collection


# pool "chroma" for readers too: a second process opening a PersistentClient collection while
# another writes it can replay and persist its HNSW log at the same time and corrupt it.
@dg.asset_check(asset="rag_index", blocking=True, pool="chroma")
def rag_index_matches_manifest(
    lake: LakeResource, chroma: ChromaResource, embeddings: EmbeddingsResource
) -> dg.AssetCheckResult:
    """The new version holds exactly the chunk ids of the manifest: no stale, none missing."""
    manifest = read_manifest(lake)
    candidate, collection = _candidate_collection(lake, chroma, embeddings)
    if manifest is None or collection is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "no manifest or candidate"})
    held = chunk_ids(collection)
    expected = set(manifest["chunk_id"].to_pylist())
    return dg.AssetCheckResult(
        passed=held == expected,
        metadata={
            "index_version": candidate.version,
            "manifest_chunks": len(expected),
            "index_chunks": len(held),
            "missing": len(expected - held),
            "stale": len(held - expected),
        },
    )


@dg.asset_check(
    asset="rag_index", blocking=True, additional_deps=["retrieval_eval_set"], pool="chroma"
)
def rag_index_retrieval_quality(
    context: dg.AssetCheckExecutionContext,
    lake: LakeResource,
    chroma: ChromaResource,
    embeddings: EmbeddingsResource,
    pipeline: PipelineSettings,
) -> dg.AssetCheckResult:
    """hit@1, hit@5 and MRR@10 of the new version on the evaluation set (given questions, or
    ones generated from the documents' titles and headings). It must reach the thresholds and
    score no lower than the live version on the same questions, less a tolerance; otherwise
    it is not promoted (``rag_index_live`` does not run) and the live one stays."""
    settings = pipeline
    candidate, collection = _candidate_collection(lake, chroma, embeddings)
    if collection is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "no candidate version"})
    eval_set = lake.read_partition("curated", "retrieval_eval_set", "all")
    if eval_set is None or eval_set.num_rows == 0:
        return _ungated(context, lake, candidate)
    questions = eval_set["question"].to_pylist()
    expected = _relevant(eval_set)
    cache = EmbeddingCache(lake, embeddings.model_id, embeddings.dimension)
    vectors, embedded = cache.embed(questions, embeddings.embed)
    manifest = read_manifest(lake)
    doc_of = _documents_of_chunks(manifest)
    metrics, ranked = _measure(collection, vectors, expected, doc_of)
    live = chroma.live_collection(embeddings.model_id, embeddings.dimension)
    baseline = None
    if live is not None and live.name != collection.name:
        # compared on the questions the new version can answer: a document deleted since is
        # no regression
        answerable = _answerable(manifest, expected)
        if answerable:
            keep = [expected[i] for i in answerable]
            baseline, _ = _measure(live, [vectors[i] for i in answerable], keep, doc_of)
            mine = retrieval_metrics([ranked[i] for i in answerable], keep, mrr_k=10)
            baseline = {**baseline, "candidate": mine}
    failures = _gate_failures(metrics, baseline, settings)
    passed = not failures
    record_evaluation(lake, candidate, {**metrics, "live": baseline}, passed)
    context.op_execution_context.log_event(
        dg.AssetObservation(
            asset_key=INDEX_EVALUATIONS,
            metadata={"index_version": candidate.version, "passed": passed, **metrics},
        )
    )
    misses = [
        q for q, r, d in zip(questions, ranked, expected, strict=True) if not set(d) & set(r[:5])
    ]
    sources = set(eval_set["source"].to_pylist()) if "source" in eval_set.column_names else set()
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "index_version": candidate.version,
            "hit_at_1": metrics["hit@1"],
            "hit_at_5": metrics["hit@5"],
            "mrr_at_10": metrics["mrr@10"],
            "questions": metrics["questions"],
            "questions_embedded": embedded,  # the rest came from the embedding cache
            "question_source": ", ".join(sorted(sources)) or "given",
            "live_hit_at_5": baseline["hit@5"] if baseline else "no live version",
            "live_mrr_at_10": baseline["mrr@10"] if baseline else "no live version",
            "min_hit_at_5": settings.eval_min_hit_at_5,
            "min_mrr_at_10": settings.eval_min_mrr_at_10,
            "max_regression": settings.eval_max_regression,
            "failed_because": failures or ["passed"],
            "missed_at_5": misses[:10] or ["none"],
        },
    )


def _answerable(manifest: pa.Table | None, expected: list[list[str]]) -> list[int]:
    """Indices of the questions with a relevant document in the new version's manifest."""
    if manifest is None or "doc_id" not in manifest.column_names:
        return list(range(len(expected)))
    present = set(manifest["doc_id"].to_pylist())
    return [i for i, docs in enumerate(expected) if present & set(docs)]


def _relevant(eval_set: pa.Table) -> list[list[str]]:
    if "doc_ids" in eval_set.column_names:
        return [list(d) for d in eval_set["doc_ids"].to_pylist()]
    return [[d] for d in eval_set["doc_id"].to_pylist()]


def _documents_of_chunks(manifest: pa.Table | None) -> dict[str, str]:
    if manifest is None or "doc_id" not in manifest.column_names:
        return {}
    return dict(zip(manifest["chunk_id"].to_pylist(), manifest["doc_id"].to_pylist(), strict=True))


def _measure(
    collection, vectors, expected: list[list[str]], doc_of: dict[str, str]
) -> tuple[dict, list[list[str]]]:
    """Metrics and each question's ranked document ids. The query asks for ids only (with
    metadata, 300 questions took ~4x as long); the manifest names their documents, and the
    chunks it does not list (held by the live version, dropped by the new one) are looked up
    in one read of their metadata."""
    ids = collection.query(query_embeddings=vectors, n_results=10, include=[])["ids"]
    unknown = sorted({i for row in ids for i in row} - doc_of.keys())
    if unknown:
        got = collection.get(ids=unknown, include=["metadatas"])
        found = zip(got["ids"], got["metadatas"], strict=True)
        doc_of = {**doc_of, **{i: (m or {}).get("doc_id", "") for i, m in found}}
    ranked = [[doc_of.get(i, "") for i in row] for row in ids]
    return retrieval_metrics(ranked, expected, mrr_k=10), ranked


def _gate_failures(metrics: dict, baseline: dict | None, settings: PipelineSettings) -> list[str]:
    """Why the version may not go live: below a threshold, or worse than the live one."""
    failures = []
    if metrics["hit@5"] < settings.eval_min_hit_at_5:
        failures.append(f"hit@5 {metrics['hit@5']} < {settings.eval_min_hit_at_5}")
    if metrics["mrr@10"] < settings.eval_min_mrr_at_10:
        failures.append(f"mrr@10 {metrics['mrr@10']} < {settings.eval_min_mrr_at_10}")
    for name in ("hit@5", "mrr@10") if baseline else ():
        mine = baseline["candidate"][name]
        if mine < baseline[name] - settings.eval_max_regression:
            failures.append(
                f"{name} {mine} is below the live version's {baseline[name]} on the same "
                f"{baseline['questions']} questions by more than {settings.eval_max_regression} "
                "(LDP_EVAL_MAX_REGRESSION)"
            )
    return failures


def _ungated(context, lake, candidate) -> dg.AssetCheckResult:
    """No question at all (no file, and no document with a usable title or heading)."""
    record_evaluation(lake, candidate, {"note": "no evaluation set"}, passed=True)
    context.op_execution_context.log_event(
        dg.AssetObservation(
            asset_key=INDEX_EVALUATIONS,
            metadata={"index_version": candidate.version, "passed": True, "gated": False},
        )
    )
    context.log.warning("No evaluation question: the index version is promoted ungated.")
    return dg.AssetCheckResult(
        passed=True,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"note": "no evaluation question (no file, no titled document); not gated"},
    )


def rag_checks(partitions: Partitions) -> list[dg.AssetChecksDefinition]:
    """The RAG tables' checks; the chunk and embedding checks on the daily partitions."""
    return [
        dg.asset_check(asset="document_chunks", blocking=True, partitions_def=partitions.daily)(
            chunks_fit_embedding_model
        ),
        dg.asset_check(asset="chunk_embeddings", blocking=True, partitions_def=partitions.daily)(
            embeddings_well_formed
        ),
        rag_index_matches_manifest,
        rag_index_retrieval_quality,
    ]
