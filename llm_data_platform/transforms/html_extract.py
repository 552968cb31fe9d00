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

trafilatura's XML output is then rendered by this module (headings as ``#`` lines, lists as
``- item`` lines, tables as ``cell | cell`` lines when they carry text, code as plain text).
Markdown output of trafilatura is not used because it backslash-escapes ``_``/``[``, which
would pollute chunks of Python documentation. When trafilatura finds nothing (or fails), the
cleaned lxml tree is rendered directly; :func:`extract_text_with_info` reports which path was
taken so the caller can count fallbacks.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

# lxml and trafilatura are imported where used: importing the code location must stay cheap
if TYPE_CHECKING:
    import lxml.etree as etree
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


# --------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------

_MD_COMMENT = re.compile(r"<!--.*?-->", re.S)
_MD_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_MD_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_MD_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_HR = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+.*$")
_MD_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)+\|?\s*$|^\s*\|\s*:?-+:?\s*\|\s*$")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\((?:[^()\s]|\([^()]*\))*(?:\s+\"[^\"]*\")?\)")
_MD_IMAGE_REF = re.compile(r"!\[([^\]]*)\]\[[^\]]*\]")
_MD_LINK = re.compile(r"\[([^\]]*)\]\((?:[^()\s]|\([^()]*\))*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\)")
_MD_LINK_REF = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_MD_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>")
_MD_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_MD_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_MD_STRONG_STAR = re.compile(r"(?<![\\*\w])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![*\w])")
_MD_EM_STAR = re.compile(r"(?<![\\*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_MD_UNDERSCORE = re.compile(r"(?<![\\\w])(__|_)(?=[^\s_])(.+?)(?<=[^\s_])\1(?![\w])")
_MD_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")
_MD_BLOCKQUOTE = re.compile(r"^ {0,3}(?:> ?)+")
_DUNDER = re.compile(r"__\w+__")


def clean_markdown(markdown: str) -> str:
    """Markdown → clean text: ``#`` headings kept (setext ones converted), code blocks' text kept
    without fences, link targets / emphasis markers / image syntax / HTML comments and tags /
    reference definitions / horizontal rules / table separator rows removed.

    Python identifiers such as ``__init__`` or ``sort_keys`` are not mistaken for emphasis.
    """
    text = _MD_COMMENT.sub("", markdown.replace("\r\n", "\n").replace("\r", "\n"))
    out: list[str] = []
    lines = text.split("\n")
    fence: str | None = None
    code: list[str] = []
    for line in lines:
        if fence is not None:
            if re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", line):
                fence = None
                out.append(code_block(code))
                out.append("")  # the code block ends a paragraph
                code = []
            else:
                code.append(line)
            continue
        m = _MD_FENCE_OPEN.match(line)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = m.group(1)
            out.append("")
            continue
        # setext heading: underline of "=" / "-" below a non-blank paragraph line
        sm = _MD_SETEXT.match(line)
        if sm and out and out[-1].strip() and not out[-1].lstrip().startswith("#"):
            prev_is_para_start = len(out) < 2 or not out[-2].strip()
            if prev_is_para_start and not _MD_HR.match(out[-1]):
                level = "#" if sm.group(1)[0] == "=" else "##"
                out[-1] = f"{level} {_clean_md_inline(out[-1].strip())}"
                out.append("")
                continue
        if _MD_TABLE_SEP.match(line):
            continue  # table alignment row: the rows around it stay one paragraph
        if _MD_HR.match(line) or _MD_REF_DEF.match(line):
            out.append("")
            continue
        am = _MD_ATX.match(line)
        if am:
            title = _clean_md_inline(am.group(2) or "").strip()
            out.append("")
            if title:
                out.append(f"{am.group(1)} {title}")
                out.append("")
            continue
        line = _MD_BLOCKQUOTE.sub("", line)
        out.append(_clean_md_inline(line))
    if code:  # unterminated fence: the rest of the document is code
        out.append(code_block(code))
    return "\n".join(out)


_HEADING_LIKE = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")


def code_block(lines: list[str] | str) -> str:
    """Code text as a block of clean text.

    Lines of code that would read as a Markdown heading (a Python ``# comment`` at column 0)
    make the whole block indented by four spaces, so the chunker never takes them for headings.
    """
    if isinstance(lines, str):
        lines = lines.split("\n")
    if any(_HEADING_LIKE.match(line) for line in lines):
        return "\n".join(("    " + line) if line.strip() else "" for line in lines)
    return "\n".join(lines)


def _clean_md_inline(line: str) -> str:
    # Protect inline code: its text is kept verbatim, without the backticks.
    codes: list[str] = []

    def _stash(m: re.Match[str]) -> str:
        codes.append(m.group(2).strip() if m.group(2).strip() else m.group(2))
        return f"\x00{len(codes) - 1}\x00"

    line = _MD_INLINE_CODE.sub(_stash, line)
    line = _MD_IMAGE.sub(lambda m: m.group(1), line)
    line = _MD_IMAGE_REF.sub(lambda m: m.group(1), line)
    line = _MD_LINK.sub(lambda m: m.group(1), line)
    line = _MD_LINK_REF.sub(lambda m: m.group(1), line)
    line = _MD_AUTOLINK.sub(lambda m: m.group(1), line)
    line = _MD_HTML_TAG.sub("", line)
    for _ in range(2):  # nested emphasis such as ***x***
        line = _MD_STRONG_STAR.sub(lambda m: m.group(1), line)
        line = _MD_EM_STAR.sub(lambda m: m.group(1), line)
        line = _MD_UNDERSCORE.sub(
            lambda m: m.group(0) if _DUNDER.fullmatch(m.group(0)) else m.group(2), line
        )
    line = _MD_STRIKE.sub(lambda m: m.group(1), line)
    line = _MD_ESCAPE.sub(lambda m: m.group(1), line)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], line)


