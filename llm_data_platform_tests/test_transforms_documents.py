"""Document transforms: extraction, tokenizer, chunking, document cleaning (no Dagster)."""

from __future__ import annotations

import hashlib
import json
import pydoc
import re
from datetime import UTC, datetime, timedelta
from pydoc_data.topics import topics

import pyarrow as pa
import pytest

from llm_data_platform import schemas
from llm_data_platform.transforms import document_cleaning, html_extract
from llm_data_platform.transforms.chunking import (
    Chunk,
    chunk_documents,
    chunk_id,
    chunk_text,
    split_sections,
)
from llm_data_platform.transforms.document_cleaning import clean_documents
from llm_data_platform.transforms.html_extract import (
    extract_text,
    extract_text_with_info,
    normalize_whitespace,
)
from llm_data_platform.transforms.tokenizer import (
    count_tokens,
    load_tokenizer,
    max_chunk_tokens,
    model_max_tokens,
)

# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pydoc_json_html() -> str:
    doc = pydoc.HTMLDoc()
    return doc.page("json", doc.docmodule(json))


def _headings(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.startswith("#")]


def _section_body(text: str, heading: str) -> str:
    start = text.index(heading + "\n") + len(heading)
    nxt = re.search(r"^#", text[start:], re.M)
    return text[start : start + nxt.start()] if nxt else text[start:]


def test_pydoc_html_keeps_headings_and_content(pydoc_json_html: str) -> None:
    result = extract_text_with_info(pydoc_json_html, "html")
    assert result.method == html_extract.METHOD_TRAFILATURA
    text = result.text
    headings = _headings(text)
    assert headings[0].startswith("# json")
    for expected in (
        "## Classes",
        "### class JSONDecoder(builtins.object)",
        "### class JSONEncoder(builtins.object)",
        "## Functions",
    ):
        assert expected in headings, headings
    # content: module docstring with its doctest lines, function signatures and docstrings
    assert "JSON (JavaScript Object Notation)" in text
    assert ">>> import json" in text
    assert "dumps(obj, *, skipkeys=False" in text
    assert "Serialize ``obj`` to a JSON formatted ``str``." in text
    # docstring paragraphs stay paragraphs, code keeps its indentation
    assert "\n\nIf ``skipkeys`` is true then" in text
    assert "\n    >>> import json\n" in text


def test_pydoc_html_drops_navigation_link_soup(pydoc_json_html: str) -> None:
    text = extract_text(pydoc_json_html, "html")
    # header table: index link, source path, "Module Reference" link
    assert "Module Reference" not in text
    assert "json/__init__.py" not in text
    assert not re.search(r"^index$", text, re.M)
    # "Package Contents" is a table of submodule links only
    assert _section_body(text, "## Package Contents").strip() == ""
    # the class tree and the method resolution order lists are all links
    assert "Method resolution order" not in text
    assert "builtins.ValueError(builtins.Exception)" not in text
    # no blank-line runs, no nbsp, no trailing spaces
    assert "\n\n\n" not in text and "\u00a0" not in text
    assert not re.search(r"[ \t]+$", text, re.M)


BOILERPLATE_PAGE = """<!DOCTYPE html><html><head><title>json</title>
<script>var tracking = 1;</script><style>body {color: red}</style></head><body>
<header class="site-header"><a href="/">Home</a> | <a href="/docs">Docs</a> |
 <a href="/blog">Blog</a></header>
<nav><ul><li><a href="/a">Tutorial</a></li><li><a href="/b">Library</a></li></ul></nav>
<div class="related" role="navigation"><a href="genindex.html">index</a>
 <a href="py-modindex.html">modules</a> <a href="next.html">next</a></div>
<div class="document"><div class="body" role="main">
<section><h1>json — JSON encoder and decoder<a class="headerlink" href="#x">¶</a></h1>
<p>JSON (JavaScript Object Notation) is a lightweight data interchange format inspired by
JavaScript object literal syntax, specified by <a href="https://r">RFC 7159</a>.</p>
<!-- an HTML comment that must not leak -->
<section><h2>Basic Usage</h2>
<p>Serialize <em>obj</em> as a JSON formatted stream to <em>fp</em> using the
<code>dump()</code> function and this conversion table.</p>
<div class="highlight"><pre><span class="kn">import</span> json
<span class="c1"># encode a list</span>
json.dumps([1, 2])</pre></div>
<table><thead><tr><th><p>Python</p></th><th><p>JSON</p></th></tr></thead>
<tbody><tr><td><p>dict</p></td><td><p>object</p></td></tr>
<tr><td><p>list, tuple</p></td><td><p>array</p></td></tr></tbody></table>
<h3>Options</h3><ul><li>indent: pretty print</li><li>sort_keys: sort the output</li></ul>
</section></section></div></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3>
<ul><li><a href="#">json</a></li><li><a href="#b">Basic Usage</a></li></ul></div>
<footer><p>Copyright 2001-2024 Python Software Foundation.</p>
<a href="/privacy">Privacy</a></footer></body></html>"""


