"""The retrieval API for chatbot backends (FastAPI). Start it with ``ldp serve``.

POST /search   question, k, where, hybrid  → hits with lineage, index_version, timings (ms)
POST /answer   the same in                 → a grounded answer citing [n], its sources, hits
GET  /health                               → index version, chunk count, embedding model
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from llm_data_platform.retrieval import Hit, Retriever, SearchResult
from llm_data_platform.serving.answer import AnswerError, ChatConfig, generate_answer


class SearchRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    k: int = Field(default=5, ge=1, le=100)
    where: dict[str, Any] | None = Field(
        default=None, description='Chroma metadata filter, e.g. {"doc_id": "kb/faq"}'
    )
    hybrid: bool | None = Field(default=None, description="vector + BM25; default: the setting")


class SearchResponse(BaseModel):
    hits: list[Hit]  # the Retriever's own dataclass: one definition of a hit
    index_version: str
    cached: bool
    timings_ms: dict[str, float]


class AnswerResponse(SearchResponse):
    answer: str
    model: str
    sources: list[dict[str, Any]]
    cited: list[int]


def create_app(retriever: Retriever | None = None, chat: ChatConfig | None = None) -> FastAPI:
    """The app; without arguments the retriever and chat model come from the settings."""
    state: dict[str, Any] = {"retriever": retriever, "chat": chat}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state["retriever"] is None:
            from llm_data_platform.retrieval import retriever_from_settings

            state["retriever"] = retriever_from_settings()
        if state["chat"] is None:
            state["chat"] = ChatConfig.from_env()
        state["retriever"].embeddings.embed(["warm up"])  # load the model before traffic
        yield

    app = FastAPI(title="llm_data_platform retrieval", lifespan=lifespan)

    def search(request: SearchRequest) -> SearchResult:
        try:
            return state["retriever"].search_detailed(
                request.question, request.k, request.where, request.hybrid
            )
        except ValueError as exc:  # empty question, or a filter Chroma cannot parse
            raise HTTPException(400, str(exc)) from exc
        except LookupError as exc:  # no live index
            raise HTTPException(503, str(exc)) from exc

    @app.post("/search", response_model=SearchResponse)
    def post_search(request: SearchRequest) -> dict:
        result = search(request)
        return _response(result)

    @app.post("/answer", response_model=AnswerResponse)
    def post_answer(request: SearchRequest) -> dict:
        result = search(request)
        started = time.perf_counter()
        try:
            answer = generate_answer(request.question, result.hits, state["chat"])
        except AnswerError as exc:
            status = 503 if not state["chat"].configured else 502
            raise HTTPException(status, str(exc)) from exc
        body = _response(result)
        body["timings_ms"]["answer"] = round((time.perf_counter() - started) * 1000, 3)
        return {**body, **answer.as_dict()}

    @app.get("/health")
    def health() -> dict:
        r: Retriever = state["retriever"]
        try:
            version, count, name = r.index_version, r.count, r.collection.name
        except Exception as exc:  # noqa: BLE001 - the index vanished or Chroma is down
            raise HTTPException(503, f"The RAG index is not available: {exc}") from exc
        return {
            "status": "ok",
            "index_version": version,
            "chunks": count,
            "collection": name,
            "embedding_model": r.embeddings.model_id,
            "dimension": r.embeddings.dimension,
            "hybrid_default": r.hybrid,
            "chat_model": state["chat"].model if state["chat"].configured else None,
        }

    return app


def _response(result: SearchResult) -> dict:
    return {
        "hits": [h.as_dict() for h in result.hits],
        "index_version": result.index_version,
        "cached": result.cached,
        "timings_ms": dict(result.timings_ms),
    }
