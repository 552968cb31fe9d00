"""One day of raw document events → the latest clean version of each document.

Plain functions, no Dagster import.

Rules (:func:`clean_documents`):

* The latest event per ``doc_id`` wins: greatest ``updated_at``, ties broken by the greatest
  ``source_file`` then ``source_line`` (the later line of the later file). Older events of the
  same document within the day are counted as ``superseded``.
* A ``delete`` as the latest event gives a tombstone row: ``is_deleted=True``, ``text`` null,
  ``version``/``format``/``title`` null. Tombstones are rows of ``clean`` (they are counted in
  ``kept`` and, separately, in ``deletions``) so deletions propagate to chunks and the index.
* An ``upsert`` as the latest event is extracted with :func:`html_extract.extract_text_with_info`.
  Extraction errors, documents over a resource limit (``over_limit``: nesting, size, time; see
  :mod:`html_extract`), unknown formats, missing content and empty extracted text never crash
  the run: the event goes to ``dropped`` with its reason. The document then has no row in this day's
  ``clean`` (its older same-day events stay superseded; an earlier day's version is untouched).
* ``version`` is the raw content hash; when the raw row has none it is computed as
  sha256(content). ``format`` is written canonical ("html" / "markdown" / "text"; aliases such
  as "md" or "txt" are accepted).

``counts`` keys (all ints): ``received``, ``superseded``, ``kept``, ``deletions``,
``extracted_html`` / ``extracted_markdown`` / ``extracted_text`` (successful extractions),
``html_lxml_fallback`` (HTML pages extracted by the lxml fallback because trafilatura found
nothing; included in ``extracted_html``), ``reused`` (versions whose text a previous run of
the day had extracted: not extracted again, not in ``extracted_*``), and
``dropped_<reason>`` for every reason in :data:`DROP_REASONS` (zero when none). Invariant,
checked on every call: ``received == kept + superseded + sum(dropped_*)``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform import schemas
from llm_data_platform.transforms.html_extract import (
    SUPPORTED_FORMATS,
    OverLimit,
    canonical_format,
    extract_text_with_info,
)

log = logging.getLogger(__name__)

DROP_MISSING_DOC_ID = "missing_doc_id"
DROP_UNKNOWN_OP = "unknown_op"
DROP_MISSING_CONTENT = "missing_content"
DROP_UNSUPPORTED_FORMAT = "unsupported_format"
DROP_EXTRACTION_FAILED = "extraction_failed"
DROP_OVER_LIMIT = "over_limit"
DROP_EMPTY_TEXT = "empty_text"
DROP_REASONS = (
    DROP_MISSING_DOC_ID,
    DROP_UNKNOWN_OP,
    DROP_MISSING_CONTENT,
    DROP_UNSUPPORTED_FORMAT,
    DROP_EXTRACTION_FAILED,
    DROP_OVER_LIMIT,
    DROP_EMPTY_TEXT,
)

# Rejected events, beside documents_clean. event_id/doc_id/reason first; the rest is lineage.
DROPPED_DOCUMENTS = pa.schema(
    [
        ("event_id", pa.string()),
        ("doc_id", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),  # error message, when there is one
        ("format", pa.string()),
        ("updated_at", schemas.TS),
        ("source_file", pa.string()),
        ("source_line", pa.int32()),
    ]
)

_MAX_DETAIL = 500


@dataclass
class DocumentCleaningResult:
    clean: pa.Table  # schemas.DOCUMENTS_CLEAN, one row per document, sorted by doc_id
    dropped: pa.Table  # DROPPED_DOCUMENTS
    counts: dict[str, int] = field(default_factory=dict)


def _column(table: pa.Table, name: str, type_: pa.DataType) -> pa.ChunkedArray | pa.Array:
    if name in table.column_names:
        col = table[name]
        return col if col.type == type_ else col.cast(type_)
    return pa.nulls(table.num_rows, type_)


def _latest_mask(raw: pa.Table) -> tuple[pa.Table, list[bool]]:
    """``raw`` sorted by doc_id then recency (latest first), and a first-of-doc flag per row."""
    keyed = pa.table(
        {
            "doc_id": _column(raw, "doc_id", pa.string()),
            "updated_at": _column(raw, "updated_at", schemas.TS),
            "source_file": _column(raw, "source_file", pa.string()),
            "source_line": _column(raw, "source_line", pa.int32()),
            "row": pa.array(range(raw.num_rows), pa.int64()),
        }
    )
    order = pc.sort_indices(
        keyed,
        sort_keys=[
            ("doc_id", "ascending"),
            ("updated_at", "descending"),
            ("source_file", "descending"),
            ("source_line", "descending"),
            ("row", "descending"),
        ],  # nulls sort last (Arrow's default): a null timestamp/file/line counts as oldest
    )
    ordered = raw.take(order)
    ids = _column(ordered, "doc_id", pa.string()).to_pylist()
    first = [i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))]
    return ordered, first


@dataclass
class _CleaningOutput:
    """The rows and counts :func:`clean_documents` accumulates over the events of one day;
    ``cols`` are the day's raw columns in latest-first order, indexed by event position."""

    cols: dict[str, list]
    known: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (version, format) → text
    counts: Counter[str] = field(default_factory=Counter)
    clean_rows: dict[str, list] = field(
        default_factory=lambda: {name: [] for name in schemas.DOCUMENTS_CLEAN.names}
    )
    dropped_rows: dict[str, list] = field(
        default_factory=lambda: {name: [] for name in DROPPED_DOCUMENTS.names}
    )

    def drop(self, i: int, reason: str, detail: str | None = None) -> None:
        """Event ``i`` goes to ``dropped`` with its reason, so a bad event is visible, not lost."""
        cols, dropped_rows = self.cols, self.dropped_rows
        self.counts[f"dropped_{reason}"] += 1
        dropped_rows["event_id"].append(cols["event_id"][i])
        dropped_rows["doc_id"].append(cols["doc_id"][i])
        dropped_rows["reason"].append(reason)
        dropped_rows["detail"].append(detail[:_MAX_DETAIL] if detail else None)
        dropped_rows["format"].append(cols["format"][i])
        dropped_rows["updated_at"].append(cols["updated_at"][i])
        dropped_rows["source_file"].append(cols["source_file"][i])
        dropped_rows["source_line"].append(cols["source_line"][i])

    def keep(
        self, i: int, *, deleted: bool, text: str | None, version: str | None, fmt: str | None
    ) -> None:
        """Event ``i`` becomes its document's row of ``clean`` (a tombstone when ``deleted``)."""
        cols, clean_rows = self.cols, self.clean_rows
        self.counts["kept"] += 1
        clean_rows["doc_id"].append(cols["doc_id"][i])
        clean_rows["version"].append(version)
        clean_rows["is_deleted"].append(deleted)
        clean_rows["title"].append(None if deleted else cols["title"][i])
        clean_rows["text"].append(text)
        clean_rows["format"].append(fmt)
        clean_rows["source_uri"].append(cols["source_uri"][i])
        clean_rows["updated_at"].append(cols["updated_at"][i])
        clean_rows["event_id"].append(cols["event_id"][i])