def test_html_boilerplate_removed_structure_kept() -> None:
    text = extract_text(BOILERPLATE_PAGE, "html")
    assert _headings(text) == [
        "# json — JSON encoder and decoder",
        "## Basic Usage",
        "### Options",
    ]
    assert "inspired by JavaScript object literal syntax, specified by RFC 7159." in text
    assert "using the dump() function and this conversion table." in text
    # code kept as text; its "# comment" line cannot pass for a heading (block indented)
    assert "    import json\n    # encode a list\n    json.dumps([1, 2])" in text
    # a data table with content is kept as "cell | cell" rows
    assert "Python | JSON\ndict | object\nlist, tuple | array" in text
    assert "- indent: pretty print" in text
    for noise in ("Home", "Tutorial", "modules", "Table of Contents", "Copyright", "Privacy"):
        assert noise not in text, noise
    for noise in ("tracking", "color: red", "HTML comment", "¶"):
        assert noise not in text, noise


def test_html_falls_back_to_lxml_when_trafilatura_finds_nothing(
    monkeypatch: pytest.MonkeyPatch, pydoc_json_html: str
) -> None:
    monkeypatch.setattr(html_extract.trafilatura, "extract", lambda *a, **k: None)
    result = extract_text_with_info(BOILERPLATE_PAGE, "html")
    assert result.used_fallback
    assert _headings(result.text) == [
        "# json — JSON encoder and decoder",
        "## Basic Usage",
        "### Options",
    ]
    assert "Python | JSON" in result.text and "Copyright" not in result.text
    pydoc_text = extract_text(pydoc_json_html, "html")
    assert "## Functions" in pydoc_text and "Method resolution order" not in pydoc_text


def test_html_edge_cases() -> None:
    assert extract_text("", "html") == ""
    assert extract_text("<html><body>   </body></html>", "html") == ""
    assert extract_text("<p>Hello   world.</p>", "html") == "Hello world."
    assert extract_text_with_info("<html><body><p>x</p></body></html>", "HTML").text == "x"
    declared = (
        '<?xml version="1.0" encoding="iso-8859-1"?><html><body><p>café — ok</p></body></html>'
    )
    assert extract_text(declared, "html") == "café — ok"  # str input: the declaration is moot


MARKDOWN = """Title Here
==========

Intro with **bold**, *em*, _under_, ~~strike~~ and `inline_code()`; __init__ and sort_keys stay.
See [the docs](https://docs.python.org/3/ "Docs"), [a ref][r1] and <https://example.com>.
![A diagram](img/diagram.png)

<!-- hidden
comment -->

Sub title
---------

## Section Two ##

> quoted *text*

```python
# a comment, not a heading
def f(x):
    return x * 2  # **not emphasis**
```

| a | b |
|---|:-:|
| 1 | 2 |

* * *

[r1]: https://example.com/ref
Escaped \\*star\\* and <b>bold html</b>.
"""


