"""Real text for the demo knowledge base, taken from the Python installation itself.

Nothing here was written for this project: the Markdown documents are CPython's language
reference topics (``pydoc_data.topics``), the HTML documents are pydoc's rendering of standard
library modules (navigation tables and all), and the plain-text documents are module docstrings.
The output is deterministic for a given Python version: topics and modules are taken in a fixed
order, and the only machine-specific parts of pydoc's HTML (the module's file path and object
addresses in default-argument reprs) are normalised.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pydoc
import re
import sys
import sysconfig
from dataclasses import dataclass

__all__ = [
    "DOCSTRING_MODULES",
    "HTML_MODULES",
    "Doc",
    "load_docstring_docs",
    "load_module_docs",
    "load_topics",
]

MIN_TOPIC_CHARS = 500
MIN_DOCSTRING_CHARS = 500

# Pure-python stdlib modules whose pydoc pages are reasonably sized (4-70 kB), in the order
# they are taken. The first `n` are used when `load_module_docs(n)` is asked for fewer.
HTML_MODULES: tuple[str, ...] = (
    "json",
    "textwrap",
    "shlex",
    "fnmatch",
    "heapq",
    "bisect",
    "csv",
    "glob",
    "difflib",
    "statistics",
    "string",
    "calendar",
    "colorsys",
    "base64",
    "copy",
    "pprint",
    "sched",
    "graphlib",
    "keyword",
    "filecmp",
)

# Modules with a long, prose-like docstring, used for the plain-text documents.
DOCSTRING_MODULES: tuple[str, ...] = ("heapq", "statistics", "copy", "sched", "csv", "json")

_UNDERLINE = re.compile(r"^([*=\-~^])\1{2,}\s*$")
# Heading level by underline character; the first "*" heading is the document title.
_LEVEL = {"*": 2, "=": 2, "-": 3, "~": 4, "^": 4}
_ADDRESS = re.compile(r"(\bat(?: |&nbsp;))0x[0-9a-fA-F]{6,}")
_PYVER = f"{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass(frozen=True)
class Doc:
    """One knowledge-base document as it is published to the landing zone."""

    doc_id: str
    title: str
    format: str  # "markdown" | "html" | "text"
    content: str
    source_uri: str


def _topic_to_markdown(text: str) -> tuple[str, str]:
    """Return (title, markdown) for one reST-ish pydoc topic."""
    lines = text.split("\n")
    title: str | None = None
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        m = _UNDERLINE.match(nxt)
        if line.strip() and not line.startswith(" ") and m:
            heading = line.strip()
            if title is None and not out:
                title = heading
            else:
                out.append("#" * _LEVEL[m.group(1)] + " " + heading)
            i += 2
            continue
        out.append(line.rstrip())
        i += 1
    body = "\n".join(out).strip("\n")
    if title is None:
        first = next((ln.strip() for ln in lines if ln.strip()), "Untitled")
        title = first[:80]
    # collapse runs of blank lines left behind by removed underlines
    body = re.sub(r"\n{3,}", "\n\n", body)
    return title, f"# {title}\n\n{body}\n"


@functools.lru_cache(maxsize=1)
def _all_topics() -> tuple[Doc, ...]:
    from pydoc_data.topics import topics

    by_title: dict[str, list[tuple[str, str]]] = {}
    for key in sorted(topics):
        text = topics[key]
        if len(text) < MIN_TOPIC_CHARS:
            continue
        title, markdown = _topic_to_markdown(text)
        by_title.setdefault(title, []).append((key, markdown))
    # Several keys are aliases of the same section ("else" and "if" are both 'The "if"
    # statement'); keep one per title, so every title and eval question points at exactly one
    # document: the key named in the title if there is one, else the first key.
    chosen: list[tuple[str, str, str]] = []
    for title, entries in by_title.items():
        named = [e for e in entries if f'"{e[0]}"' in title]
        key, markdown = (named or entries)[0]
        chosen.append((key, title, markdown))
    docs = [
        Doc(
            doc_id=f"python-reference/{key}",
            title=title,
            format="markdown",
            content=markdown,
            source_uri=f"pydoc:topics/{key}",
        )
        for key, title, markdown in sorted(chosen)
    ]
    return tuple(docs)


def load_topics(n: int | None = None) -> list[Doc]:
    """The first `n` (all when None) Python reference topics as Markdown documents.

    Keys are taken in sorted order; topics under 500 characters are skipped, and of several
    keys with the same section title only one is kept.
    """
    docs = _all_topics()
    return list(docs if n is None else docs[: max(0, n)])


_STDLIB = sysconfig.get_path("stdlib")


class _StableHTMLDoc(pydoc.HTMLDoc):
    """pydoc.HTMLDoc with the machine-specific bits made stable."""

    def filelink(self, url, path):
        # the module's file as on a standard install, not this machine's prefix
        if path.startswith(_STDLIB):
            path = f"/usr/lib/python{_PYVER}" + path[len(_STDLIB) :].replace("\\", "/")
        return f'<a href="file:{path}">{path}</a>'

    def getdocloc(self, object, basedir=None):  # noqa: A002 - pydoc's signature; ignores $PYTHONDOCS
        name = getattr(object, "__name__", None)
        if inspect.ismodule(object) and name in HTML_MODULES:
            return f"https://docs.python.org/{_PYVER}/library/{name.lower()}.html"
        return None


def _module_html(name: str) -> str:
    module = importlib.import_module(name)
    doc = _StableHTMLDoc()
    html = doc.page(f"module {name}", doc.docmodule(module))
    return _ADDRESS.sub(r"\g<1>0x7f0000000000", html)


@functools.lru_cache(maxsize=64)
def _html_doc(name: str) -> Doc:
    return Doc(
        doc_id=f"python-stdlib/{name}",
        title=f"Module {name}",
        format="html",
        content=_module_html(name),
        source_uri=f"pydoc:module/{name}",
    )


@functools.lru_cache(maxsize=64)
def _docstring_doc(name: str) -> Doc | None:
    module = importlib.import_module(name)
    text = inspect.getdoc(module) or ""
    if len(text) < MIN_DOCSTRING_CHARS:
        return None
    return Doc(
        doc_id=f"python-docstrings/{name}",
        title=f"{name} module overview",
        format="text",
        content=text.strip() + "\n",
        source_uri=f"pydoc:docstring/{name}",
    )


def load_docstring_docs(n: int | None = 3) -> list[Doc]:
    """Plain-text documents from the docstrings of `DOCSTRING_MODULES` (first `n`)."""
    docs = [d for d in (_docstring_doc(m) for m in DOCSTRING_MODULES) if d is not None]
    return docs if n is None else docs[: max(0, n)]


def load_module_docs(n: int | None = None, n_text: int | None = 3) -> list[Doc]:
    """pydoc HTML pages of the first `n` of `HTML_MODULES` (all when None), followed by
    `n_text` plain-text documents made from module docstrings (all when None)."""
    names = HTML_MODULES if n is None else HTML_MODULES[: max(0, n)]
    return [_html_doc(m) for m in names] + load_docstring_docs(n_text)
