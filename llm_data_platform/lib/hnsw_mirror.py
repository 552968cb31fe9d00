"""Chroma's own HNSW graph of a live collection, loaded in process to answer its queries.

Why: at 100k chunks Chroma's query for ids and distances costs ~2 ms, of which the HNSW walk
is ~1 ms and the rest Chroma's per-query machinery (Rust runtime, SQLite look-ups). The same
graph searched in process answers in ~1 ms. An index of our own would not do: HNSW is
approximate, and a graph built apart (another insertion order, other threads) finds other
neighbours than Chroma's, so its hits would differ from what Chroma returns. This loads the
very files Chroma's embedded PersistentClient wrote for the collection's vector segment
(chroma-hnswlib, the library Chroma's format comes from) and searches with Chroma's
``ef_search``.

Chroma stays the store of record: the copy is loaded once per index version, only when Chroma
has persisted every record of the collection (its segment's ``max_seq_id`` is the log's
newest), only when it holds exactly the collection's count, and only after probe queries
return the same ids and distances as Chroma's. Anything else (a Chroma server, an unknown
file format, a filter) leaves the query to Chroma.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
from typing import Any

import numpy as np

PROBES = 16
PROBE_K = 20
TOLERANCE = 1e-5


class HnswMirror:
    """Ids and cosine distances of the nearest chunks, as Chroma's query returns them."""

    def __init__(self, index: Any, labels: list[str | None], nbytes: int = 0):
        self.index = index
        self.labels = labels
        self.nbytes = nbytes  # the graph and vectors as loaded (level 0 dominates)

    @classmethod
    def load(cls, chroma_path: str, collection: Any) -> HnswMirror:
        """Raises ``ValueError`` when the persisted segment is not a complete copy."""
        import hnswlib

        segment = _vector_segment(chroma_path, str(collection.id))
        folder = os.path.join(chroma_path, segment)
        with open(os.path.join(folder, "index_metadata.pickle"), "rb") as f:
            meta = pickle.load(f)  # noqa: S301 - Chroma's own file, in our own data folder
        label_to_id = meta["label_to_id"]
        count = collection.count()
        if len(label_to_id) != count:
            raise ValueError(f"the persisted graph holds {len(label_to_id)} of {count} chunks")
        labels: list[str | None] = [None] * (max(label_to_id, default=-1) + 1)
        for label, chunk_id in label_to_id.items():
            labels[int(label)] = str(chunk_id)
        del meta, label_to_id  # the pickle's other maps: not kept
        hnsw = collection.configuration["hnsw"]
        if hnsw.get("space") != "cosine":
            raise ValueError(f"the collection's space is {hnsw.get('space')!r}, not cosine")
        sample = collection.get(limit=1, include=["embeddings"])["embeddings"]
        index = hnswlib.Index(space="cosine", dim=len(sample[0]))
        index.load_index(folder, is_persistent_index=True, max_elements=len(labels))
        if index.get_current_count() < count:  # more: deleted ones, kept to route searches
            raise ValueError("the graph holds fewer elements than Chroma's label map")
        index.set_ef(int(hnsw["ef_search"]))
        index.set_num_threads(1)  # one query at a time: no thread pool per call
        files = ("data_level0.bin", "link_lists.bin", "length.bin")
        return cls(index, labels, sum(os.path.getsize(os.path.join(folder, f)) for f in files))

    def query(self, vector: np.ndarray, n: int) -> tuple[list[str], list[float]]:
        found, distances = self.index.knn_query(np.asarray(vector, np.float32)[None, :], k=n)
        ids = [self.labels[int(label)] for label in found[0]]
        if None in ids:
            raise RuntimeError("a label Chroma does not map to a chunk")
        return ids, distances[0].tolist()  # type: ignore[return-value]

    def validate(self, collection: Any, seed: int = 0) -> None:
        """Probe queries must return Chroma's ids, in Chroma's order, at Chroma's distances."""
        dimension = self.index.dim
        rng = np.random.default_rng(seed)
        probes = rng.standard_normal((PROBES, dimension), dtype=np.float32)
        n = min(PROBE_K, collection.count())
        for probe in probes:
            ids, distances = self.query(probe, n)
            got = collection.query(query_embeddings=[probe], n_results=n, include=["distances"])
            same = ids == got["ids"][0] and np.allclose(
                distances, got["distances"][0], rtol=0, atol=TOLERANCE
            )
            if not same:
                raise ValueError("a probe query found other neighbours than Chroma")


def _vector_segment(chroma_path: str, collection_id: str) -> str:
    """The collection's vector segment, if Chroma has persisted every record of it."""
    uri = f"file:{os.path.join(chroma_path, 'chroma.sqlite3')}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as con:
        row = con.execute(
            "select s.id, m.seq_id from segments s left join max_seq_id m on m.segment_id = s.id"
            " where s.collection = ? and s.scope = 'VECTOR'",
            (collection_id,),
        ).fetchone()
        if row is None:
            raise ValueError("the collection has no vector segment on disk")
        (newest,) = con.execute(
            "select max(seq_id) from embeddings_queue where topic like ?",
            (f"%/{collection_id}",),
        ).fetchone()
    segment, persisted = row
    if newest is not None and (persisted is None or persisted < newest):
        raise ValueError(f"Chroma has persisted records up to {persisted} of {newest}")
    return segment