def test_markdown_cleanup() -> None:
    text = extract_text(MARKDOWN, "markdown")
    assert _headings(text) == ["# Title Here", "## Sub title", "## Section Two"]
    assert (
        "Intro with bold, em, under, strike and inline_code(); __init__ and sort_keys stay." in text
    )
    assert "See the docs, a ref and https://example.com." in text
    assert "A diagram" in text and "img/diagram.png" not in text and "![" not in text
    assert "hidden" not in text and "<!--" not in text
    assert "quoted text" in text
    # code block: text kept verbatim (no fences), indented because of its "#" line
    assert "    # a comment, not a heading\n    def f(x):\n        return x * 2  # **not" in text
    assert "```" not in text
    assert "| a | b |\n| 1 | 2 |" in text and ":-:" not in text
    assert "* * *" not in text and "[r1]" not in text
    assert "Escaped *star* and bold html." in text


def test_text_format_and_whitespace_normalisation() -> None:
    raw = "  Line one\u00a0 with nbsp  \r\n\r\n\r\n\r\n    indented code\n\n\n\nlast\t"
    assert extract_text(raw, "text") == "Line one  with nbsp\n\n    indented code\n\nlast"
    assert normalize_whitespace("a\u200bb\n \n \nc") == "ab\n\nc"