# --------------------------------------------------------------------------------------------
# html
# --------------------------------------------------------------------------------------------

# Block elements for the lxml fallback renderer (cells are inline: a row renders "a | b").
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
    "tfoot", "thead", "tr", "ul", "caption", "summary",
}  # fmt: skip
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_DROP_TAGS = (
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object",
    "nav", "aside", "footer", "button", "select", "input", "textarea",
)  # fmt: skip


def _cls(name: str) -> str:
    """XPath predicate body: the element's class attribute contains the token ``name``."""
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


_SPHINX_CHROME = ("related", "sphinxsidebar", "footer", "breadcrumbs", "headerlink")
_DROP_XPATH = (
    "//*[@role='navigation' or @role='banner' or @role='contentinfo' or @role='search']"
    " | //*[@aria-hidden='true']"
    f" | //div[{' or '.join(_cls(c) for c in _SPHINX_CHROME)}]"
    f" | //a[{_cls('headerlink')}]"
)
_LINK_SOUP_CANDIDATES = (
    "div", "td", "th", "ul", "ol", "dl", "dd", "p", "table", "section", "header",
)  # fmt: skip
_LINK_SOUP_MIN_LINKS = 2
_LINK_SOUP_DENSITY = 0.7


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


def _preprocess_html(root: lxml.html.HtmlElement) -> None:
    """Structural clean-up before trafilatura (see the module docstring)."""
    import lxml.etree as etree

    etree.strip_elements(root, etree.Comment, etree.ProcessingInstruction, with_tail=False)
    for el in list(root.iter(*_DROP_TAGS)):
        _drop(el)
    for el in root.xpath(_DROP_XPATH):
        _drop(el)
    for el in list(root.iter("header")):
        if not el.xpath(".//h1|.//h2"):
            _drop(el)
    _pydoc_to_semantic(root)
    _plain_pre_blocks(root)
    _unwrap_layout_tables(root)
    _drop_link_soup(root)
    _ensure_main_container(root)


def _ensure_main_container(root: lxml.html.HtmlElement) -> None:
    """Wrap the body in <article> when the page has no <article>/<main>.

    Without a recognisable main container trafilatura falls back to its "wild text" recovery,
    which keeps paragraphs and code but drops every heading.
    """
    import lxml.html

    if root.xpath("//article|//main|//*[@role='main']"):
        return
    body = root.find("body")
    if body is None:
        return
    article = lxml.html.Element("article")
    article.text, body.text = body.text, None
    for child in list(body):
        article.append(child)
    body.append(article)


