"""Rendering to clean text: trafilatura's XML output, or (the fallback) the cleaned lxml tree.

Headings become ``#`` lines, lists ``- item`` lines, tables ``cell | cell`` lines when they
carry text, and code stays plain text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from llm_data_platform.transforms.html_cleanup import _BLOCK_TAGS, _DROP_TAGS, _HEADINGS, _squash
from llm_data_platform.transforms.markdown_text import code_block

# lxml is imported where used: importing the code location must stay cheap
if TYPE_CHECKING:
    import lxml.etree as etree


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
