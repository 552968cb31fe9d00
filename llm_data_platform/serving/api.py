"""The retrieval API for chatbot backends (FastAPI). Start it with ``ldp serve``.

POST /search   question, k, where, hybrid  → hits with lineage, index_version, timings (ms)
POST /answer   the same in                 → a grounded answer citing [n], its sources, hits
GET  /health                               → index version, chunk count, embedding model, mirror

What any client can send is bounded before it costs anything: an optional bearer token is
checked, and an oversized body refused (413), before the body is read; a ``where`` filter is
checked against the grammar and limits below before it reaches Chroma. Errors say where and
why, never echo the input back, and no malformed request gets a 5xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers

from llm_data_platform.retrieval import Hit, Retriever, SearchResult
from llm_data_platform.serving.answer import AnswerError, ChatConfig, generate_answer
from llm_data_platform.serving.runtime import passive_openmp

# A longest valid question (4,000 characters, each a \\uXXXX\\uXXXX escape) plus a filter fits
# in the default body limit (LDP_API_MAX_BODY_BYTES).
MAX_QUESTION_CHARS = 4000
MAX_K = 100
DEFAULT_MAX_BODY_BYTES = 65_536
# `where`: Chroma's own grammar, bounded. Chroma fails with a 500 on a 100-deep $and and on a
# few thousand $or terms (SQLite's expression depth); these limits stay far below both.
MAX_WHERE_DEPTH = 8
MAX_WHERE_CLAUSES = 64
MAX_WHERE_LIST = 256
MAX_WHERE_STRING = 1024
INT64 = (-(2**63), 2**63 - 1)
_DIGITS = re.compile(r"[0-9]{1,18}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
_LOGICAL = {"$and", "$or"}
_ORDERED = {"$gt", "$gte", "$lt", "$lte"}
_LISTS = {"$in", "$nin"}
_SCALAR_OPS = {"$eq", "$ne", "$contains", "$not_contains"}
_OPERATORS = sorted(_ORDERED | _LISTS | _SCALAR_OPS)


class SearchRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int = Field(default=5, ge=1, le=MAX_K)
    where: dict[str, Any] | None = Field(
        default=None,
        description='Chroma metadata filter, e.g. {"doc_id": "kb/faq"}; {} means no filter',
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


def create_app(
    retriever: Retriever | None = None,
    chat: ChatConfig | None = None,
    *,
    api_token: str = "",
    docs: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The app; without a retriever or chat model they come from the settings. ``api_token``
    (LDP_API_TOKEN) set: every request needs it as a bearer token. ``docs`` (LDP_API_DOCS):
    serve /docs, /redoc and /openapi.json. ``max_body_bytes`` (LDP_API_MAX_BODY_BYTES)."""
    passive_openmp()  # before the lifespan loads the embedding model
    state: dict[str, Any] = {"retriever": retriever, "chat": chat}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state["retriever"] is None:
            from llm_data_platform.retrieval import retriever_from_settings

            state["retriever"] = retriever_from_settings()
        if state["chat"] is None:
            state["chat"] = ChatConfig.from_env()
        state["retriever"].embeddings.embed(["warm up"])  # load the model before traffic
        # texts and lineage served from memory; built in the background (lib/chunk_mirror.py)
        state["retriever"].start_mirror()
        yield

    app = FastAPI(
        title="llm_data_platform retrieval",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if api_token:
        app.add_middleware(BearerToken, token=api_token)  # added last: runs first

    _add_routes(app, state)
    return app


def _add_routes(app: FastAPI, state: dict[str, Any]) -> None:
    """POST /search, POST /answer, GET /health over ``state``'s retriever and chat model."""

    def search(request: SearchRequest) -> SearchResult:
        if not request.question.split():
            raise HTTPException(400, "The question is empty (only whitespace).")
        where = checked_where(request.where)
        try:
            return state["retriever"].search_detailed(
                request.question, request.k, where, request.hybrid
            )
        except LookupError as exc:  # no live index: the message names the command
            raise HTTPException(503, str(exc)) from exc
        except Exception as exc:
            if _index_refused(exc):  # a filter Chroma cannot apply; its message echoes it
                raise HTTPException(400, "The index cannot apply this where filter.") from exc
            raise

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
            "chunk_mirror": r.mirror_status(),
            "chat_model": state["chat"].model if state["chat"].configured else None,
        }


def _response(result: SearchResult) -> dict:
    return {
        "hits": [h.as_dict() for h in result.hits],
        "index_version": result.index_version,
        "cached": result.cached,
        "timings_ms": dict(result.timings_ms),
    }


# -- the where filter --------------------------------------------------------------------------
class FilterError(HTTPException):
    """A 400 that names the place in the filter (operators and list positions, never a value
    or a field name the client sent) and what is wrong there."""

    def __init__(self, path: str, problem: str):
        super().__init__(400, f"{path}: {problem}")


def checked_where(where: dict[str, Any] | None) -> dict[str, Any] | None:
    """The filter to hand to Chroma. ``{}`` is no filter, as ``null`` is: the results cache
    already treated it so, Chroma refused it, and the answer depended on which was asked."""
    if not where:
        return None
    _check_clause(where, "where", 0, [MAX_WHERE_CLAUSES])
    return where


