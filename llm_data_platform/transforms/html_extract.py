"""Text extraction from knowledge-base documents (html / markdown / text).

Plain functions, no Dagster import. The output is "clean text": Markdown-style ``#`` headings
kept on their own lines (the chunker splits on them), markup noise removed, code kept as text,
paragraphs separated by exactly one blank line.

HTML goes through trafilatura (offline) after a small structural clean-up of the page:

* navigation boilerplate (``<nav>``, ``<footer>``, ``<aside>``, ARIA navigation/banner/
  contentinfo roles, Sphinx ``related``/``sphinxsidebar``/``footer`` blocks) is removed;
* pydoc-generated pages are table layouts without heading tags: their title cell becomes an
  ``<h1>``, each section title an ``<h2>`` (``<h3>`` for a class nested in "Classes"), and their
  docstring spans become ``<pre><code>`` blocks so blank lines and doctest indentation survive
  (any ``<pre>`` becomes ``<pre><code>`` too: trafilatura turns a bare one into a one-line quote);
* layout tables (tables whose cells hold block content, nested tables or headings, or a single
  row) are unwrapped into ``<div>``s, so only data tables stay tables;
* "link soup" blocks (most of their text is link text, e.g. module indexes, class trees,
  method-resolution-order lists) are dropped.

trafilatura's XML output is then rendered by :mod:`html_render` (headings as ``#`` lines,
lists as ``- item`` lines, tables as ``cell | cell`` lines when they carry text, code as plain
text).
Markdown output of trafilatura is not used because it backslash-escapes ``_``/``[``, which
would pollute chunks of Python documentation. When trafilatura finds nothing (or fails), the
cleaned lxml tree is rendered directly; :func:`extract_text_with_info` reports which path was
taken so the caller can count fallbacks.

The clean-up is :mod:`html_cleanup`; Markdown goes through :mod:`markdown_text`.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from types import ModuleType

from llm_data_platform.transforms.html_cleanup import _preprocess_html
from llm_data_platform.transforms.html_render import _render_html_tree, _render_trafilatura_xml
from llm_data_platform.transforms.markdown_text import clean_markdown
from llm_data_platform.transforms.markdown_text import code_block as code_block

log = logging.getLogger(__name__)


def __getattr__(name: str) -> ModuleType:
    # the module attribute ``trafilatura`` still resolves, lazily, for callers (and tests)
    # that reach the library through this module
    if name == "trafilatura":
        import trafilatura

        return trafilatura
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SUPPORTED_FORMATS = ("html", "markdown", "text")
FORMAT_ALIASES = {"htm": "html", "xhtml": "html", "md": "markdown", "txt": "text", "plain": "text"}

# Extraction methods reported by extract_text_with_info.
METHOD_TRAFILATURA = "trafilatura"
METHOD_LXML_FALLBACK = "lxml_fallback"
METHOD_MARKDOWN = "markdown"
METHOD_TEXT = "text"


@dataclass(frozen=True)
class Extraction:
    """Result of :func:`extract_text_with_info`: the clean text and how it was obtained."""

    text: str
    method: str  # one of the METHOD_* constants

    @property
    def used_fallback(self) -> bool:
        return self.method == METHOD_LXML_FALLBACK


def extract_text(content: str, fmt: str) -> str:
    """Clean text of a document given its raw ``content`` and format ("html"/"markdown"/"text").

    Raises ``ValueError`` for an unknown format or non-string content.
    """
    return extract_text_with_info(content, fmt).text


def canonical_format(fmt: object) -> str | None:
    """Canonical format ("html", "markdown" or "text") of a name or common alias, else None."""
    if not isinstance(fmt, str):
        return None
    key = fmt.strip().lower()
    return key if key in SUPPORTED_FORMATS else FORMAT_ALIASES.get(key)


def extract_text_with_info(content: str, fmt: str) -> Extraction:
    """Like :func:`extract_text`, also reporting the method used (see ``METHOD_*``)."""
    key = canonical_format(fmt)
    if key is None:
        raise ValueError(
            f"unsupported document format {fmt!r}: expected one of {', '.join(SUPPORTED_FORMATS)}"
        )
    if not isinstance(content, str):
        raise ValueError(f"document content must be a string, got {type(content).__name__}")
    if key == "html":
        text, method = _extract_html(content)
    elif key == "markdown":
        text, method = clean_markdown(content), METHOD_MARKDOWN
    else:
        text, method = content, METHOD_TEXT
    return Extraction(normalize_whitespace(text), method)


# --------------------------------------------------------------------------------------------
# whitespace
# --------------------------------------------------------------------------------------------

# Unicode spaces (nbsp, thin spaces, ideographic space, ...) and zero-width characters.
_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\t\f\v]")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_BLANK_RUN = re.compile(r"\n{3,}")
_FENCE = re.compile(r"^\s*(```|~~~)")


def normalize_whitespace(text: str) -> str:
    """Normalise line endings and spaces; paragraphs separated by exactly one blank line.

    Unicode spaces become plain spaces, zero-width characters are removed, spaces inside a line
    (code indentation) are kept, trailing spaces removed, runs of blank lines collapsed to one,
    and the text is stripped at both ends.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ZERO_WIDTH.sub("", text)
    text = _SPACES.sub(" ", text)
    lines = []
    for line in text.split("\n"):
        stripped = line.rstrip()
        body = stripped.lstrip(" ")
        indent = stripped[: len(stripped) - len(body)]
        lines.append(indent + body if body else "")
    text = "\n".join(lines)
    text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()


def _extract_html(content: str) -> tuple[str, str]:
    if not content.strip():
        return "", METHOD_TRAFILATURA
    import lxml.etree as etree
    import lxml.html
    import trafilatura

    try:
        # bytes + a forced utf-8 parser: str input with an XML encoding declaration is an
        # error in lxml, and a <meta charset> must not re-decode already decoded text
        root = lxml.html.document_fromstring(
            content.encode("utf-8", "surrogatepass"),
            # a parser per call: lxml parsers must not be shared between threads
            parser=lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True),
        )
    except etree.ParserError as exc:  # e.g. a lone comment: "Document is empty"
        log.debug("lxml could not parse the document: %s", exc)
        return "", METHOD_LXML_FALLBACK
    _preprocess_html(root)
    text: str | None = None
    try:
        xml = trafilatura.extract(
            copy.deepcopy(root),
            output_format="xml",
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            include_formatting=False,
            favor_recall=True,
            deduplicate=False,
            with_metadata=False,
        )
        if xml:
            text = _render_trafilatura_xml(xml)
    except Exception as exc:  # trafilatura is heuristic code: never let it crash a run
        log.warning("trafilatura failed, falling back to lxml text extraction: %r", exc)
        text = None
    if text and text.strip():
        return text, METHOD_TRAFILATURA
    return _render_html_tree(root), METHOD_LXML_FALLBACK