def _clean_event(out: _CleaningOutput, i: int, is_latest: bool) -> None:
    """Gives event ``i`` exactly one outcome: dropped, superseded, tombstone or extracted."""
    cols = out.cols
    doc_id = cols["doc_id"][i]
    if doc_id is None or not str(doc_id).strip():
        out.drop(i, DROP_MISSING_DOC_ID)
        return
    if not is_latest:
        out.counts["superseded"] += 1
        return
    op = (cols["op"][i] or "").strip().lower()
    if op == "delete":
        out.counts["deletions"] += 1
        out.keep(i, deleted=True, text=None, version=None, fmt=None)
        return
    if op != "upsert":
        out.drop(i, DROP_UNKNOWN_OP, f"op={cols['op'][i]!r}")
        return
    _clean_upsert(out, i, doc_id)


def _clean_upsert(out: _CleaningOutput, i: int, doc_id: str) -> None:
    """Extracts the latest upsert of a document; any failure drops the event rather than the
    partition."""
    cols = out.cols
    content = cols["content"][i]
    if content is None:
        out.drop(i, DROP_MISSING_CONTENT)
        return
    fmt = canonical_format(cols["format"][i])
    if fmt is None:
        out.drop(i, DROP_UNSUPPORTED_FORMAT, f"format={cols['format'][i]!r}")
        return
    version = cols["version"][i] or hashlib.sha256(content.encode("utf-8")).hexdigest()
    known = out.known.get((version, fmt))
    if known is not None:  # this version was extracted before: same bytes, same text
        out.counts["reused"] += 1
        out.keep(i, deleted=False, text=known, version=version, fmt=fmt)
        return
    try:
        extraction = extract_text_with_info(content, fmt)
    except OverLimit as exc:  # a hostile or pathological document: bounded, then dropped
        log.warning("%s (event %s) is over a limit: %s", doc_id, cols["event_id"][i], exc)
        out.drop(i, DROP_OVER_LIMIT, str(exc))
        return
    except Exception as exc:  # one bad document must not fail the partition
        log.warning("extraction of %s (event %s) failed: %r", doc_id, cols["event_id"][i], exc)
        out.drop(i, DROP_EXTRACTION_FAILED, f"{type(exc).__name__}: {exc}")
        return
    if not extraction.text.strip():
        out.drop(i, DROP_EMPTY_TEXT)
        return
    out.counts[f"extracted_{fmt}"] += 1
    if extraction.used_fallback:
        out.counts["html_lxml_fallback"] += 1
    out.keep(i, deleted=False, text=extraction.text, version=version, fmt=fmt)


