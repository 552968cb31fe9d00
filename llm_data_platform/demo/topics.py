"""Reference topics as conversation material: subjects, eval questions, answer sentences."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from llm_data_platform.demo.corpus import Doc

# Patterns used only to keep PII-like text out of the clean parts of the data, so that the
# injected PII is all there is.
_PII_LIKE = re.compile(
    r"@\w+\.\w|\+\d|\(\d{3}\)|\d{3}[-. ]\d{3,4}|\d{4}[ -]?\d{4}|\b\d{1,3}(?:\.\d{1,3}){3}\b"
)


@dataclass
class _Topic:
    doc: Doc
    subject: str
    sentences: list[str]


def _subject(title: str) -> str:
    """'The "assert" statement' -> 'the assert statement'."""
    words = []
    for word in title.split():
        bare = word.lstrip("(")
        titlecase = len(bare) > 1 and bare[0].isupper() and bare[1:].rstrip("),.").islower()
        if titlecase and not word.startswith('"'):
            word = word.lower()
        words.append(word)
    return " ".join(words).replace('"', "")


def eval_question_for(title: str) -> str:
    """A question whose answer is in the reference topic with this title."""
    subject = _subject(title)
    if m := re.fullmatch(r"the (\S+) statement", subject):
        return f"What does the {m.group(1)} statement do in Python?"
    if subject.endswith(" statements"):
        return f"What is the syntax of {subject} in Python?"
    if subject.endswith("literals"):
        return f"How are {subject} written in Python source code?"
    if "operation" in subject or "operator" in subject:
        return f"How are {subject} evaluated in Python?"
    if subject.endswith("displays"):
        return f"What do {subject} create in Python?"
    return f"What does the Python language reference say about {subject}?"


def _unambiguous_topics(topics: Sequence[Doc]) -> list[Doc]:
    """Topics whose title is not also a section of another topic ("The if statement" is a
    section of "Compound statements"), so that an eval question has exactly one right doc."""
    headings: dict[str, set[str]] = {}
    for doc in topics:
        for line in doc.content.split("\n"):
            if line.startswith("#"):
                headings.setdefault(line.lstrip("#").strip(), set()).add(doc.doc_id)
    return [d for d in topics if headings.get(d.title, set()) <= {d.doc_id}]


def _sentences(markdown: str) -> list[str]:
    """Prose sentences of a topic, for assistant answers."""
    out = []
    for para in re.split(r"\n\s*\n", markdown):
        lines = para.split("\n")
        indents = {len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()}
        if len(indents) != 1 or "::=" in para:
            continue
        if para.lstrip().startswith(("#", "*", "-", ">>>", "|")):
            continue
        text = ""
        for ln in lines:  # re-join hard-wrapped lines, and words hyphenated across them
            ln = ln.strip()
            if text.endswith("-") and ln[:1].islower():
                text += ln
            else:
                text = f"{text} {ln}" if text else ln
        for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z\"(])", text):
            n_words = len(sent.split())
            if (
                6 <= n_words <= 50
                and sent.endswith(".")
                and sent[0].isupper()
                and " = " not in sent
                and not _PII_LIKE.search(sent)
            ):
                out.append(sent)
    return out
