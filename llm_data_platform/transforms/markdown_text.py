"""Markdown → clean text (see :mod:`html_extract` for what "clean text" is).

Headings stay ``#`` lines (setext ones converted), code keeps its text without fences, and
link targets, emphasis markers and other markup go; Python identifiers such as ``__init__``
are not taken for emphasis.
"""

from __future__ import annotations

import re

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
