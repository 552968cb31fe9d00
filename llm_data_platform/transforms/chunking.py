"""Token-aware, structure-respecting chunking of clean document text.

Plain functions, no Dagster import.

How a text is cut (:func:`chunk_text`):

1. **Sections.** Markdown ATX headings (``#`` … ``######`` at the start of a line, at most three
   spaces of indentation) split the text into sections; each section carries its heading path
   ``"H1 > H2 > H3"``. Heading lines themselves are not repeated inside chunk text: they are the
   chunk's ``heading_path`` (embed ``heading_path`` together with ``text`` for retrieval).
   Text before the first heading has the path ``""``. A section without body text yields no
   chunk. Sections are packed independently, so editing one section never changes the chunks
   (nor the chunk ids) of another.
2. **Units.** Inside a section: paragraphs (blank-line separated), then sentences, then lines
   (for long code/list blocks without sentence punctuation), then words (whitespace separated),
   then, as a last resort for a single "word" longer than ``max_tokens`` (CJK runs, ASCII-art
   rules), character pieces.
3. **Packing.** Units are packed greedily: a unit that fits the current chunk joins it; one that
   does not fit but fits an empty chunk starts the next chunk (so paragraphs and sentences stay
   whole); one larger than ``max_tokens`` is opened and its children are packed the same way.
4. **Overlap.** When a chunk is closed, its trailing *whole* sentences (or lines), up to
   ``overlap_tokens`` in total and as long as they leave room for the next unit, are carried to
   the start of the next chunk of the same section.

Every chunk is a contiguous slice of the input: ``text[char_start:char_end] == chunk.text``.
Token counts are real counts of the chunk text by ``count`` (the embedding model's WordPiece
tokenizer by default), made in batches: one call for all sentences of a document, one for the
pieces of oversized units if any, and one final call that re-counts every chunk; the final
count is what ``n_tokens`` reports, and ``n_tokens <= max_tokens`` always holds.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform import schemas
from llm_data_platform.transforms.tokenizer import count_tokens

log = logging.getLogger(__name__)

Counter = Callable[[Sequence[str]], list[int]]

DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 30
HEADING_SEPARATOR = " > "

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t\r]*$", re.M)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n")
# End of a sentence: terminal punctuation (plus closing quotes/brackets) followed by whitespace
# and a character that is not a lowercase letter ("e.g. foo" and "3.5 x" do not end one).
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s+[^\sa-z])")
_WORD = re.compile(r"\S+")
_NON_SPACE = re.compile(r"\S")


@dataclass(frozen=True)
class Chunk:
    """One chunk: ``text == source[char_start:char_end]``; ``n_tokens <= max_tokens``."""

    text: str
    heading_path: str
    char_start: int
    char_end: int
    n_tokens: int


@dataclass
class _Node:
    """A span of the text at some structural level; ``children`` is None for a leaf."""

    start: int
    end: int
    tokens: int = 0
    children: list[_Node] | None = None
    overlap_ok: bool = False  # a whole sentence or line: may be carried into the next chunk


@dataclass(frozen=True)
class Section:
    heading_path: str
    start: int  # body start (after the heading line)
    end: int


# --------------------------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------------------------


def split_sections(text: str) -> list[Section]:
    """Sections of ``text`` delimited by Markdown ATX headings, with their heading paths."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body_start = 0
    path = ""
    for m in _HEADING.finditer(text):
        title = m.group(2).strip()
        if not title:
            continue  # a lone "#" line is not a heading
        sections.append(Section(path, body_start, m.start()))
        level = len(m.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        path = HEADING_SEPARATOR.join(t for _, t in stack)
        body_start = m.end()
    sections.append(Section(path, body_start, len(text)))
    return [s for s in sections if _NON_SPACE.search(text, s.start, s.end)]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Span without leading/trailing whitespace, or None when only whitespace."""
    m = _NON_SPACE.search(text, start, end)
    if m is None:
        return None
    s = m.start()
    e = end
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _split(text: str, start: int, end: int, pattern: re.Pattern[str], keep_sep: bool) -> list:
    """Trimmed sub-spans of [start, end) cut at ``pattern`` (after the match if keep_sep)."""
    spans = []
    pos = start
    for m in pattern.finditer(text, start, end):
        cut = m.end() if keep_sep else m.start()
        span = _trim(text, pos, cut)
        if span:
            spans.append(span)
        pos = m.end()
    span = _trim(text, pos, end)
    if span:
        spans.append(span)
    return spans


def _paragraphs(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return _split(text, start, end, _PARAGRAPH_BREAK, keep_sep=False)


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return _split(text, start, end, _SENTENCE_END, keep_sep=True)


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    pos = start
    while pos < end:
        nl = text.find("\n", pos, end)
        stop = end if nl == -1 else nl
        span = _trim(text, pos, stop)
        if span:
            spans.append(span)
        pos = stop + 1
    return spans


def _words(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


# --------------------------------------------------------------------------------------------
# chunking
# --------------------------------------------------------------------------------------------


def _validate(max_tokens: int, overlap_tokens: int) -> None:
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if not isinstance(overlap_tokens, int) or overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must be a non-negative integer, got {overlap_tokens!r}")
    if overlap_tokens >= max_tokens:
        raise ValueError(
            f"overlap_tokens ({overlap_tokens}) must be smaller than max_tokens ({max_tokens})"
        )


def _counted(count: Counter, text: str, spans: list[tuple[int, int]]) -> list[int]:
    if not spans:
        return []
    counts = list(count([text[s:e] for s, e in spans]))
    if len(counts) != len(spans):
        raise ValueError(f"token counter returned {len(counts)} counts for {len(spans)} texts")
    return [int(c) for c in counts]


def _build_tree(
    text: str, sections: list[Section], max_tokens: int, count: Counter
) -> list[list[_Node]]:
    """Paragraph nodes per section, sentences counted in one batch, oversized units opened."""
    per_section: list[list[_Node]] = []
    sentences: list[_Node] = []
    for sec in sections:
        paragraphs = []
        for ps, pe in _paragraphs(text, sec.start, sec.end):
            kids = [_Node(s, e, overlap_ok=True) for s, e in _sentences(text, ps, pe)]
            sentences.extend(kids)
            paragraphs.append(_Node(ps, pe, children=kids))
        per_section.append(paragraphs)

    for node, n in zip(
        sentences, _counted(count, text, [(s.start, s.end) for s in sentences]), strict=True
    ):
        node.tokens = n
    # Open every oversized node, level by level, one counting call per level.
    oversized = [s for s in sentences if s.tokens > max_tokens]
    for level in ("lines", "words", "chars"):
        if not oversized:
            break
        children: list[_Node] = []
        for node in oversized:
            node.children = _open(text, node, level, max_tokens)
            children.extend(node.children)
        counts = _counted(count, text, [(c.start, c.end) for c in children])
        for child, n in zip(children, counts, strict=True):
            child.tokens = n
        oversized = [c for c in children if c.tokens > max_tokens]
    while oversized:  # char pieces still too long for an unusual counter: halve them
        nxt = []
        for node in oversized:
            if node.end - node.start <= 1:
                raise ValueError(
                    f"a single character counts as {node.tokens} tokens (> {max_tokens})"
                )
            mid = (node.start + node.end) // 2
            node.children = [_Node(node.start, mid), _Node(mid, node.end)]
            counts = _counted(count, text, [(c.start, c.end) for c in node.children])
            for child, n in zip(node.children, counts, strict=True):
                child.tokens = n
            nxt.extend(c for c in node.children if c.tokens > max_tokens)
        oversized = nxt
    for paragraphs in per_section:
        for para in paragraphs:
            para.tokens = sum(c.tokens for c in para.children or [])
    return per_section


def _open(text: str, node: _Node, level: str, max_tokens: int) -> list[_Node]:
    """Children of an oversized node at the next finer level that actually splits it."""
    if level == "lines":
        spans = _lines(text, node.start, node.end)
        if len(spans) > 1:
            return [_Node(s, e, overlap_ok=True) for s, e in spans]
        level = "words"
    if level == "words":
        spans = _words(text, node.start, node.end)
        if len(spans) > 1:
            return [_Node(s, e) for s, e in spans]
    # Character pieces: a word piece covers at least one character, so max_tokens characters
    # never exceed max_tokens word pieces (checked by the caller's recount anyway).
    return [
        _Node(s, min(s + max_tokens, node.end)) for s in range(node.start, node.end, max_tokens)
    ]


def _leaves(node: _Node) -> list[_Node]:
    if node.children is None:
        return [node]
    out: list[_Node] = []
    for child in node.children:
        out.extend(_leaves(child))
    return out


def _pack(paragraphs: list[_Node], max_tokens: int, overlap_tokens: int) -> list[list[_Node]]:
    chunks: list[list[_Node]] = []
    cur: list[_Node] = []
    cur_tokens = 0
    carried = 0  # leading leaves of ``cur`` that repeat the previous chunk's tail

    def flush(next_tokens: int) -> None:
        nonlocal cur, cur_tokens, carried
        if len(cur) > carried:
            chunks.append(cur)
        carry: list[_Node] = []
        total = 0
        for leaf in reversed(cur):
            if not leaf.overlap_ok:
                break
            if (
                total + leaf.tokens > overlap_tokens
                or total + leaf.tokens + next_tokens > max_tokens
            ):
                break
            carry.insert(0, leaf)
            total += leaf.tokens
        if len(carry) == len(cur):  # never carry a whole chunk
            carry, total = [], 0
        cur, cur_tokens, carried = carry, total, len(carry)

    def add(node: _Node) -> None:
        nonlocal cur_tokens
        if cur_tokens + node.tokens <= max_tokens:
            cur.extend(_leaves(node))
            cur_tokens += node.tokens
        elif node.tokens <= max_tokens or node.children is None:
            flush(node.tokens)
            cur.extend(_leaves(node))
            cur_tokens += node.tokens
        else:
            for child in node.children:
                add(child)

    for para in paragraphs:
        add(para)
    if len(cur) > carried:
        chunks.append(cur)
    return chunks


def chunk_text(
    text: str,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    count: Counter = count_tokens,
) -> list[Chunk]:
    """Cut ``text`` into token-bounded chunks along its structure (see the module docstring)."""
    _validate(max_tokens, overlap_tokens)
    if not text or not text.strip():
        return []
    sections = split_sections(text)
    trees = _build_tree(text, sections, max_tokens, count)
    packed: list[tuple[str, list[_Node]]] = []
    for sec, paragraphs in zip(sections, trees, strict=True):
        for leaves in _pack(paragraphs, max_tokens, overlap_tokens):
            packed.append((sec.heading_path, leaves))

    # Final recount of the real chunk texts (one batch). Sums of unit counts are exact for
    # whitespace-separated units; only adjacent character pieces of one word can differ, and
    # such a chunk is split again until every chunk fits.
    result: list[Chunk] = []
    pending = packed
    while pending:
        spans = [(leaves[0].start, leaves[-1].end) for _, leaves in pending]
        counts = _counted(count, text, spans)
        retry: list[tuple[str, list[_Node]]] = []
        for (path, leaves), (s, e), n in zip(pending, spans, counts, strict=True):
            if n <= max_tokens:
                result.append(Chunk(text[s:e], path, s, e, n))
            elif len(leaves) > 1:
                mid = len(leaves) // 2
                retry.extend([(path, leaves[:mid]), (path, leaves[mid:])])
            else:
                leaf = leaves[0]
                if leaf.end - leaf.start <= 1:
                    raise ValueError(f"a single character counts as {n} tokens (> {max_tokens})")
                mid = (leaf.start + leaf.end) // 2
                retry.extend([(path, [_Node(leaf.start, mid)]), (path, [_Node(mid, leaf.end)])])
        pending = retry
    result.sort(key=lambda c: (c.char_start, c.char_end))
    return result


# --------------------------------------------------------------------------------------------
# documents → chunks table
# --------------------------------------------------------------------------------------------


def chunk_id(doc_id: str, heading_path: str, text: str, occurrence: int = 0) -> str:
    """Stable, content-derived chunk id: first 24 hex of sha256(doc_id␟heading_path␟text).

    ``occurrence`` > 0 (the same heading path and text repeated within one document) adds a
    ``-<n>`` suffix, so ids stay unique without depending on unrelated parts of the document.
    """
    digest = hashlib.sha256(
        f"{doc_id}\x1f{heading_path}\x1f{text}".encode("utf-8", "surrogatepass")
    ).hexdigest()[:24]
    return digest if occurrence == 0 else f"{digest}-{occurrence}"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _empty_chunks() -> pa.Table:
    return schemas.DOCUMENT_CHUNKS.empty_table()


def chunk_documents(
    docs: pa.Table,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    count: Counter = count_tokens,
) -> pa.Table:
    """Chunks (schema ``schemas.DOCUMENT_CHUNKS``) of the live documents of a
    ``schemas.DOCUMENTS_CLEAN`` table; tombstones (``is_deleted``) and empty texts are skipped.

    Rows are ordered by ``doc_id`` then ``chunk_index``. If a ``doc_id`` appears more than once
    (not the case for ``documents_clean`` partitions), only its latest row (``updated_at``, then
    ``event_id``) is chunked and a warning is logged.
    """
    _validate(max_tokens, overlap_tokens)
    missing = {"doc_id", "text", "is_deleted"} - set(docs.column_names)
    if missing:
        raise ValueError(f"documents table lacks column(s) {sorted(missing)}")
    if docs.num_rows == 0:
        return _empty_chunks()
    live = docs.filter(
        pc.and_(
            pc.invert(pc.fill_null(docs["is_deleted"], False)),
            pc.fill_null(
                pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(docs["text"])), 0), False
            ),
        )
    )
    sort_keys = [("doc_id", "ascending")]
    for name in ("updated_at", "event_id"):
        if name in live.column_names:
            sort_keys.append((name, "descending"))
    live = live.sort_by(sort_keys)

    def col(name: str) -> list:
        return live[name].to_pylist() if name in live.column_names else [None] * live.num_rows

    doc_ids, texts = col("doc_id"), col("text")
    versions, titles, uris, updated = (
        col("version"),
        col("title"),
        col("source_uri"),
        col("updated_at"),
    )

    out: dict[str, list] = {name: [] for name in schemas.DOCUMENT_CHUNKS.names}
    seen_docs: set[str] = set()
    duplicates = 0
    for i, doc_id in enumerate(doc_ids):
        if doc_id in seen_docs:
            duplicates += 1
            continue
        seen_docs.add(doc_id)
        occurrences: dict[tuple[str, str], int] = {}
        for index, ch in enumerate(chunk_text(texts[i], max_tokens, overlap_tokens, count)):
            key = (ch.heading_path, ch.text)
            occurrence = occurrences.get(key, 0)
            occurrences[key] = occurrence + 1
            out["chunk_id"].append(chunk_id(doc_id, ch.heading_path, ch.text, occurrence))
            out["doc_id"].append(doc_id)
            out["version"].append(versions[i])
            out["chunk_index"].append(index)
            out["heading_path"].append(ch.heading_path)
            out["text"].append(ch.text)
            out["char_start"].append(ch.char_start)
            out["char_end"].append(ch.char_end)
            out["n_tokens"].append(ch.n_tokens)
            out["content_hash"].append(content_hash(ch.text))
            out["title"].append(titles[i])
            out["source_uri"].append(uris[i])
            out["updated_at"].append(updated[i])
    if duplicates:
        log.warning("chunk_documents: %d older duplicate document row(s) skipped", duplicates)
    return pa.Table.from_pydict(out, schema=schemas.DOCUMENT_CHUNKS)