def _drop(el: etree._Element) -> None:
    parent = el.getparent()
    if parent is None:
        return
    el.drop_tree() if hasattr(el, "drop_tree") else parent.remove(el)


def _pydoc_to_semantic(root: lxml.html.HtmlElement) -> None:
    """Give pydoc's table layout real headings and preformatted docstrings."""
    import lxml.etree as etree
    import lxml.html

    # Page title: <table class="heading"><td class="title">json (version 2.0.9)</td>
    #             <td class="extra">index / file path / Module Reference links</td>
    for table in root.xpath(f"//table[{_cls('heading')}]"):
        title_cell = table.xpath(f".//td[{_cls('title')}]")
        title = _squash(title_cell[0].text_content()) if title_cell else ""
        h1 = lxml.html.Element("h1")
        h1.text = title
        h1.tail = table.tail
        if title:
            table.getparent().replace(table, h1)
        else:
            _drop(table)
    # Sections: <table class="section"><tr><td class="section-title">Functions</td></tr>...
    for td in root.xpath(f"//td[{_cls('section-title')}]"):
        depth = len(td.xpath(f"ancestor::table[{_cls('section')}]"))
        title = _squash(td.text_content())
        level = min(6, 1 + max(depth, 1))
        for child in list(td):
            td.remove(child)
        td.text = None
        heading = lxml.html.Element(f"h{level}")
        heading.text = title
        td.append(heading)
    # Docstrings: <span class="code">line&nbsp;one<br>&nbsp;<br>line two</span> → <pre><code>
    # (trafilatura keeps <pre><code> verbatim; a bare <pre> would become a one-line quote).
    for span in root.xpath(f"//span[{_cls('code')}]"):
        if span.find(".//br") is None:
            continue
        pre = lxml.html.Element("pre")
        code = etree.SubElement(pre, "code")
        code.text = _text_with_breaks(span)
        pre.tail = span.tail
        span.getparent().replace(span, pre)


def _plain_pre_blocks(root: etree._Element) -> None:
    """<pre> (with highlighting spans, or none) → <pre><code>plain text</code></pre>.

    trafilatura keeps <pre><code> verbatim; a bare <pre> becomes a one-line quote.
    """
    import lxml.etree as etree

    for pre in list(root.iter("pre")):
        text = pre.text_content()
        tail = pre.tail
        pre.clear()
        pre.tail = tail
        code = etree.SubElement(pre, "code")
        code.text = text.replace("\u00a0", " ")


def _text_with_breaks(el: etree._Element) -> str:
    """Text of an element where only <br> makes a line break (source newlines are spaces)."""
    parts: list[str] = []

    def walk(node: etree._Element) -> None:
        parts.append((node.text or "").replace("\n", " "))
        for child in node:
            tail = child.tail or ""
            if child.tag == "br":
                parts.append("\n")
                tail = tail.lstrip("\r\n")  # pydoc writes "<br>\n": the newline is markup
            elif isinstance(child.tag, str):
                walk(child)
            parts.append(tail.replace("\n", " "))

    walk(el)
    text = "".join(parts).replace("\u00a0", " ")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _squash(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split())


def _is_layout_table(table: etree._Element) -> bool:
    """A table used for page layout rather than data: one row, or cells holding nested tables,
    headings or definition lists (pydoc), as opposed to data tables whose cells may hold <p>s."""
    rows = table.xpath("./tr|./tbody/tr|./thead/tr|./tfoot/tr")
    if len(rows) <= 1:
        return True
    return bool(
        table.xpath(
            ".//*[self::td or self::th]//*[self::table or self::dl or self::h1 or self::h2 "
            "or self::h3 or self::h4 or self::h5 or self::h6]"
        )
    )


