"""One knowledge-base file as a document: its text (decoded from its bytes) and its title.

Anything that makes a file unusable raises :class:`_Skip`, whose message is the reason the
sync report gives.
"""

from __future__ import annotations

import codecs
import html
import re


class _Skip(Exception):
    """A file that cannot be ingested; the message is the reason in the report."""


def _decode(data: bytes, fmt: str) -> str:
    """Text of a file: UTF-8 (BOM allowed), UTF-16 with a BOM, or an HTML page's declared
    charset. Raises :class:`_Skip` for binary or undecodable content."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _Skip(f"undecodable: invalid UTF-16 at byte {exc.start}") from exc
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _Skip(f"binary file: NUL byte at offset {nul}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        charset = _declared_charset(data) if fmt == "html" else None
        if charset:
            try:
                return data.decode(charset)
            except (LookupError, UnicodeDecodeError):
                pass
        raise _Skip(f"undecodable: not valid UTF-8 at byte {exc.start}") from exc


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _declared_charset(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:4096])
    if not match:
        return None
    name = match.group(1).decode("ascii", "replace")
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    return name


# (opening tag, closing tag): matched apart, so a page of a thousand unclosed ``<title>``s
# costs one scan, not one scan per tag (a ``<title>(.*?)</title>`` search is quadratic)
_TITLE = (re.compile(r"<title\b[^<>]*>", re.I), re.compile(r"</title\s*>", re.I))
_H1 = (re.compile(r"<h1\b[^<>]*>", re.I), re.compile(r"</h1\s*>", re.I))
_TAG = re.compile(r"<[^>]+>")
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT = re.compile(r"""^([!-/:-@\[-`{-~])\1{2,}\s*$""")


def _clean_title(text: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


def _html_title(text: str) -> str | None:
    head = text[:200_000]
    for opening, closing in (_TITLE, _H1):
        if (title := _element_text(head, opening, closing)) is not None:
            return title
    return None


def _element_text(text: str, opening: re.Pattern[str], closing: re.Pattern[str]) -> str | None:
    """Clean text between the first ``opening`` tag and the next ``closing`` one (only the
    first opening tag can have a closing tag after it when an earlier search found none)."""
    start = opening.search(text)
    end = closing.search(text, start.end()) if start else None
    if end is None:
        return None
    return _clean_title(text[start.end() : end.start()]) or None


def _markdown_title(text: str) -> str | None:
    lines = text.splitlines()
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter
        for i in range(1, min(len(lines), 200)):
            if lines[i].strip() in {"---", "..."}:
                for line in lines[1:i]:
                    key, sep, value = line.partition(":")
                    if sep and key.strip().lower() == "title":
                        title = value.strip().strip("\"'").strip()
                        if title:
                            return title
                start = i + 1
                break
    fence: str | None = None
    previous = ""
    for line in lines[start:]:
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match and fence_match.group(1)[0] == fence[0]:
                fence = None
            previous = ""
            continue
        if fence_match:
            fence = fence_match.group(1)
            previous = ""
            continue
        atx = _ATX.match(line)
        if atx and (title := (atx.group(1) or "").strip()):
            return title
        if _SETEXT.match(line) and previous.strip() and not previous.startswith((" " * 4, "\t")):
            return previous.strip()
        previous = line
    return None


def _rst_title(text: str) -> str | None:
    lines = [line.rstrip() for line in text.splitlines()[:200]]
    for i, line in enumerate(lines[:-1]):
        if not line.strip() or _RST_ADORNMENT.match(line):
            continue
        below = lines[i + 1]
        if _RST_ADORNMENT.match(below) and len(below) >= len(line.strip()):
            return line.strip()
        return None  # the first text line is not a title
    return None


def _title(text: str, fmt: str, name: str) -> str:
    title = None
    if fmt == "html":
        title = _html_title(text)
    elif fmt == "markdown":
        title = _markdown_title(text)
    elif name.lower().endswith(".rst"):
        title = _rst_title(text)
    return title or name
