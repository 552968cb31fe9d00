"""The conversations stream of the demo: one day's chat sessions, with their noise.

Sessions are about the reference topics; known fractions of them carry PII, are empty, garbage,
non-English, near-duplicates, eval-contaminated or mojibake, and at line level some events are
replayed, repeated with a new id, late or malformed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from llm_data_platform.demo.chat_texts import (
    _ANSWER_PREFIXES,
    _AREA_CODES,
    _CARDS,
    _EMAIL_DOMAINS,
    _EMPTY_REPLY,
    _FIRST_NAMES,
    _FOLLOW_UP_TEMPLATES,
    _GARBAGE_REPLY,
    _LAST_NAMES,
    _MOJIBAKE_PREFIX,
    _NEAR_DUP_WORDS,
    _NOT_JSON_LINES,
    _PII_TEMPLATES,
    _QUESTION_TEMPLATES,
    EMPTY_MESSAGES,
    GARBAGE_MESSAGES,
    NON_ENGLISH_SESSIONS,
    PII_KINDS,
)
from llm_data_platform.demo.event_lines import _day_start, _dumps, _Ids, _iso, _parse_ts
from llm_data_platform.demo.topics import _Topic

_LAST_SESSION_START = 22 * 3600  # seconds after midnight; sessions last < 15 minutes


def _mojibake(text: str) -> str:
    return text.encode("utf-8").decode("cp1252", errors="replace")


def _count(n: int, frac: float) -> int:
    """How many of `n` sessions get a kind of noise: a fraction, at least one from 10 on."""
    k = round(n * frac)
    return max(k, 1) if n >= 10 else k


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
        n_near_dup = _count(n, 0.03)
        n_base = n - n_near_dup
        self._start_sessions(self._session_kinds(n, n_base), n_base)
        near_dup_sources = self._add_noise(n_near_dup, with_mojibake)
        for s in self.sessions:
            self._maybe_feedback(s)

        for src in near_dup_sources:
            self.sessions.append(self._near_duplicate(src))
        self.sessions.sort(key=lambda s: s.start)

    def _session_kinds(self, n: int, n_base: int) -> list[str]:
        """The kind of each of the day's ``n_base`` sessions (near-duplicates come later), in
        random order."""
        kinds = (
            ["non_english"] * _count(n, 0.05)
            + ["empty"] * _count(n, 0.03)
            + ["garbage"] * _count(n, 0.03)
        )
        kinds = kinds[:n_base]
        kinds += ["clean"] * (n_base - len(kinds))
        self.rng.shuffle(kinds)
        if not self.topics:
            kinds = [k if k != "clean" else "garbage" for k in kinds]
        return kinds

    def _start_sessions(self, kinds: list[str], n_base: int) -> None:
        """One session per kind, spread over the day, each with its first exchange."""
        rng = self.rng
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

    def _add_noise(self, n_near_dup: int, with_mojibake: bool) -> list[_Session]:
        """PII, eval contamination and mojibake in disjoint picks of the clean sessions;
        returns the (also disjoint) sources of the near-duplicate sessions."""
        rng = self.rng
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
        self._inject_pii(pii_sessions, n_pii)
        for s in contaminated:
            s.contaminated = True
            assert s.topic is not None
            s.messages[0]["content"] = self.eval_by_doc[s.topic.doc.doc_id]
        return near_dup_sources

    def _inject_pii(self, pii_sessions: list[_Session], n_pii: int) -> None:
        """One or two kinds of PII before each picked session's first message."""
        rng = self.rng
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