def _unwrap_layout_tables(root: etree._Element) -> None:
    # innermost first, so an outer table sees already-unwrapped children
    for table in reversed(list(root.iter("table"))):
        if not _is_layout_table(table):
            continue
        table.tag = "div"
        for el in table.xpath("./tbody|./thead|./tfoot|./tr|./tbody/tr|./thead/tr|./tfoot/tr"):
            el.tag = "div"
        for cell in table.xpath("./div/td|./div/th|./div/div/td|./div/div/th"):
            cell.tag = "div"
            cell.attrib.pop("colspan", None)
            cell.attrib.pop("rowspan", None)
            _wrap_inline_runs(cell)


def _wrap_inline_runs(el: etree._Element) -> None:
    """Put loose text of a former layout cell into <p>s (trafilatura ignores bare div text)."""
    import lxml.html

    children = list(el)
    if not any(isinstance(c.tag, str) and c.tag in _BLOCK_TAGS for c in children):
        if _squash(el.text_content()):
            el.tag = "p"
        return
    new_children: list[etree._Element] = []
    run: etree._Element | None = None
    if el.text and el.text.strip():
        run = lxml.html.Element("p")
        run.text = el.text
    el.text = None
    for child in children:
        el.remove(child)  # the tail travels with the element
        if isinstance(child.tag, str) and child.tag in _BLOCK_TAGS:
            if run is not None and _squash(run.text_content()):
                new_children.append(run)
            run = None
            tail, child.tail = child.tail, None
            new_children.append(child)
            if tail and tail.strip():
                run = lxml.html.Element("p")
                run.text = tail
        else:
            if run is None:
                run = lxml.html.Element("p")
            run.append(child)
    if run is not None and _squash(run.text_content()):
        new_children.append(run)
    el.extend(new_children)


def _drop_link_soup(root: etree._Element) -> None:
    """Remove blocks whose visible text is mostly link text (indexes, trees, menus)."""
    for el in list(root.iter(*_LINK_SOUP_CANDIDATES)):
        if el.getparent() is None or _detached(el, root):
            continue
        links = el.xpath(".//a[@href]")
        if len(links) < _LINK_SOUP_MIN_LINKS:
            continue
        if el.xpath(".//h1|.//h2|.//h3|.//h4|.//h5|.//h6|.//pre"):
            continue  # holds structure worth keeping; its soup children are judged on their own
        total = len("".join(el.text_content().split()))
        if total == 0:
            continue
        in_links = sum(len("".join(a.text_content().split())) for a in links)
        if in_links / total >= _LINK_SOUP_DENSITY:
            _drop(el)


def _detached(el: etree._Element, root: etree._Element) -> bool:
    node = el
    while node is not None:
        if node is root:
            return False
        node = node.getparent()
    return True


# --- rendering ------------------------------------------------------------------------------


def _render_trafilatura_xml(xml: str) -> str:
    import lxml.etree as etree

    doc = etree.fromstring(xml.encode("utf-8"))
    main = doc.find("main")
    if main is None:
        return ""
    blocks: list[str] = []
    _render_xml_block(main, blocks)
    return "\n\n".join(b for b in blocks if b.strip())


