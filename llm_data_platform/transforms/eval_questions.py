"""Evaluation questions for a knowledge base that ships none: each document's own title and
headings, asked of the index, should find that document.

A title or a heading is what a person looking for that page would type, and the answer is
known without anyone writing it down. The set is drawn deterministically (by a hash of the
document and the query) and kept stable: a document keeps the questions it was first given,
so a later, vandalised version is measured against what it used to answer, not against its
new headings.
"""

from __future__ import annotations

import hashlib
import re

import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.groups import latest_per_key

EVAL_SCHEMA = pa.schema(
    [
        ("question", pa.string()),
        ("doc_id", pa.string()),  # the first relevant document
        ("doc_ids", pa.list_(pa.string())),  # every relevant document
        ("source", pa.string()),  # given (written by people) | generated (titles, headings)
    ]
)

_HEADING = re.compile(r"^#{1,3}\s+(.+?)\s*#*\s*$", re.M)
MIN_WORDS, MAX_WORDS = 2, 20


def _queries(title: str | None, text: str | None, per_doc: int) -> list[str]:
    found: list[str] = []
    for candidate in [title or "", *_HEADING.findall(text or "")]:
        query = " ".join(candidate.split())
        if MIN_WORDS <= len(query.split()) <= MAX_WORDS and query.lower() not in {
            q.lower() for q in found
        }:
            found.append(query)
        if len(found) == per_doc:
            break
    return found


def generated_questions(
    documents: pa.Table, previous: pa.Table | None = None, per_doc: int = 2, limit: int = 300
) -> pa.Table:
    """Questions from the live documents (``documents_clean`` rows, latest version each).

    A query that names several documents (two pages with the same title) has them all as
    relevant. Documents with questions in ``previous`` keep those; deleted ones lose them.
    """
    live = documents.filter(pc.invert(pc.fill_null(documents["is_deleted"], False)))
    live_ids = set(live["doc_id"].to_pylist())
    kept = []
    if previous is not None and previous.num_rows:
        mine = previous.filter(pc.equal(previous["source"], "generated")).to_pylist()
        kept = [r for r in mine if set(r["doc_ids"]) & live_ids]
    asked = {d for r in kept for d in r["doc_ids"]}
    by_query: dict[str, list[str]] = {}
    for row in live.select(["doc_id", "title", "text"]).to_pylist():
        if row["doc_id"] in asked:
            continue
        for query in _queries(row["title"], row["text"], per_doc):
            by_query.setdefault(query, []).append(row["doc_id"])
    new = [
        {"question": q, "doc_id": sorted(d)[0], "doc_ids": sorted(d), "source": "generated"}
        for q, d in by_query.items()
    ]
    new.sort(key=lambda r: hashlib.sha1(f"{r['doc_id']}\n{r['question']}".encode()).hexdigest())
    rows = kept + new[: max(0, limit - len(kept))]
    return pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)


def latest_documents(documents: pa.Table) -> pa.Table:
    """One row per document: its latest update across the days read."""
    return latest_per_key(documents, "doc_id", "updated_at")[0]