def _check_clause(node: Any, path: str, depth: int, budget: list[int]) -> None:
    if not isinstance(node, dict) or len(node) != 1:
        raise FilterError(path, "expected an object with one key: a field name, $and or $or")
    budget[0] -= 1
    if budget[0] < 0:
        raise FilterError("where", f"more than {MAX_WHERE_CLAUSES} clauses")
    ((key, value),) = node.items()
    if key in _LOGICAL:
        if depth >= MAX_WHERE_DEPTH:
            raise FilterError(path, f"$and/$or nested deeper than {MAX_WHERE_DEPTH} levels")
        if not isinstance(value, list) or len(value) < 2:
            raise FilterError(f"{path}.{key}", "expected a list of at least two filters")
        for i, item in enumerate(value):
            _check_clause(item, f"{path}.{key}[{i}]", depth + 1, budget)
        return
    if not isinstance(key, str) or not _FIELD_NAME.fullmatch(key):
        raise FilterError(path, "a field name is 1-128 letters, digits or _.:- (or $and/$or)")
    _check_condition(value, f"{path}.<field>")


def _check_condition(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        return _check_scalar(value, path)
    if len(value) != 1:
        raise FilterError(path, "an operator object has exactly one operator")
    ((op, operand),) = value.items()
    if op in _ORDERED:
        return _check_number(operand, f"{path}.{op}")
    if op in _LISTS:
        return _check_list(operand, f"{path}.{op}")
    if op in _SCALAR_OPS:
        return _check_scalar(operand, f"{path}.{op}")
    raise FilterError(path, f"unknown operator: use one of {', '.join(_OPERATORS)}")


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, str):
        if len(value) > MAX_WHERE_STRING:
            raise FilterError(path, f"a string of more than {MAX_WHERE_STRING} characters")
        if not _is_unicode(value):
            raise FilterError(path, "a string with a lone surrogate (not valid Unicode)")
    elif not isinstance(value, bool | int | float):
        raise FilterError(path, "expected a string, a number or a boolean")
    elif not isinstance(value, bool):
        _check_number(value, path)


def _check_number(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FilterError(path, "expected a number")
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise FilterError(path, "an integer outside the 64-bit range")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(path, "a number that is not finite")


def _check_list(value: Any, path: str) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_WHERE_LIST:
        raise FilterError(path, f"expected a list of 1 to {MAX_WHERE_LIST} values")
    if len({type(v) for v in value}) != 1:
        raise FilterError(path, "the values of one list must all be of one type")
    for i, item in enumerate(value):
        _check_scalar(item, f"{path}[{i}]")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _index_refused(exc: Exception) -> bool:
    """Chroma's verdict on a request it cannot run (its 400s), as opposed to its failures."""
    if isinstance(exc, ValueError):
        return True
    code = getattr(exc, "code", None)
    try:
        return type(exc).__module__.startswith("chromadb") and callable(code) and code() == 400
    except Exception:  # noqa: BLE001 - an odd error object is not a refusal
        return False


# -- errors that never echo the input ----------------------------------------------------------
_LOC_NAMES = {"body", "query", "path", "header", "[key]", *SearchRequest.model_fields}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and why only. FastAPI's default handler echoes the input: a 10 MB
    question came back as a 10 MB body, and a value JSON cannot encode (a lone surrogate,
    1e400) turned the error into a 500."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": [_safe_error(e) for e in errors[:20]]}, status_code=422)


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    loc = [p if isinstance(p, int) or p in _LOC_NAMES else "<key>" for p in error.get("loc", ())]
    msg, kind = str(error.get("msg", "")), str(error.get("type", ""))
    return {"loc": loc[:12], "msg": _clip(msg), "type": _clip(kind)}


def _clip(text: str, limit: int = 200) -> str:
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


# -- ASGI guards: they run before FastAPI reads a byte of the body ----------------------------
ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int):
        super().__init__(413, f"Request body over {max_bytes} bytes.")


class BodySizeLimit:
    """413 for a body over ``max_bytes``: at once when its Content-Length says so (nothing is
    read), else as soon as the bytes received pass the limit (chunked uploads, lying
    headers). Memory per request is bounded by the limit, not by what the client sends."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await _reply(send, BodyTooLarge(self.max_bytes))
        received = 0
        started = False

        async def capped_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # FastAPI turns it into the 413
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, tracked_send)
        except BodyTooLarge as exc:  # raised where FastAPI does not catch it
            if started:
                raise
            await _reply(send, exc)


class BearerToken:
    """401 unless the request carries ``Authorization: Bearer <token>``. Both sides are hashed
    before a constant-time comparison, so neither the token nor its length leaks by timing."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.digest = hashlib.sha256(token.encode("utf-8")).digest()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and not self.allowed(scope):
            error = HTTPException(401, "A bearer token is required (Authorization: Bearer …).")
            return await _reply(send, error, [(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)

    def allowed(self, scope: dict) -> bool:
        scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
        presented = hashlib.sha256(credentials.strip().encode("latin-1")).digest()
        return hmac.compare_digest(presented, self.digest) and scheme.lower() == "bearer"


def _content_length(scope: dict) -> int | None:
    """The declared length, or None when absent or not a plain number (then the cap counts)."""
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if _DIGITS.fullmatch(value) else None


async def _reply(send: Callable, error: HTTPException, headers: list | None = None) -> None:
    """A JSON error sent straight from the guard; the connection closes after it, since the
    body the client may still be sending is never read."""
    body = json.dumps({"detail": error.detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
