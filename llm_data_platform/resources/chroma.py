"""Chroma vector store: a persistent folder by default, a Chroma server when configured."""

from __future__ import annotations

import re
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

_NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


def collection_name(prefix: str, model_id: str, dimension: int) -> str:
    """One collection per embedding model, so vectors of two models are never mixed."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", model_id).strip("-._")
    name = f"{prefix}-{slug}-{dimension}"
    if not _NAME_OK.match(name):
        raise ValueError(
            f"Chroma collection name {name!r} is invalid: 3-512 characters of [a-zA-Z0-9._-], "
            "starting and ending with a letter or digit. Change LDP_CHROMA_COLLECTION."
        )
    return name


class ChromaResource(dg.ConfigurableResource):
    """``path`` for an embedded PersistentClient (one writer process at a time: the
    ``chroma`` concurrency pool), or ``host``/``port`` for a Chroma server."""

    path: str = ""
    host: str = ""
    port: int = 8000
    collection_prefix: str = "kb_chunks"

    _client: Any = PrivateAttr(default=None)

    def get_client(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            settings = ChromaSettings(anonymized_telemetry=False)
            if self.host:
                self._client = chromadb.HttpClient(
                    host=self.host, port=self.port, settings=settings
                )
            elif self.path:
                self._client = chromadb.PersistentClient(path=self.path, settings=settings)
            else:
                raise dg.Failure("Chroma needs LDP_CHROMA_PATH (a folder) or LDP_CHROMA_HOST.")
        return self._client

    def get_collection(self, model_id: str, dimension: int, create: bool = True) -> Any:
        name = collection_name(self.collection_prefix, model_id, dimension)
        client = self.get_client()
        if not create:
            return client.get_collection(name, embedding_function=None)
        return client.get_or_create_collection(
            name,
            embedding_function=None,
            metadata={"embedding_model": model_id, "dimension": dimension, "hnsw:space": "cosine"},
        )

    @property
    def location(self) -> str:
        return f"http://{self.host}:{self.port}" if self.host else self.path
