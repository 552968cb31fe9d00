"""What the embedding model sees for a chunk, and the cache key derived from it.

Chunk text does not repeat its headings (they live in ``heading_path``); prefixing the heading
path gives the vector the context a reader gets from the page ("The try statement > except
clause"), which lifts retrieval of short sections noticeably.
"""

import hashlib

import pyarrow as pa


def embedding_input(heading_path: str | None, text: str) -> str:
    return f"{heading_path}\n\n{text}" if heading_path else text


def embedding_inputs(chunks: pa.Table) -> list[str]:
    return [
        embedding_input(h, t)
        for h, t in zip(chunks["heading_path"].to_pylist(), chunks["text"].to_pylist(), strict=True)
    ]


def input_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