def _checked_counts(counts: Counter[str]) -> dict[str, int]:
    """Every documented count key (zero when none), after checking that no event was lost."""
    result_counts = {
        key: int(counts.get(key, 0))
        for key in (
            "received",
            "superseded",
            "kept",
            "deletions",
            *(f"extracted_{f}" for f in SUPPORTED_FORMATS),
            "html_lxml_fallback",
            "reused",
            *(f"dropped_{r}" for r in DROP_REASONS),
        )
    }
    dropped_total = sum(v for k, v in result_counts.items() if k.startswith("dropped_"))
    if result_counts["received"] != (
        result_counts["kept"] + result_counts["superseded"] + dropped_total
    ):
        raise RuntimeError(f"document cleaning lost track of events: {result_counts}")
    return result_counts


def known_texts(previous: pa.Table | None) -> dict[tuple[str, str], str]:
    """(version, format) → extracted text of a previous clean table: what a re-run of the
    day need not extract again (a 2-page edit re-extracts 2 pages, not the whole day)."""
    if previous is None or not previous.num_rows:
        return {}
    live = previous.filter(pc.invert(pc.fill_null(previous["is_deleted"], False)))
    rows = zip(
        live["version"].to_pylist(),
        live["format"].to_pylist(),
        live["text"].to_pylist(),
        strict=True,
    )
    return {(v, f): t for v, f, t in rows if v and f and t}


def clean_documents(
    raw: pa.Table, known: Mapping[tuple[str, str], str] | None = None
) -> DocumentCleaningResult:
    """Latest clean version (or tombstone) of every document in one day of raw events;
    versions in ``known`` (see :func:`known_texts`) reuse their text instead of extracting."""
    ordered, first = _latest_mask(raw) if raw.num_rows else (raw, [])
    cols = {
        name: _column(ordered, name, schemas.RAW_DOCUMENTS.field(name).type).to_pylist()
        for name in schemas.RAW_DOCUMENTS.names
    }
    out = _CleaningOutput(cols, known or {})
    out.counts["received"] = raw.num_rows
    for i, is_latest in enumerate(first):
        _clean_event(out, i, is_latest)

    result_counts = _checked_counts(out.counts)
    clean = pa.Table.from_pydict(out.clean_rows, schema=schemas.DOCUMENTS_CLEAN)
    dropped = pa.Table.from_pydict(out.dropped_rows, schema=DROPPED_DOCUMENTS)
    return DocumentCleaningResult(clean=clean, dropped=dropped, counts=result_counts)