def test_unknown_format_raises_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported document format 'pdf'"):
        extract_text("x", "pdf")
    with pytest.raises(ValueError, match="unsupported document format None"):
        extract_text("x", None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------


def test_tokenizer_counts_real_word_pieces() -> None:
    assert load_tokenizer() is load_tokenizer()  # cached once per process
    one, empty, long_text = count_tokens(["hello", "", "word " * 600])
    assert one == 1  # no [CLS]/[SEP]
    assert empty == 0
    assert long_text == 600  # no truncation (the shipped tokenizer.json truncates at 128)
    assert count_tokens([]) == []
    assert model_max_tokens() == 256
    assert max_chunk_tokens() == 254


# --------------------------------------------------------------------------------------------
# chunking
# --------------------------------------------------------------------------------------------

TOPIC_KEYS = sorted(topics)[:40]


@pytest.fixture(scope="module")
def reference_doc() -> tuple[str, dict[str, tuple[int, int]]]:
    """Real documentation text as Markdown: one "##" section per pydoc topic."""
    parts = ["# Python language reference\n\nTopics from the reference manual.\n"]
    for key in TOPIC_KEYS:
        parts.append(f"## {key}\n\n{topics[key]}\n")
    text = "\n".join(parts)
    spans = {}
    for key in TOPIC_KEYS:
        start = text.index(f"## {key}\n\n") + len(f"## {key}\n\n")
        spans[key] = (start, start + len(topics[key]))
    return text, spans


@pytest.fixture(scope="module")
def reference_chunks(reference_doc) -> list[Chunk]:
    return chunk_text(reference_doc[0], max_tokens=200, overlap_tokens=30)


def _is_boundary(text: str, pos: int) -> bool:
    return pos <= 0 or pos >= len(text) or text[pos - 1].isspace() or text[pos].isspace()


def test_chunks_respect_token_limit_and_words(reference_doc, reference_chunks) -> None:
    text, _ = reference_doc
    assert len(reference_chunks) > 50
    real = count_tokens([c.text for c in reference_chunks])
    for chunk, n in zip(reference_chunks, real, strict=True):
        assert chunk.n_tokens == n <= 200
        assert chunk.text == text[chunk.char_start : chunk.char_end]
        assert chunk.text == chunk.text.strip() and chunk.text
        # never starts or ends inside a word
        assert chunk.char_start == 0 or text[chunk.char_start - 1].isspace()
        assert chunk.char_end == len(text) or text[chunk.char_end].isspace()
        assert not chunk.text.lstrip().startswith("## ")  # heading lines are the path


def test_chunk_heading_paths(reference_doc, reference_chunks) -> None:
    text, spans = reference_doc
    assert reference_chunks[0].heading_path == "Python language reference"
    assert reference_chunks[0].text == "Topics from the reference manual."
    for chunk in reference_chunks[1:]:
        key = chunk.heading_path.split(" > ")[-1]
        assert chunk.heading_path == f"Python language reference > {key}"
        start, end = spans[key]
        assert start <= chunk.char_start and chunk.char_end <= end
    assert {c.heading_path.split(" > ")[-1] for c in reference_chunks[1:]} == set(TOPIC_KEYS)


def test_chunk_overlap_is_whole_trailing_sentences(reference_chunks) -> None:
    overlaps = 0
    for prev, cur in zip(reference_chunks, reference_chunks[1:], strict=False):
        if cur.heading_path != prev.heading_path:
            assert cur.char_start >= prev.char_end  # never across sections
            continue
        if cur.char_start < prev.char_end:
            overlaps += 1
            shared = prev.text[cur.char_start - prev.char_start :]
            assert cur.text.startswith(shared)
            assert count_tokens([shared])[0] <= 30
            assert cur.char_end > prev.char_end  # and something new
    assert overlaps >= 20


def test_chunk_text_small_cases() -> None:
    assert chunk_text("") == [] and chunk_text("  \n ") == []
    assert [c.text for c in chunk_text("One sentence only.")] == ["One sentence only."]
    # heading-only sections make no chunks; paths follow heading levels
    text = "# A\n\n## B\n\nBody of B.\n\n### C\n\nBody of C.\n\n## D\n\nBody of D."
    chunks = chunk_text(text)
    assert [(c.heading_path, c.text) for c in chunks] == [
        ("A > B", "Body of B."),
        ("A > B > C", "Body of C."),
        ("A > D", "Body of D."),
    ]
    assert [s.heading_path for s in split_sections(text)] == ["A > B", "A > B > C", "A > D"]
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_text("x", max_tokens=10, overlap_tokens=10)


def test_overlong_word_is_split_by_characters() -> None:
    rule = "=" * 500  # punctuation: one word piece per character
    text = f"Before the rule. {rule} After the rule."
    chunks = chunk_text(text, max_tokens=100, overlap_tokens=10)
    assert all(c.n_tokens <= 100 for c in chunks)
    assert "".join(c.text for c in chunks if "=" in c.text).count("=") == 500
    assert chunks[0].text.startswith("Before the rule.")
    assert chunks[-1].text.endswith("After the rule.")


def test_token_counting_is_batched() -> None:
    calls: list[int] = []

    def counting(texts):
        calls.append(len(texts))
        return count_tokens(texts)

    chunk_text("\n\n".join(topics[k] for k in TOPIC_KEYS[:5]), 120, 20, count=counting)
    assert len(calls) <= 5  # sentences, oversized levels, final recount — not one per unit


# --------------------------------------------------------------------------------------------
# chunk_documents
# --------------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)


def _clean_docs(rows: list[dict]) -> pa.Table:
    base = {
        "version": "v1",
        "is_deleted": False,
        "title": "T",
        "format": "markdown",
        "source_uri": "file://doc",
        "updated_at": T0,
        "event_id": "e",
    }
    return pa.Table.from_pylist([{**base, **r} for r in rows], schema=schemas.DOCUMENTS_CLEAN)


def _sectioned(a: str, b: str, c: str) -> str:
    return f"# Guide\n\n## Alpha\n\n{a}\n\n## Beta\n\n{b}\n\n## Gamma\n\n{c}\n"


def test_chunk_documents_table_and_stable_ids() -> None:
    alpha, beta, gamma = (topics[k] for k in ("assert", "pass", "del"))
    old = chunk_documents(
        _clean_docs(
            [
                {"doc_id": "d1", "text": _sectioned(alpha, beta, gamma)},
                {"doc_id": "gone", "text": None, "is_deleted": True, "version": None},
                {"doc_id": "blank", "text": "   "},
            ]
        ),
        max_tokens=60,
        overlap_tokens=10,
    )
    assert old.schema == schemas.DOCUMENT_CHUNKS
    assert set(old["doc_id"].to_pylist()) == {"d1"}
    assert old["chunk_index"].to_pylist() == list(range(old.num_rows))
    rows = old.to_pylist()
    for row in rows:
        assert row["content_hash"] == hashlib.sha256(row["text"].encode()).hexdigest()
        assert row["chunk_id"] == chunk_id("d1", row["heading_path"], row["text"])
        expected = hashlib.sha256(
            f"d1\x1f{row['heading_path']}\x1f{row['text']}".encode()
        ).hexdigest()[:24]
        assert row["chunk_id"] == expected
        assert row["version"] == "v1" and row["title"] == "T" and row["updated_at"] == T0
    assert len(set(old["chunk_id"].to_pylist())) == old.num_rows

    # Edit the Beta section only: Alpha's and Gamma's chunk ids do not move.
    new = chunk_documents(
        _clean_docs(
            [
                {
                    "doc_id": "d1",
                    "version": "v2",
                    "text": _sectioned(alpha, beta + " Changed.", gamma),
                }
            ]
        ),
        max_tokens=60,
        overlap_tokens=10,
    )

    def ids(table: pa.Table, section: str) -> list[str]:
        return [r["chunk_id"] for r in table.to_pylist() if r["heading_path"].endswith(section)]

    assert ids(old, "Alpha") and ids(new, "Alpha") == ids(old, "Alpha")
    assert ids(old, "Gamma") and ids(new, "Gamma") == ids(old, "Gamma")
    assert ids(new, "Beta") != ids(old, "Beta")


def test_repeated_text_gets_occurrence_suffix() -> None:
    text = "# Notes\n\nSame paragraph.\n\n# Other\n\nx\n\n# Notes\n\nSame paragraph."
    table = chunk_documents(_clean_docs([{"doc_id": "d", "text": text}]))
    ids = table["chunk_id"].to_pylist()
    assert len(set(ids)) == len(ids) == 3
    base = chunk_id("d", "Notes", "Same paragraph.")
    assert ids[0] == base and ids[2] == base + "-1"


def test_chunk_documents_empty_input() -> None:
    empty = chunk_documents(schemas.DOCUMENTS_CLEAN.empty_table())
    assert empty.num_rows == 0 and empty.schema == schemas.DOCUMENT_CHUNKS


# --------------------------------------------------------------------------------------------
# document cleaning
# --------------------------------------------------------------------------------------------


def _raw(rows: list[dict]) -> pa.Table:
    out = []
    for i, r in enumerate(rows):
        out.append(
            {
                "event_id": f"ev{i}",
                "op": "upsert",
                "format": "markdown",
                "title": "Title",
                "content": "# Doc\n\nSome text.",
                "source_uri": "s3://bucket/doc",
                "version": None,
                "source_file": "landing/a.jsonl",
                "source_line": i + 1,
                "arrived_at": T0,
                **r,
            }
        )
    return pa.Table.from_pylist(out, schema=schemas.RAW_DOCUMENTS)


def test_clean_documents_latest_version_and_tombstones(monkeypatch: pytest.MonkeyPatch) -> None:
    t = [T0 + timedelta(minutes=m) for m in range(10)]
    raw = _raw(
        [
            # d1: two versions, the later (markdown) wins
            {"doc_id": "d1", "format": "html", "content": "<p>old</p>", "updated_at": t[0]},
            {"doc_id": "d1", "content": "# New\n\n**bold** text", "updated_at": t[1]},
            # d2: upsert then delete → tombstone
            {"doc_id": "d2", "updated_at": t[0], "version": "abc"},
            {"doc_id": "d2", "op": "delete", "format": None, "content": None, "updated_at": t[2]},
            # d3: delete then re-created
            {"doc_id": "d3", "op": "delete", "format": None, "content": None, "updated_at": t[0]},
            {"doc_id": "d3", "format": "text", "content": "back again", "updated_at": t[3]},
            # d4: same timestamp, later source line wins; then a later file wins
            {"doc_id": "d4", "content": "line A", "updated_at": t[4], "source_line": 50},
            {"doc_id": "d4", "content": "line B", "updated_at": t[4], "source_line": 60},
            {"doc_id": "d4", "content": "file B", "updated_at": t[4], "source_file": "landing/b"},
            # failures: every one is dropped with its reason, none crashes
            {"doc_id": "d5", "format": "pdf", "updated_at": t[0]},
            {"doc_id": "d6", "format": "html", "content": "<html><body></body></html>"},
            {"doc_id": "d7", "content": None},
            {"doc_id": "d8", "op": "patch"},
            {"doc_id": None},
            {"doc_id": "d9", "content": "EXPLODE"},
            {"doc_id": "d11", "format": "html", "content": "<div>" * 300 + "too deep"},
            # an html page
            {"doc_id": "d10", "format": "html", "content": BOILERPLATE_PAGE},
        ]
    )
    real = document_cleaning.extract_text_with_info

    def flaky(content, fmt):
        if content == "EXPLODE":
            raise RuntimeError("parser blew up")
        return real(content, fmt)

    monkeypatch.setattr(document_cleaning, "extract_text_with_info", flaky)
    result = clean_documents(raw)

    assert result.clean.schema == schemas.DOCUMENTS_CLEAN
    rows = {r["doc_id"]: r for r in result.clean.to_pylist()}
    assert list(rows) == sorted(rows)
    assert set(rows) == {"d1", "d2", "d3", "d4", "d10"}
    assert rows["d1"]["text"] == "# New\n\nbold text" and rows["d1"]["format"] == "markdown"
    assert rows["d1"]["version"] == hashlib.sha256(b"# New\n\n**bold** text").hexdigest()
    assert rows["d2"]["is_deleted"] is True and rows["d2"]["text"] is None
    assert rows["d2"]["version"] is None and rows["d2"]["event_id"] == "ev3"
    assert rows["d3"]["is_deleted"] is False and rows["d3"]["text"] == "back again"
    assert rows["d4"]["text"] == "file B"
    assert rows["d10"]["text"].startswith("# json — JSON encoder and decoder")

    dropped = {r["doc_id"]: r["reason"] for r in result.dropped.to_pylist()}
    assert dropped == {
        "d5": "unsupported_format",
        "d6": "empty_text",
        "d7": "missing_content",
        "d8": "unknown_op",
        None: "missing_doc_id",
        "d9": "extraction_failed",
        "d11": "over_limit",
    }
    assert result.dropped.schema == document_cleaning.DROPPED_DOCUMENTS
    detail = result.dropped.filter(pa.compute.equal(result.dropped["doc_id"], "d9"))
    assert "parser blew up" in detail["detail"][0].as_py()

    c = result.counts
    assert c["received"] == 17
    assert c["superseded"] == 5  # d1 ×1, d2 ×1, d3 ×1, d4 ×2
    assert c["kept"] == 5 and c["deletions"] == 1
    assert c["extracted_markdown"] == 2 and c["extracted_text"] == 1 and c["extracted_html"] == 1
    assert c["html_lxml_fallback"] == 0
    for reason in document_cleaning.DROP_REASONS:
        assert c[f"dropped_{reason}"] == 1
    dropped_total = sum(v for k, v in c.items() if k.startswith("dropped_"))
    assert c["received"] == c["kept"] + c["superseded"] + dropped_total
    assert all(isinstance(v, int) for v in c.values())


def test_clean_documents_empty_day() -> None:
    result = clean_documents(schemas.RAW_DOCUMENTS.empty_table())
    assert result.clean.num_rows == 0 and result.clean.schema == schemas.DOCUMENTS_CLEAN
    assert result.dropped.num_rows == 0
    assert result.counts["received"] == 0 and result.counts["kept"] == 0


def test_a_rerun_of_the_day_extracts_only_versions_it_has_not_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The day's clean table as the last run left it gives the text of every version it
    extracted: a re-run after a 2-page edit extracts those 2 pages and keeps the rest."""
    from llm_data_platform.transforms.document_cleaning import known_texts

    pages = [
        {"doc_id": f"d{i}", "format": "html", "content": f"<p>page {i} text</p>", "updated_at": T0}
        for i in range(5)
    ]
    first = clean_documents(_raw(pages))
    assert first.counts["extracted_html"] == 5 and first.counts["reused"] == 0

    edited = [dict(p) for p in pages]
    edited[1]["content"] = "<p>page 1 text, edited</p>"
    edited[3]["content"] = "<p>page 3 text, edited</p>"
    extracted: list[str] = []
    real = document_cleaning.extract_text_with_info

    def counting(content, fmt):
        extracted.append(content)
        return real(content, fmt)

    monkeypatch.setattr(document_cleaning, "extract_text_with_info", counting)
    again = clean_documents(_raw(edited), known_texts(first.clean))
    assert sorted(extracted) == sorted([edited[1]["content"], edited[3]["content"]])
    assert again.counts["reused"] == 3 and again.counts["extracted_html"] == 2
    fresh = clean_documents(_raw(edited))  # the same rows as extracting everything again
    assert again.clean.to_pylist() == fresh.clean.to_pylist()
