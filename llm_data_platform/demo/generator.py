"""Deterministic demo data for the landing zone, with the ground truth of what was written.

`generate_demo` writes the two landing streams the platform ingests (formats in
`llm_data_platform.schemas`):

    <landing_dir>/documents/<arrival-date>/documents-<seq:04d>.jsonl
    <landing_dir>/conversations/<arrival-date>/conversations-<seq:04d>.jsonl

Each file's mtime is its arrival time (the platform's `arrived_at`). Files are written under a
temporary dot-name, stamped, then renamed, so a watcher never sees a half-written file.

Conversations are chat sessions about the reference topics of the demo knowledge base (real
CPython documentation, see `corpus`), with deliberate noise in known amounts: PII, replayed
events, duplicate content, near-duplicate sessions, empty and garbage messages, non-English
sessions, malformed lines, late events and mojibake. `DemoTruth` records what was written,
counted from the lines themselves, so tests and asset checks can compare the platform's
output with it.

Same arguments and Python version -> byte-identical files and truth.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from llm_data_platform.demo.corpus import Doc, load_module_docs, load_topics
from llm_data_platform.demo.eval_set import write_eval_questions

__all__ = [
    "GARBAGE_MESSAGES",
    "NON_ENGLISH_SESSIONS",
    "PII_KINDS",
    "ConversationDayTruth",
    "DemoTruth",
    "DocumentDayTruth",
    "LandedFile",
    "eval_question_for",
    "generate_demo",
    "main",
    "malformed_partition",
]

_NAMESPACE = uuid.UUID("6f1c2a4e-8d0b-5e77-9a3c-2b1d4e5f6a70")

CONVERSATIONS = "conversations"
DOCUMENTS = "documents"

# Arrival times (UTC) of the files of one day. Conversation events before the cut-off go into
# the midday file, the rest into the evening file; the previous day's late events arrive with
# the midday file. Documents arrive once a day.
_MIDDAY_CUTOFF = time(11, 30)
_MIDDAY_ARRIVAL = time(12, 0)
_EVENING_ARRIVAL = time(23, 30)
_DOCUMENTS_ARRIVAL = time(23, 0)
_LAST_SESSION_START = 22 * 3600  # seconds after midnight; sessions last < 15 minutes

PII_KINDS: tuple[str, ...] = ("email", "phone", "credit_card", "ipv4")

# Patterns used only to keep PII-like text out of the clean parts of the data, so that the
# injected PII is all there is.
_PII_LIKE = re.compile(
    r"@\w+\.\w|\+\d|\(\d{3}\)|\d{3}[-. ]\d{3,4}|\d{4}[ -]?\d{4}|\b\d{1,3}(?:\.\d{1,3}){3}\b"
)

GARBAGE_MESSAGES: tuple[str, ...] = (
    "asdkjh qwe!!! ###$$$",
    "????????",
    "jjjjjjjjjjjjjjjjjjjjjjjj",
    "qwertyuiop asdfghjkl zxcvbnm",
    "!!!!!!!!!!!!!!",
    "lkjh lkjh lkjh ;;;; lkjh",
    "$$$$%%%%^^^^&&&&****",
    "zzzzzzzzzzzzzzzzzzzz",
    "fgdfg dfgdfg sdfsdf 123123 !!!",
    ".........",
)

EMPTY_MESSAGES: tuple[str, ...] = ("", " ", "   ", "\n", "\t  ", " \n ")

# (language, user question, assistant answer), written for this demo.
NON_ENGLISH_SESSIONS: tuple[tuple[str, str, str], ...] = (
    (
        "de",
        "Kannst du mir bitte erklären, wie man in Python eine Liste sortiert, ohne die "
        "ursprüngliche Liste zu verändern?",
        "Du kannst die eingebaute Funktion sorted verwenden, denn sie gibt immer eine neue "
        "sortierte Liste zurück. Die ursprüngliche Liste bleibt dabei vollständig unverändert, "
        "und du kannst sie danach weiterhin ganz normal benutzen.",
    ),
    (
        "de",
        "Warum bekomme ich einen Fehler, wenn ich in einer Schleife über ein Wörterbuch "
        "gehe und gleichzeitig Einträge lösche?",
        "Ein Wörterbuch darf während der Iteration nicht seine Größe ändern, deshalb meldet "
        "Python einen Laufzeitfehler. Erstelle am besten zuerst eine Liste der Schlüssel und "
        "lösche die Einträge danach in einer zweiten Schleife.",
    ),
    (
        "fr",
        "Pouvez-vous m'expliquer comment lire un fichier texte ligne par ligne avec Python, "
        "s'il vous plaît ?",
        "Vous pouvez ouvrir le fichier avec l'instruction with et parcourir l'objet fichier "
        "dans une boucle for. Chaque itération vous donne une ligne, et le fichier est fermé "
        "automatiquement à la fin du bloc.",
    ),
    (
        "fr",
        "Quelle est la différence entre une liste et un tuple en Python, et quand faut-il "
        "utiliser l'un ou l'autre ?",
        "Une liste peut être modifiée après sa création, alors qu'un tuple reste toujours "
        "identique. On utilise souvent un tuple pour un petit groupe de valeurs fixes et une "
        "liste pour une collection qui change.",
    ),
    (
        "es",
        "¿Me puedes explicar cómo funcionan los diccionarios en Python y cuándo debería "
        "usarlos en mis programas?",
        "Un diccionario guarda pares de clave y valor, y permite encontrar un valor muy "
        "rápidamente a partir de su clave. Es muy útil cuando necesitas buscar datos por un "
        "nombre o un identificador en lugar de una posición.",
    ),
    (
        "es",
        "¿Por qué mi función devuelve siempre None aunque dentro de ella calculo el "
        "resultado correctamente?",
        "Probablemente la función no tiene una instrucción return al final, y en ese caso "
        "Python devuelve None de forma automática. Añade return seguido del valor calculado "
        "para que la función entregue el resultado.",
    ),
)

_QUESTION_TEMPLATES: tuple[str, ...] = (
    "How {does} {subject} work in Python?",
    "Can you explain {subject}?",
    "Could you give me a short overview of {subject}?",
    "I'm confused about {subject}. Can you help me understand it?",
    "What should I know about {subject} when writing Python code?",
    "Please explain {subject} in simple terms.",
    "I keep getting {subject} wrong. What are the rules?",
)
_FOLLOW_UP_TEMPLATES: tuple[str, ...] = (
    "Thanks! Can you tell me a bit more?",
    "What else should I keep in mind about {subject}?",
    "Could you go into more detail on that?",
    "Is there anything surprising about {subject} that I should watch out for?",
)
_ANSWER_PREFIXES: tuple[str, ...] = ("", "", "Sure. ", "Good question. ")
_EMPTY_REPLY = "It looks like your message was empty. What would you like to know about Python?"
_GARBAGE_REPLY = (
    "Sorry, I could not understand that message. Could you rephrase your question about Python?"
)
_MOJIBAKE_PREFIX = "I read about this in a café in Zürich last week, so: "
_NEAR_DUP_WORDS: tuple[str, ...] = ("basically", "actually", "essentially", "simply", "really")

_FIRST_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")
_LAST_NAMES = ("smith", "jones", "garcia", "miller", "davis", "lopez", "wilson", "moore")
_EMAIL_DOMAINS = ("example.com", "mail.example.org", "example.net")
_AREA_CODES = ("415", "212", "646", "312", "617")
# Luhn-valid test card numbers, in the usual printed groupings.
_CARDS = (
    "4111 1111 1111 1111",
    "5500 0000 0000 0004",
    "4012-8888-8888-1881",
    "3782 822463 10005",
    "6011 1111 1111 1117",
)
_PII_TEMPLATES = {
    "email": ("My email is {v}, in case you need it. ", "You can reach me at {v} later. "),
    "phone": ("Call me at {v} if that is easier. ", "My number is {v}. "),
    "credit_card": ("Also my card {v} got charged twice, but first: ",),
    "ipv4": ("I'm testing this on the server at {v} right now. ",),
}

_NOT_JSON_LINES = (
    "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "ERROR upstream connection reset by peer",
    "conversation_id=abc123 turn=3 role=user content=hello",
    "Traceback (most recent call last):",
)

_DOC_EDIT_SENTENCES = (
    "This section was reviewed by the documentation team and clarified for readers who are "
    "new to Python.",
    "A common source of confusion is covered in the FAQ; the behaviour described here has not "
    "changed.",
    "Examples in this section were checked against the current interpreter.",
    "Readers upgrading from older versions should re-read this section carefully.",
)

_UNICODE_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


# --------------------------------------------------------------------------------------------
# truth


@dataclass
class ConversationDayTruth:
    """What was written for one event-day partition of the conversations stream.

    Event counts are over *unique* well-formed events (by event_id) whose timestamp falls on
    the day, wherever their line landed; repeated lines are counted in
    `exact_duplicate_events` only. Message-level counts (`empty`, `garbage`, `non_english`,
    `mojibake`, `pii_messages`, `late_events`) are over unique message events.
    """

    sessions: int = 0  # conversations started on the day (all kinds, incl. near-dup copies)
    messages: int = 0  # unique well-formed message events
    feedback: int = 0  # unique well-formed feedback events
    lines: int = 0  # well-formed lines (messages + feedback + exact_duplicate_events)
    malformed: int = 0  # malformed lines attributed to this partition (see malformed_partition)
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    pii: dict[str, int] = field(default_factory=dict)  # kind -> injected spans
    pii_messages: int = 0
    exact_duplicate_events: int = 0  # extra lines replaying an event (same event_id and bytes)
    duplicate_content: int = 0  # messages repeating (conversation_id, turn, role, content)
    near_duplicate_sessions: int = 0
    near_duplicate_pairs: list[tuple[str, str]] = field(default_factory=list)  # (copy, original)
    empty: int = 0  # content "" or whitespace only
    garbage: int = 0
    non_english: int = 0  # messages of the non-English sessions
    non_english_conversation_ids: list[str] = field(default_factory=list)
    mojibake: int = 0
    late_events: int = 0  # messages whose line arrived in a file of a later day
    poor_ratings: int = 0  # feedback with rating 1 or 2
    rated_sessions: int = 0
    # Clean English sessions with a well-formed rating >= 4: not empty/garbage/non-English, not
    # a near-duplicate copy, not containing an eval question. PII in them is fine (redacted).
    candidate_conversation_ids: list[str] = field(default_factory=list)
    # Sessions whose first user message is an eval question verbatim (for decontamination).
    eval_contaminated_conversation_ids: list[str] = field(default_factory=list)


@dataclass
class DocumentDayTruth:
    """What was written for one update-day of the documents stream."""

    upserts: int = 0  # upsert events (new + updated + unchanged re-sends)
    deletes: int = 0
    new_doc_ids: list[str] = field(default_factory=list)
    updated_doc_ids: list[str] = field(default_factory=list)  # content changed
    unchanged_doc_ids: list[str] = field(default_factory=list)  # re-sent with identical content
    deleted_doc_ids: list[str] = field(default_factory=list)
    live_docs: int = 0  # documents existing at the end of the day


@dataclass
class LandedFile:
    path: str  # relative to landing_dir, POSIX separators
    stream: str  # "conversations" | "documents"
    arrival_day: str  # YYYY-MM-DD
    arrived_at: str  # ISO-8601 UTC, also the file's mtime
    lines: int


@dataclass
class DemoTruth:
    seed: int
    days: list[str]
    conversations: dict[str, ConversationDayTruth]  # by event day
    documents: dict[str, DocumentDayTruth]  # by update day
    eval_questions: list[tuple[str, str]]  # (question, doc_id), one per live topic
    final_doc_ids: list[str]  # documents that exist after the last day
    files: list[LandedFile]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# helpers


def _dumps(obj: object) -> str:
    text = json.dumps(obj, ensure_ascii=False)
    for raw, escaped in _UNICODE_LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _parse_ts(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def malformed_partition(line: str, arrival_day: date) -> date:
    """The event-day partition a malformed line is attributed to: the day of its "timestamp"
    if the line is a JSON object with a parseable ISO-8601 timestamp, else its arrival day."""
    try:
        obj = json.loads(line)
    except ValueError:
        return arrival_day
    ts = _parse_ts(obj.get("timestamp")) if isinstance(obj, dict) else None
    return ts.date() if ts is not None else arrival_day


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


def _mojibake(text: str) -> str:
    return text.encode("utf-8").decode("cp1252", errors="replace")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _at(day: date, t: time) -> datetime:
    return datetime.combine(day, t, tzinfo=UTC)


def _count(n: int, frac: float) -> int:
    """How many of `n` sessions get a kind of noise: a fraction, at least one from 10 on."""
    k = round(n * frac)
    return max(k, 1) if n >= 10 else k


class _Ids:
    def __init__(self, scope: str):
        self.scope = scope
        self.n = 0

    def __call__(self, kind: str) -> str:
        self.n += 1
        return str(uuid.uuid5(_NAMESPACE, f"{self.scope}:{kind}:{self.n}"))


@dataclass
class _Topic:
    doc: Doc
    subject: str
    sentences: list[str]


@dataclass
class _Session:
    conversation_id: str
    kind: str  # clean | empty | garbage | non_english | near_duplicate
    user_id: str
    start: datetime
    messages: list[dict] = field(default_factory=list)
    feedback: dict | None = None
    pii: Counter = field(default_factory=Counter)
    contaminated: bool = False
    mojibake: bool = False
    topic: _Topic | None = None
    source: str | None = None  # for near-duplicate copies: the original conversation_id

    @property
    def events(self) -> list[dict]:
        return self.messages + ([self.feedback] if self.feedback else [])


# --------------------------------------------------------------------------------------------
# conversations


class _ConversationDay:
    """Builds the sessions and lines of one event day."""

    def __init__(
        self,
        day: date,
        n_sessions: int,
        topics: Sequence[_Topic],
        eval_by_doc: dict[str, str],
        seed: int,
        with_mojibake: bool,
    ):
        self.day = day
        self.rng = random.Random(f"{seed}:conversations:{day.isoformat()}")
        self.ids = _Ids(f"{seed}:{day.isoformat()}")
        self.topics = topics
        self.eval_by_doc = eval_by_doc
        self.sessions: list[_Session] = []
        self._build(n_sessions, with_mojibake)

    # -- sessions

    def _message(self, s: _Session, ts: datetime, role: str, content: str) -> dict:
        return {
            "event_id": self.ids("event"),
            "type": "message",
            "conversation_id": s.conversation_id,
            "turn": len(s.messages),
            "role": role,
            "content": content,
            "user_id": s.user_id,
            "timestamp": _iso(ts),
        }

    def _exchange(self, s: _Session, ts: datetime, question: str, answer: str) -> datetime:
        rng = self.rng
        s.messages.append(self._message(s, ts, "user", question))
        ts += timedelta(seconds=rng.randint(3, 20), milliseconds=rng.randint(0, 999))
        s.messages.append(self._message(s, ts, "assistant", answer))
        return ts

    def _answer(self, topic: _Topic, start: int) -> tuple[str, int]:
        k = min(self.rng.randint(2, 4), len(topic.sentences))
        start = start % len(topic.sentences)
        picked = (topic.sentences * 2)[start : start + k]
        return self.rng.choice(_ANSWER_PREFIXES) + " ".join(picked), start + k

    def _new_session(self, kind: str, start: datetime) -> _Session:
        return _Session(
            conversation_id=self.ids("conversation"),
            kind=kind,
            user_id=f"user-{self.rng.randint(1, 250):04d}",
            start=start,
        )

    def _clean_session(self, start: datetime) -> _Session:
        rng = self.rng
        s = self._new_session("clean", start)
        topic = rng.choice(self.topics)
        s.topic = topic
        template = rng.choice(_QUESTION_TEMPLATES)
        last = topic.subject.rstrip(")").split()[-1]
        does = "do" if last.endswith("s") and not last.endswith("ss") else "does"
        question = template.format(subject=topic.subject, does=does)
        question = question[0].upper() + question[1:]
        answer, pos = self._answer(topic, rng.randrange(len(topic.sentences)))
        ts = self._exchange(s, start, question, answer)
        if rng.random() < 0.3:
            ts += timedelta(seconds=rng.randint(20, 120), milliseconds=rng.randint(0, 999))
            follow_up = rng.choice(_FOLLOW_UP_TEMPLATES).format(subject=topic.subject)
            answer, _ = self._answer(topic, pos)
            self._exchange(s, ts, follow_up, answer)
        return s

    def _build(self, n: int, with_mojibake: bool) -> None:
        rng = self.rng
        n_near_dup = _count(n, 0.03)
        kinds = (
            ["non_english"] * _count(n, 0.05)
            + ["empty"] * _count(n, 0.03)
            + ["garbage"] * _count(n, 0.03)
        )
        n_base = n - n_near_dup
        kinds = kinds[:n_base]
        kinds += ["clean"] * (n_base - len(kinds))
        rng.shuffle(kinds)
        if not self.topics:
            kinds = [k if k != "clean" else "garbage" for k in kinds]

        spacing = _LAST_SESSION_START / max(n_base, 1)
        day0 = _day_start(self.day)
        non_english_i = rng.randrange(len(NON_ENGLISH_SESSIONS))
        for i, kind in enumerate(kinds):
            offset = 300 + int(i * spacing) + rng.randint(0, max(int(spacing / 2) - 300, 0))
            start = day0 + timedelta(seconds=offset, milliseconds=rng.randint(0, 999))
            if kind == "clean":
                s = self._clean_session(start)
            else:
                s = self._new_session(kind, start)
                if kind == "non_english":
                    _, q, a = NON_ENGLISH_SESSIONS[non_english_i % len(NON_ENGLISH_SESSIONS)]
                    non_english_i += 1
                elif kind == "empty":
                    q, a = rng.choice(EMPTY_MESSAGES), _EMPTY_REPLY
                else:
                    q, a = rng.choice(GARBAGE_MESSAGES), _GARBAGE_REPLY
                self._exchange(s, start, q, a)
            self.sessions.append(s)

        clean = [s for s in self.sessions if s.kind == "clean"]
        order = list(clean)
        rng.shuffle(order)
        # disjoint picks among clean sessions: PII, eval contamination, mojibake, near-dup sources
        n_pii = _count(len(clean), 0.15)
        n_contaminated = _count(len(clean), 0.03)
        pii_sessions, order = order[:n_pii], order[n_pii:]
        contaminated = [s for s in order if s.topic and s.topic.doc.doc_id in self.eval_by_doc]
        contaminated = contaminated[:n_contaminated]
        order = [s for s in order if s not in contaminated]
        if with_mojibake and order:
            # the earliest remaining session, so it lands in the midday file
            victim = min(order, key=lambda s: s.start)
            order.remove(victim)
            victim.mojibake = True
            msg = victim.messages[0]
            msg["content"] = _mojibake(_MOJIBAKE_PREFIX + msg["content"])
        near_dup_sources = order[:n_near_dup]

        # kinds round-robin, continuing from day to day, so that few sessions still see all kinds
        first_kind = self.day.toordinal() * max(n_pii, 1)
        for i, s in enumerate(pii_sessions, start=first_kind):
            kinds_here = [PII_KINDS[i % len(PII_KINDS)]]
            if rng.random() < 0.35:
                kinds_here.append(PII_KINDS[(i + 1) % len(PII_KINDS)])
            msg = s.messages[0]
            for kind in kinds_here:
                text = rng.choice(_PII_TEMPLATES[kind]).format(v=self._pii_value(kind))
                msg["content"] = text + msg["content"]
                s.pii[kind] += 1

        for s in contaminated:
            s.contaminated = True
            assert s.topic is not None
            s.messages[0]["content"] = self.eval_by_doc[s.topic.doc.doc_id]

        for s in self.sessions:
            self._maybe_feedback(s)

        for src in near_dup_sources:
            self.sessions.append(self._near_duplicate(src))
        self.sessions.sort(key=lambda s: s.start)

    def _pii_value(self, kind: str) -> str:
        rng = self.rng
        if kind == "email":
            name = f"{rng.choice(_FIRST_NAMES)}.{rng.choice(_LAST_NAMES)}{rng.randint(1, 99)}"
            return f"{name}@{rng.choice(_EMAIL_DOMAINS)}"
        if kind == "phone":
            area, last4 = rng.choice(_AREA_CODES), f"01{rng.randint(0, 99):02d}"
            if rng.random() < 0.5:
                return f"+1 {area}-555-{last4}"
            return f"({area}) 555-{last4}"
        if kind == "credit_card":
            return rng.choice(_CARDS)
        return rng.choice(
            (
                f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                f"203.0.113.{rng.randint(1, 254)}",
            )
        )

    def _maybe_feedback(self, s: _Session) -> None:
        rng = self.rng
        if s.kind == "empty" or rng.random() >= 0.8:
            return
        if s.kind == "garbage":
            rating = rng.choice((1, 1, 2, 3))
        elif rng.random() < 0.1:
            rating = rng.choice((1, 2))
        else:
            rating = rng.choices((3, 4, 5), weights=(12, 38, 50))[0]
        last = _parse_ts(s.messages[-1]["timestamp"])
        assert last is not None
        ts = last + timedelta(seconds=rng.randint(30, 300), milliseconds=rng.randint(0, 999))
        s.feedback = {
            "event_id": self.ids("event"),
            "type": "feedback",
            "conversation_id": s.conversation_id,
            "rating": rating,
            "user_id": s.user_id,
            "timestamp": _iso(ts),
        }

    def _near_duplicate(self, src: _Session) -> _Session:
        rng = self.rng
        shift = timedelta(seconds=rng.randint(600, 3600), milliseconds=rng.randint(0, 999))
        copy = self._new_session("near_duplicate", src.start + shift)
        copy.source = src.conversation_id
        for msg in src.messages:
            new = dict(msg)
            new["event_id"] = self.ids("event")
            new["conversation_id"] = copy.conversation_id
            new["user_id"] = copy.user_id
            new["timestamp"] = _iso(_parse_ts(msg["timestamp"]) + shift)  # type: ignore[operator]
            copy.messages.append(new)
        # one word of the first answer changes
        answer = copy.messages[1]
        words = answer["content"].split(" ")
        candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4]
        i = rng.choice(candidates) if candidates else len(words) - 1
        words[i] = rng.choice([w for w in _NEAR_DUP_WORDS if w != words[i].lower()])
        answer["content"] = " ".join(words)
        if src.feedback:
            fb = dict(src.feedback)
            fb["event_id"] = self.ids("event")
            fb["conversation_id"] = copy.conversation_id
            fb["user_id"] = copy.user_id
            fb["timestamp"] = _iso(_parse_ts(fb["timestamp"]) + shift)  # type: ignore[operator]
            copy.feedback = fb
        return copy

    # -- noise at line level

    def plan_lines(self, has_next_day: bool) -> tuple[list[dict], list[dict], list[tuple]]:
        """Split the day's events into on-time events and late events (for the next day's
        midday file), and add line-level noise. Returns (on_time, late, extra) where `extra`
        is a list of (kind, payload) with kind "replay" (an event dict written again) or
        "malformed" (reason, line text, timestamp-or-None)."""
        rng = self.rng
        n = len(self.sessions)
        events = [e for s in self.sessions for e in s.events]
        clean = [s for s in self.sessions if s.kind == "clean"]

        late_ids: set[str] = set()
        if has_next_day and clean:
            # the last message of sessions late in the day
            pool = sorted(clean, key=lambda s: s.start)[len(clean) // 2 :]
            for s in rng.sample(pool, min(_count(n, 0.05), len(pool))):
                late_ids.add(s.messages[-1]["event_id"])

        # PII and mojibake messages are never repeated, so their counts are unambiguous
        special = {s.messages[0]["event_id"] for s in self.sessions if s.pii or s.mojibake}
        extra: list[tuple] = []
        # exact replays: the same line again
        pool = [e for e in events if e["event_id"] not in late_ids | special]
        for e in rng.sample(pool, min(_count(n, 0.05), len(pool))):
            extra.append(("replay", e))
        # duplicate content: same message, new event_id, a second later (client retry)
        pool = [e for s in clean for e in s.messages if e["event_id"] not in late_ids | special]
        dup_content = []
        for e in rng.sample(pool, min(_count(n, 0.04), len(pool))):
            new = dict(e)
            new["event_id"] = self.ids("event")
            new["timestamp"] = _iso(_parse_ts(e["timestamp"]) + timedelta(seconds=1))  # type: ignore[operator]
            dup_content.append(new)

        on_time = [e for e in events if e["event_id"] not in late_ids] + dup_content
        late = [e for e in events if e["event_id"] in late_ids]
        return on_time, late, extra

    def malformed_lines(self, previous: _ConversationDay | None, reps: int) -> list[tuple]:
        """(reason, text, where) for this arrival day; where is "midday" or "evening"."""
        rng = self.rng
        day0 = _day_start(self.day)
        out: list[tuple] = []

        def some_ts() -> datetime:
            return day0 + timedelta(seconds=rng.randint(0, 23 * 3600))

        def message_like(ts: datetime) -> dict:
            return {
                "event_id": self.ids("event"),
                "type": "message",
                "conversation_id": self.ids("conversation"),
                "turn": 0,
                "role": "user",
                "content": "How do I read a CSV file with Python and skip the header row?",
                "user_id": f"user-{rng.randint(1, 250):04d}",
                "timestamp": _iso(ts),
            }

        for _ in range(reps):
            where = rng.choice(("midday", "evening"))
            text = _dumps(message_like(some_ts()))
            out.append(("truncated_json", text[: len(text) // 2], where))
            out.append(("not_json", rng.choice(_NOT_JSON_LINES), rng.choice(("midday", "evening"))))
            ts = some_ts()
            arr = [
                self.ids("event"),
                "message",
                self.ids("conversation"),
                0,
                "user",
                "hi",
                _iso(ts),
            ]
            out.append(("json_array", _dumps(arr), rng.choice(("midday", "evening"))))
            missing = message_like(some_ts())
            del missing["conversation_id"]
            out.append(("missing_conversation_id", _dumps(missing), "evening"))
            bad_ts = message_like(some_ts())
            bad_ts["timestamp"] = "yesterday at 5pm"
            out.append(("bad_timestamp", _dumps(bad_ts), rng.choice(("midday", "evening"))))
            # a feedback with a wrong type; from the previous day when there is one, so that
            # it belongs to that day's partition although it arrives today
            src_day = previous if previous is not None and previous.sessions else self
            if src_day.sessions:
                s = rng.choice(src_day.sessions)
                last = _parse_ts(s.messages[-1]["timestamp"])
                fb = {
                    "event_id": self.ids("event"),
                    "type": "feedback",
                    "conversation_id": s.conversation_id,
                    "rating": "five",
                    "user_id": s.user_id,
                    "timestamp": _iso(last + timedelta(seconds=45)),  # type: ignore[operator]
                }
                where = "midday" if src_day is previous else "evening"
                out.append(("wrong_type_rating", _dumps(fb), where))
        return out


# --------------------------------------------------------------------------------------------
# documents


def _edit_content(doc: Doc, day: date, rng: random.Random) -> str:
    sentence = rng.choice(_DOC_EDIT_SENTENCES)
    note = f"Revised on {day.isoformat()}: {sentence}"
    content = doc.content
    if doc.format == "html":
        idx = content.rfind("</body>")
        if idx < 0:
            return content + f"\n<p>{note}</p>\n"
        return content[:idx] + f"<p>{note}</p>\n" + content[idx:]
    if rng.random() < 0.5:
        # edit: extend a prose paragraph in place
        paras = content.split("\n\n")
        prose = [i for i, p in enumerate(paras) if p[:1].isalpha() and len(p) > 80]
        if prose:
            i = rng.choice(prose)
            paras[i] = paras[i] + " " + note
            return "\n\n".join(paras)
    return content.rstrip("\n") + "\n\n" + note + "\n"


def _documents(
    days: Sequence[date], docs: Sequence[Doc], topic_ids: set[str], seed: int
) -> tuple[dict[date, list[dict]], dict[str, DocumentDayTruth], dict[str, Doc]]:
    rng = random.Random(f"{seed}:documents")
    ids = _Ids(f"{seed}:documents")
    live: dict[str, Doc] = {}
    events_by_day: dict[date, list[dict]] = {}
    truth: dict[str, DocumentDayTruth] = {}

    def upsert(doc: Doc, ts: datetime) -> dict:
        return {
            "event_id": ids("event"),
            "doc_id": doc.doc_id,
            "op": "upsert",
            "format": doc.format,
            "title": doc.title,
            "content": doc.content,
            "source_uri": doc.source_uri,
            "updated_at": _iso(ts),
        }

    for day_i, day in enumerate(days):
        t = DocumentDayTruth()
        events: list[dict] = []
        ts = _at(day, time(6, 0))
        if day_i == 0:
            for doc in docs:
                ts += timedelta(seconds=7)
                events.append(upsert(doc, ts))
                live[doc.doc_id] = doc
                t.new_doc_ids.append(doc.doc_id)
        elif live:
            # exactly one delete; documents outside the conversation topics go first
            others = sorted(d for d in live if d not in topic_ids)
            victim = rng.choice(others or sorted(live))
            rest = sorted(d for d in live if d != victim)
            picks = rng.sample(rest, min(3, len(rest)))
            for j, doc_id in enumerate(picks):
                ts += timedelta(minutes=rng.randint(5, 90))
                doc = live[doc_id]
                if j < 2:  # content changes
                    doc = Doc(
                        doc.doc_id,
                        doc.title,
                        doc.format,
                        _edit_content(doc, day, rng),
                        doc.source_uri,
                    )
                    live[doc_id] = doc
                    t.updated_doc_ids.append(doc_id)
                else:  # re-sent unchanged (same version)
                    t.unchanged_doc_ids.append(doc_id)
                events.append(upsert(doc, ts))
            ts += timedelta(minutes=rng.randint(5, 90))
            events.append(
                {"event_id": ids("event"), "doc_id": victim, "op": "delete", "updated_at": _iso(ts)}
            )
            del live[victim]
            t.deleted_doc_ids.append(victim)
        t.upserts = sum(e["op"] == "upsert" for e in events)
        t.deletes = sum(e["op"] == "delete" for e in events)
        t.live_docs = len(live)
        events_by_day[day] = events
        truth[day.isoformat()] = t
    return events_by_day, truth, live


# --------------------------------------------------------------------------------------------
# writing


def _write(landing: Path, rel: str, lines: Iterable[str], arrived_at: datetime) -> int:
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    stamp = arrived_at.timestamp()
    os.utime(tmp, (stamp, stamp))
    os.replace(tmp, path)
    return n


def generate_demo(
    landing_dir: str | os.PathLike,
    days: Sequence[date],
    conversations_per_day: int = 40,
    n_topics: int = 20,
    n_modules: int = 6,
    seed: int = 7,
) -> DemoTruth:
    """Write the demo landing files for `days` into `landing_dir` and return the truth.

    Existing files with the same names are replaced; other files are left alone.
    """
    landing = Path(landing_dir)
    days = sorted(set(days))
    if conversations_per_day < 0:
        raise ValueError("conversations_per_day must be >= 0")

    topic_docs = load_topics(n_topics)
    module_docs = load_module_docs(n_modules)
    all_docs = topic_docs + module_docs
    topic_ids = {d.doc_id for d in topic_docs}

    doc_events, doc_truth, live_docs = _documents(days, all_docs, topic_ids, seed)
    # conversations only use topics that exist for the whole run, so none refers to a deleted doc
    deleted = {d for t in doc_truth.values() for d in t.deleted_doc_ids}
    topics = [_Topic(d, _subject(d.title), _sentences(d.content)) for d in topic_docs]
    usable = [t for t in topics if len(t.sentences) >= 2 and t.doc.doc_id not in deleted]
    eval_by_doc = {
        d.doc_id: eval_question_for(d.title)
        for d in _unambiguous_topics(topic_docs)
        if d.doc_id not in deleted
    }

    conv_days = [
        _ConversationDay(
            day, conversations_per_day, usable, eval_by_doc, seed, with_mojibake=i == 0
        )
        for i, day in enumerate(days)
    ]

    files: list[LandedFile] = []
    # (relative path, arrival time, lines) in arrival order
    planned: list[tuple[str, str, datetime, list[str]]] = []
    seqs = Counter()

    def rel_path(stream: str, day: date) -> str:
        seqs[stream] += 1
        return f"{stream}/{day.isoformat()}/{stream}-{seqs[stream]:04d}.jsonl"

    reps = max(1, round(conversations_per_day / 40)) if conversations_per_day else 0
    late_carry: list[dict] = []
    previous: _ConversationDay | None = None
    for i, (day, cd) in enumerate(zip(days, conv_days, strict=True)):
        rng = cd.rng
        on_time, late, extra = cd.plan_lines(has_next_day=i + 1 < len(days))
        cutoff = _iso(_at(day, _MIDDAY_CUTOFF))
        on_time.sort(key=lambda e: e["timestamp"])
        midday = [_dumps(e) for e in late_carry] + [
            _dumps(e) for e in on_time if e["timestamp"] < cutoff
        ]
        evening = [_dumps(e) for e in on_time if e["timestamp"] >= cutoff]
        # replays go into the evening file, after the original line
        for _, event in extra:
            line = _dumps(event)
            first = evening.index(line) + 1 if line in evening else 0
            evening.insert(rng.randint(first, len(evening)), line)
        for _reason, text, where in cd.malformed_lines(previous, reps):
            target = midday if where == "midday" else evening
            target.insert(rng.randint(0, len(target)), text)
        late_carry = late
        previous = cd

        doc_lines = [_dumps(e) for e in doc_events[day]]
        if doc_lines:
            planned.append(
                (DOCUMENTS, rel_path(DOCUMENTS, day), _at(day, _DOCUMENTS_ARRIVAL), doc_lines)
            )
        for lines, t in ((midday, _MIDDAY_ARRIVAL), (evening, _EVENING_ARRIVAL)):
            if lines:
                planned.append((CONVERSATIONS, rel_path(CONVERSATIONS, day), _at(day, t), lines))

    for stream, rel, arrived_at, lines in planned:
        n = _write(landing, rel, lines, arrived_at)
        files.append(
            LandedFile(
                path=rel,
                stream=stream,
                arrival_day=arrived_at.date().isoformat(),
                arrived_at=_iso(arrived_at),
                lines=n,
            )
        )

    conv_truth = _conversation_truth(days, conv_days, planned)
    eval_questions = [(q, doc_id) for doc_id, q in eval_by_doc.items()]
    # The retrieval-evaluation set ships with the knowledge base: the platform decontaminates
    # training data against it and (later) gates new index versions on it.
    write_eval_questions(landing, eval_questions)
    return DemoTruth(
        seed=seed,
        days=[d.isoformat() for d in days],
        conversations=conv_truth,
        documents=doc_truth,
        eval_questions=eval_questions,
        final_doc_ids=sorted(live_docs),
        files=files,
    )


def _conversation_truth(
    days: Sequence[date],
    conv_days: Sequence[_ConversationDay],
    planned: Sequence[tuple[str, str, datetime, list[str]]],
) -> dict[str, ConversationDayTruth]:
    """Count what the conversation files actually contain, line by line."""
    truth = {d.isoformat(): ConversationDayTruth() for d in days}
    sessions = {s.conversation_id: s for cd in conv_days for s in cd.sessions}
    messages = {e["event_id"]: s for s in sessions.values() for e in s.messages}

    def day_truth(key: str) -> ConversationDayTruth:
        return truth.setdefault(key, ConversationDayTruth())

    seen: set[str] = set()
    content_keys: set[tuple] = set()
    for stream, _rel, arrived_at, lines in planned:
        if stream != CONVERSATIONS:
            continue
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            ok = isinstance(event, dict) and _well_formed(event)
            if not ok:
                t = day_truth(malformed_partition(line, arrived_at.date()).isoformat())
                t.malformed += 1
                reason = _malformed_reason(event)
                t.malformed_by_reason[reason] = t.malformed_by_reason.get(reason, 0) + 1
                continue
            ts = _parse_ts(event["timestamp"])
            assert ts is not None
            t = day_truth(ts.date().isoformat())
            t.lines += 1
            if event["event_id"] in seen:
                t.exact_duplicate_events += 1
                continue
            seen.add(event["event_id"])
            if event["type"] == "feedback":
                t.feedback += 1
                t.poor_ratings += event["rating"] <= 2
                continue
            t.messages += 1
            key = (event["conversation_id"], event["turn"], event["role"], event["content"])
            if key in content_keys:
                t.duplicate_content += 1
            content_keys.add(key)
            content = event["content"]
            t.empty += content.strip() == ""
            t.garbage += content in GARBAGE_MESSAGES
            t.late_events += ts.date() < arrived_at.date()
            s = messages.get(event["event_id"]) or sessions[event["conversation_id"]]
            t.non_english += s.kind == "non_english"
            if event["turn"] == 0 and event["role"] == "user" and event in s.messages:
                t.mojibake += s.mojibake
                if s.pii:
                    t.pii_messages += 1
                    for kind, k in s.pii.items():
                        t.pii[kind] = t.pii.get(kind, 0) + k

    for s in sorted(sessions.values(), key=lambda s: s.start):
        t = day_truth(s.start.date().isoformat())
        t.sessions += 1
        t.rated_sessions += s.feedback is not None
        if s.kind == "non_english":
            t.non_english_conversation_ids.append(s.conversation_id)
        if s.kind == "near_duplicate":
            t.near_duplicate_sessions += 1
            t.near_duplicate_pairs.append((s.conversation_id, s.source or ""))
        if s.contaminated:
            t.eval_contaminated_conversation_ids.append(s.conversation_id)
        elif s.kind == "clean" and s.feedback is not None and s.feedback["rating"] >= 4:
            t.candidate_conversation_ids.append(s.conversation_id)
    for t in truth.values():
        t.pii = {k: t.pii.get(k, 0) for k in PII_KINDS}
        t.malformed_by_reason = dict(sorted(t.malformed_by_reason.items()))
    return dict(sorted(truth.items()))


_REQUIRED = {
    "message": {
        "event_id": str,
        "conversation_id": str,
        "turn": int,
        "role": str,
        "content": str,
        "timestamp": str,
    },
    "feedback": {"event_id": str, "conversation_id": str, "rating": int, "timestamp": str},
}


def _well_formed(event: dict) -> bool:
    required = _REQUIRED.get(event.get("type"))  # type: ignore[arg-type]
    if required is None:
        return False
    for name, typ in required.items():
        value = event.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            return False
    if event["type"] == "feedback" and not 1 <= event["rating"] <= 5:
        return False
    return _parse_ts(event["timestamp"]) is not None


def _malformed_reason(event: object) -> str:
    if event is None:
        return "invalid_json"
    if not isinstance(event, dict):
        return "not_an_object"
    required = _REQUIRED.get(event.get("type"), {})
    for name, typ in required.items():
        if name not in event:
            return f"missing_{name}"
        if not isinstance(event[name], typ):
            return f"wrong_type_{name}"
    if _parse_ts(event.get("timestamp")) is None:
        return "bad_timestamp"
    return "invalid_event"


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llm_data_platform.demo.generator",
        description="Write deterministic demo landing files and print the truth as JSON.",
    )
    parser.add_argument("--landing", required=True, help="landing folder to write into")
    parser.add_argument(
        "--days", required=True, nargs="+", type=date.fromisoformat, help="YYYY-MM-DD ..."
    )
    parser.add_argument("--conversations-per-day", type=int, default=40)
    parser.add_argument("--topics", type=int, default=20, help="reference topics to publish")
    parser.add_argument("--modules", type=int, default=6, help="stdlib module pages to publish")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    truth = generate_demo(
        args.landing,
        args.days,
        conversations_per_day=args.conversations_per_day,
        n_topics=args.topics,
        n_modules=args.modules,
        seed=args.seed,
    )
    sys.stdout.write(truth.to_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
