"""Embedding cache in the lake, keyed by (model id, content hash).

Text that was embedded once is never sent to the model again, whichever document, version or
day it comes from. Files are append-only and named by their content, so writing the same
batch twice leaves one file.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.embedding_text import input_hash


def model_slug(model_id: str) -> str:
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", model_id).strip("-")


class EmbeddingCache:
    def __init__(self, lake: LakeResource, model_id: str, dimension: int):
        self.lake = lake
        self.model_id = model_id
        self.dimension = dimension
        self.directory = lake.path("curated", "embedding_cache", f"model={model_slug(model_id)}")

    def lookup(self, hashes: list[str]) -> dict[str, np.ndarray]:
        if not hashes or not self.lake.exists(self.directory):
            return {}
        fs, _ = self.lake.filesystem()
        files = [
            info.path
            for info in fs.get_file_info(pafs.FileSelector(self.directory))
            if info.path.endswith(".parquet") and not posixpath.basename(info.path).startswith(".")
        ]
        if not files:
            return {}
        import pyarrow.dataset as pads  # pulls pandas: imported where used

        dataset = pads.dataset(files, filesystem=fs, format="parquet")
        found = dataset.to_table(
            filter=pc.field("content_hash").isin(pa.array(sorted(set(hashes)))),
            columns=["content_hash", "embedding"],
        )
        if not found.num_rows:
            return {}
        vectors = to_matrix(found["embedding"], self.dimension)
        return dict(zip(found["content_hash"].to_pylist(), vectors, strict=True))

    def add(self, hashes: list[str], vectors: np.ndarray) -> int:
        if not hashes:
            return 0
        table = pa.table(
            {
                "content_hash": pa.array(hashes, pa.string()),
                "embedding": embeddings_array(vectors),
            }
        ).sort_by("content_hash")
        name = hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:20]
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return self.lake.write_bytes(
            posixpath.join(self.directory, f"part-{name}.parquet"), buffer.getvalue()
        )

    def embed(
        self, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray]
    ) -> tuple[np.ndarray, int]:
        """Vectors of ``texts`` in order, only the ones never seen sent to ``embed`` (and
        cached); returns (matrix, how many were embedded now). The gate's questions are the
        same from one index version to the next: after the first, evaluating costs queries."""
        hashes = [input_hash(t) for t in texts]
        known = self.lookup(hashes)
        todo = sorted({h for h in hashes if h not in known})
        if todo:
            by_hash = dict(zip(hashes, texts, strict=True))
            vectors = embed([by_hash[h] for h in todo])
            self.add(todo, vectors)
            known.update(zip(todo, vectors, strict=True))
        if not hashes:
            return np.zeros((0, self.dimension), np.float32), 0
        return np.stack([known[h] for h in hashes]), len(todo)


def embeddings_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def to_matrix(column: pa.ChunkedArray | pa.Array, dimension: int) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not len(array):
        return np.zeros((0, dimension), np.float32)
    flat = array.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(len(array), -1)
