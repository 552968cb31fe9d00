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

Limits per document (why: a hostile page must cost a bounded time and memory, never hang or
crash the run). A document over one raises :class:`OverLimit`, whose message names the limit;
``document_cleaning`` drops it with reason ``over_limit``:

* HTML nested deeper than libxml2's 256 levels (:data:`MAX_HTML_DEPTH`): the parser stops
  there and would silently cut the rest of the page;
* more than :data:`MAX_HTML_ELEMENTS` elements;
* Markdown with a line over :data:`MAX_MARKDOWN_LINE_CHARS` characters or over
  :data:`MAX_UNCLOSED_COMMENTS` unterminated ``<!--`` (the Markdown regexes are quadratic on
  those: measured 27 s for one 80,000-character line of ``*a``);
* extraction running over :data:`EXTRACT_SECONDS` (an exception raised in the extracting
  thread at its next Python instruction: one libxml2 call cannot be interrupted, the element
  caps bound those).

Pages with more than :data:`TRAFILATURA_MAX_ELEMENTS` elements (after the clean-up) are not
handed to trafilatura, whose XPath is superlinear (measured: 65 s for 30,000 inline elements),
but rendered by the linear lxml renderer (counted as a fallback).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from llm_data_platform.transforms.html_cleanup import _preprocess_html
from llm_data_platform.transforms.html_render import _render_html_tree, _render_trafilatura_xml
from llm_data_platform.transforms.markdown_text import clean_markdown
from llm_data_platform.transforms.markdown_text import code_block as code_block

# lxml is imported where used: importing the code location must stay cheap
if TYPE_CHECKING:
    import lxml.html

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

MAX_HTML_DEPTH = 256  # libxml2's own limit (without XML_PARSE_HUGE): deeper, it stops parsing
MAX_HTML_ELEMENTS = 100_000  # a 1 MB landing line can hold ~330,000 (``<p>`` × n)
TRAFILATURA_MAX_ELEMENTS = 15_000  # up to it trafilatura took ≤ 2 s on the worst shapes tried
MAX_MARKDOWN_LINE_CHARS = 20_000
MAX_UNCLOSED_COMMENTS = 100
EXTRACT_SECONDS = 30.0  # per document


class OverLimit(ValueError):
    """A document over one of the limits above; the message names it."""


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

    Raises ``ValueError`` for an unknown format or non-string content, :class:`OverLimit`
    (a ``ValueError``) for a document over a limit (see the module docstring).
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
    if key == "text":
        return Extraction(normalize_whitespace(content), METHOD_TEXT)
    if key == "markdown":
        _check_markdown(content)
    with _time_budget(EXTRACT_SECONDS, f"{key} extraction"):
        if key == "html":
            text, method = _extract_html(content)
        else:
            text, method = clean_markdown(content), METHOD_MARKDOWN
    return Extraction(normalize_whitespace(text), method)


# --------------------------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------------------------


def _check_markdown(content: str) -> None:
    """Refuses the inputs the Markdown regexes take quadratic time on."""
    longest = max(map(len, content.replace("\r", "\n").split("\n")))  # as clean_markdown splits
    if longest > MAX_MARKDOWN_LINE_CHARS:
        raise OverLimit(
            f"a Markdown line of {longest} characters, over the {MAX_MARKDOWN_LINE_CHARS} limit"
        )
    unclosed = content.count("<!--", content.rfind("-->") + 1)
    if unclosed > MAX_UNCLOSED_COMMENTS:
        raise OverLimit(f"{unclosed} unterminated '<!--', over the {MAX_UNCLOSED_COMMENTS} limit")


class _Overtime(BaseException):
    """Raised into the extracting thread when its time is up (a BaseException, so that no
    ``except Exception`` of trafilatura's or ours swallows it)."""


@contextlib.contextmanager
def _time_budget(seconds: float, what: str) -> Iterator[None]:
    """Raises :class:`OverLimit` when the block runs longer than ``seconds``.

    A timer thread raises :class:`_Overtime` in this thread (``PyThreadState_SetAsyncExc``:
    unlike SIGALRM it works in any thread and leaves the process's alarm to others). A lock
    orders it with the block's end: once the block is done the timer cannot fire, and an
    exception fired but not yet delivered is withdrawn.
    """
    import ctypes

    thread_id = ctypes.c_ulong(threading.get_ident())
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                set_async_exc(thread_id, ctypes.py_object(_Overtime))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    started = time.monotonic()
    try:
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            with lock:
                state["done"] = True
                if state["fired"]:
                    set_async_exc(thread_id, None)  # withdraw it if not delivered yet
    except _Overtime:
        elapsed = time.monotonic() - started
        raise OverLimit(f"{what} ran {elapsed:.1f} s, over the {seconds:g} s limit") from None


def _parse_html(content: str) -> lxml.html.HtmlElement | None:
    """The page's tree, or None when lxml finds no document in it; :class:`OverLimit` when
    the parser stopped early (nesting deeper than libxml2's limit) or the page is too big."""
    import lxml.etree as etree
    import lxml.html

    # a parser per call: lxml parsers must not be shared between threads
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        # bytes + a forced utf-8 parser: str input with an XML encoding declaration is an
        # error in lxml, and a <meta charset> must not re-decode already decoded text
        root = lxml.html.document_fromstring(
            content.encode("utf-8", "surrogatepass"), parser=parser
        )
    except etree.ParserError as exc:  # e.g. a lone comment: "Document is empty"
        log.debug("lxml could not parse the document: %s", exc)
        return None
    fatal = [e for e in parser.error_log if e.level_name == "FATAL"]
    if fatal:
        raise OverLimit(
            f"HTML parsing stopped at line {fatal[0].line}: {fatal[0].message.strip()} "
            f"(over the {MAX_HTML_DEPTH}-level nesting limit, or otherwise malformed; "
            "the rest of the page would be lost)"
        )
    elements = _count_elements(root)
    if elements > MAX_HTML_ELEMENTS:
        raise OverLimit(f"{elements} HTML elements, over the {MAX_HTML_ELEMENTS} limit")
    return root


def _count_elements(root: lxml.html.HtmlElement) -> int:
    return sum(1 for _ in root.iter())


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
    import trafilatura

    root = _parse_html(content)
    if root is None:
        return "", METHOD_LXML_FALLBACK
    _preprocess_html(root)
    if _count_elements(root) > TRAFILATURA_MAX_ELEMENTS:
        return _render_html_tree(root), METHOD_LXML_FALLBACK
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
