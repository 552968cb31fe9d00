"""Structural clean-up of an HTML page before trafilatura reads it.

Navigation boilerplate is removed, pydoc's table layout gets real headings and preformatted
docstrings, layout tables are unwrapped and "link soup" blocks dropped (the module docstring
of :mod:`html_extract` says why each step is there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# lxml is imported where used: importing the code location must stay cheap
if TYPE_CHECKING:
    import lxml.etree as etree
    import lxml.html

# Block elements for the lxml fallback renderer (cells are inline: a row renders "a | b").
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
    "tfoot", "thead", "tr", "ul", "caption", "summary",
}  # fmt: skip
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_LAYOUT_CELL_CONTENT = ("table", "dl", *sorted(_HEADINGS))  # in a cell: a layout table
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
    # a scan per cell, not one XPath over all cells: libxml2 merges the node sets of a
    # ``.//td//*`` step in quadratic time (20 s for a 100k-cell table)
    return any(
        next(cell.iterdescendants(*_LAYOUT_CELL_CONTENT), None) is not None
        for cell in table.iter("td", "th")
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