def _xml_inline_text(el: etree._Element) -> str:
    """Text of an inline-content element; <lb/> becomes a line break."""
    parts: list[str] = [el.text or ""]
    for child in el:
        if child.tag == "lb":
            parts.append("\n")
        else:
            parts.append(_xml_inline_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _clean_lines(text: str) -> str:
    return "\n".join(_squash(line) for line in text.split("\n") if line.strip())


_XML_BLOCKS = {"p", "head", "list", "table", "quote", "div", "main", "item", "row"}


def _is_xml_block(el: etree._Element) -> bool:
    """Block-level element of trafilatura's XML; <code> is a block only when multi-line."""
    if el.tag == "code":
        return "\n" in (el.xpath("string()") or "").strip("\n")
    return el.tag in _XML_BLOCKS


def _render_xml_block(el: etree._Element, out: list[str]) -> None:
    tag = el.tag
    if tag == "head":
        title = _squash(_xml_inline_text(el))
        if title:
            rend = el.get("rend") or "h2"
            level = int(rend[1]) if re.fullmatch(r"h[1-6]", rend) else 2
            out.append("#" * level + " " + title)
        return
    if tag == "code":
        code = (el.xpath("string()") or "").strip("\n")
        if code.strip():
            out.append(code_block(code))
        return
    if tag == "list":
        _render_xml_list(el, out)
        return
    if tag == "table":
        rows = []
        for row in el.iter("row"):
            cells = [_squash(c.xpath("string()")) for c in row.findall("cell")]
            if any(cells):
                rows.append(" | ".join(cells))
        if rows:
            out.append("\n".join(rows))
        return
    if tag in ("p", "quote") and not any(_is_xml_block(child) for child in el):
        text = _clean_lines(_xml_inline_text(el))
        if text:
            out.append(text)
        return
    # container (main / div / mixed content): inline runs become paragraphs
    pending = [el.text or ""]
    for child in el:
        if _is_xml_block(child):
            _flush_inline(pending, out)
            _render_xml_block(child, out)
            pending = [child.tail or ""]
        else:
            pending.append("\n" if child.tag == "lb" else _xml_inline_text(child))
            pending.append(child.tail or "")
    _flush_inline(pending, out)


def _flush_inline(pending: list[str], out: list[str]) -> None:
    text = _clean_lines("".join(pending))
    if text:
        out.append(text)


def _render_xml_list(el: etree._Element, out: list[str], depth: int = 0) -> None:
    """Lists: simple items as "- item" lines (definition terms as bare lines, definitions
    indented); items holding code / nested lists / paragraphs as blocks of their own."""
    is_dl = (el.get("rend") or "") == "dl"
    lines: list[str] = []
    indent = "  " * depth

    def flush() -> None:
        if lines:
            out.append("\n".join(lines))
            lines.clear()

    for item in el.findall("item"):
        rend = item.get("rend") or ""
        if is_dl and rend.startswith("dd"):
            prefix = indent + "  "
        elif is_dl:
            prefix = indent
        else:
            prefix = indent + "- "
        if not any(_is_xml_block(child) for child in item):
            text = _squash(_xml_inline_text(item))
            if text:
                lines.append(prefix + text)
            continue
        flush()
        blocks: list[str] = []
        pending = [item.text or ""]
        for child in item:
            if child.tag == "list":
                _flush_inline(pending, blocks)
                _render_xml_list(child, blocks, depth + 1)
                pending = [child.tail or ""]
            elif _is_xml_block(child):
                _flush_inline(pending, blocks)
                _render_xml_block(child, blocks)
                pending = [child.tail or ""]
            else:
                pending.append("\n" if child.tag == "lb" else _xml_inline_text(child))
                pending.append(child.tail or "")
        _flush_inline(pending, blocks)
        if blocks and not is_dl:
            blocks[0] = prefix + blocks[0]
        out.extend(blocks)
    flush()


def _render_html_tree(root: etree._Element) -> str:
    """Fallback: plain text of the cleaned lxml tree, headings as ``#`` lines."""
    body = root.find("body")
    node = body if body is not None else root
    blocks: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        text = _clean_lines("".join(pending))
        pending.clear()
        if text:
            blocks.append(text)

    def walk(el: etree._Element) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in _DROP_TAGS or tag in ("head", "title"):
            return
        if tag in _HEADINGS:
            flush()
            title = _squash(el.text_content())
            if title:
                blocks.append("#" * int(tag[1]) + " " + title)
            return
        if tag == "pre":
            flush()
            code = el.text_content().strip("\n")
            if code.strip():
                blocks.append(code_block(code))
            return
        if tag == "br":
            pending.append("\n")
            return
        if tag == "table":  # a data table (layout tables were unwrapped): "cell | cell" rows
            flush()
            rows = []
            for tr in el.iter("tr"):
                cells = [_squash(c.text_content()) for c in tr if c.tag in ("td", "th")]
                if any(cells):
                    rows.append(" | ".join(cells))
            if rows:
                blocks.append("\n".join(rows))
            return
        is_block = tag in _BLOCK_TAGS
        if is_block:
            flush()
        if tag == "li":
            pending.append("- ")
        pending.append(el.text or "")
        for child in el:
            walk(child)
            pending.append(child.tail or "")
        if is_block:
            flush()

    walk(node)
    flush()
    return "\n\n".join(b for b in blocks if b.strip())
