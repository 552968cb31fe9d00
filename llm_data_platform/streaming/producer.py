"""A synthetic event stream into any of the three sources, at a rate, for a duration.

    produce_synthetic("data/landing", rate=50, duration=60)                  # landing folder
    produce_synthetic("s3://bucket/incoming/chat", 50, 60, endpoint_url=...) # S3 prefix
    produce_synthetic("kafka://127.0.0.1:9092/chat-events", 500, 30)         # Kafka topic

Events are chat sessions in the landing JSONL format (``schemas``: messages, then a rating in
most sessions), timestamped when they are emitted, so a user watching the UI sees the sensors
pick up the current day. Several sessions are open at once, so a conversation's events are
spread over several files/objects/partitions as in real traffic. ``malformed_fraction`` mixes
in bad lines (broken JSON, wrong types, missing fields, undecodable bytes) to watch the
quarantine fill. Files and objects hold the events of one ``batch_seconds`` tick each; Kafka
messages are keyed by conversation id.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

QUESTIONS = (
    "How do I reverse a list in Python without copying it?",
    "What does the assert statement do?",
    "How are exceptions handled in a with block?",
    "What is the difference between a tuple and a list?",
    "How do I read a file line by line?",
    "When should I use a generator instead of a list?",
    "What does the global statement change?",
    "How do I sort a dictionary by value?",
    "Why is my default argument shared between calls?",
    "How do I format a float with two decimals?",
)
ANSWERS = (
    "Call xs.reverse() to reverse it in place, or iterate over reversed(xs) without a copy.",
    "assert checks a condition and raises AssertionError when it is false, unless Python "
    "runs with -O.",
    "The context manager's __exit__ receives the exception and may suppress it by returning "
    "a true value.",
    "A tuple is immutable and hashable when its items are; a list can change in place.",
    "Open it with a with statement and iterate over the file object: each step yields a line.",
    "A generator produces items lazily, so memory stays flat however long the sequence is.",
    "It makes assignments in the function bind the module-level name instead of a local one.",
    "Use sorted(d.items(), key=lambda kv: kv[1]) and build a new dict from the result.",
    "Defaults are evaluated once, when the def runs; use None and create the object inside.",
    "Use an f-string with a format spec: f'{value:.2f}'.",
)
FOLLOW_UPS = (
    "Thanks, and what about performance?",
    "Can you show a short example?",
    "Does that work in Python 3.11 too?",
    "ok thanks",
)


@dataclass
class ProduceReport:
    target: str
    kind: str  # landing | s3 | kafka
    events: int  # lines written (malformed ones included)
    malformed: int
    units: int  # files, objects or messages
    conversations: int
    seconds: float


class SyntheticChat:
    """Chat sessions as landing JSONL lines; several sessions open at once."""

    def __init__(
        self,
        stream: str = "conversations",
        seed: int | None = None,
        malformed_fraction: float = 0.0,
        run_id: str | None = None,
        open_sessions: int = 8,
    ) -> None:
        if stream not in ("conversations", "documents"):
            raise ValueError(f"Unknown stream {stream!r}")
        self.stream = stream
        self.rng = random.Random(seed)
        self.malformed_fraction = malformed_fraction
        self.run_id = run_id or uuid.uuid4().hex[:10]  # event ids never collide across runs
        self.open_sessions = open_sessions
        self._sessions: list[dict] = []
        self._n_events = 0
        self._n_sessions = 0
        self.malformed = 0

    @property
    def conversations(self) -> int:
        return self._n_sessions

    def _event_id(self) -> str:
        self._n_events += 1
        return f"syn-{self.run_id}-{self._n_events:09d}"

    def _new_session(self, now: datetime) -> dict:
        self._n_sessions += 1
        topic = self.rng.randrange(len(QUESTIONS))
        return {
            "conversation_id": f"syn-{self.run_id}-c{self._n_sessions:07d}",
            "user_id": f"u{self.rng.randrange(1000):04d}",
            "topic": topic,
            "turn": 0,
            "turns": self.rng.choice((2, 2, 4, 4, 6)),
            "rate": self.rng.random() < 0.6,
        }

    def _conversation_event(self, now: datetime) -> tuple[str, dict]:
        while len(self._sessions) < self.open_sessions:
            self._sessions.append(self._new_session(now))
        session = self.rng.choice(self._sessions)
        stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        base = {
            "event_id": self._event_id(),
            "conversation_id": session["conversation_id"],
            "user_id": session["user_id"],
            "timestamp": stamp,
        }
        if session["turn"] < session["turns"]:
            turn = session["turn"]
            session["turn"] += 1
            if turn % 2 == 0:
                content = QUESTIONS[session["topic"]] if turn == 0 else self.rng.choice(FOLLOW_UPS)
                role = "user"
            else:
                content, role = ANSWERS[session["topic"]], "assistant"
            event = {**base, "type": "message", "turn": turn, "role": role, "content": content}
            if session["turn"] == session["turns"] and not session["rate"]:
                self._sessions.remove(session)
            return session["conversation_id"], event
        self._sessions.remove(session)
        return session["conversation_id"], {
            **base,
            "type": "feedback",
            "rating": self.rng.choice((2, 3, 4, 4, 5, 5, 5)),
        }

    def _document_event(self, now: datetime) -> tuple[str, dict]:
        n = self.rng.randrange(50)
        doc_id = f"kb/synthetic-{n:03d}"
        event = {
            "event_id": self._event_id(),
            "doc_id": doc_id,
            "op": "upsert",
            "format": "markdown",
            "title": f"Synthetic note {n}",
            "content": f"# Synthetic note {n}\n\n{QUESTIONS[n % len(QUESTIONS)]}\n\n"
            f"{ANSWERS[n % len(ANSWERS)]}\n\nRevision {self._n_events}.",
            "source_uri": f"https://example.invalid/{doc_id}",
            "updated_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        return doc_id, event

    def _malformed(self, key: str, event: dict) -> bytes:
        self.malformed += 1
        kind = self.rng.randrange(4)
        if kind == 0:
            return json.dumps(event).encode()[:-7]  # truncated JSON
        if kind == 1:
            broken = dict(event, turn="one", rating="five", op=7)
            return json.dumps(broken).encode()  # wrong types
        if kind == 2:
            broken = {k: v for k, v in event.items() if k not in ("conversation_id", "doc_id")}
            return json.dumps(broken).encode()  # a required field missing
        return b'{"event_id": "\xff\xfe' + key.encode() + b'"}'  # not UTF-8

    def next_lines(self, n: int, now: datetime | None = None) -> list[tuple[str, bytes]]:
        """``n`` events as (key, JSON line bytes); key = conversation or document id."""
        now = now or datetime.now(UTC)
        out = []
        for _ in range(n):
            if self.stream == "conversations":
                key, event = self._conversation_event(now)
            else:
                key, event = self._document_event(now)
            if self.malformed_fraction and self.rng.random() < self.malformed_fraction:
                out.append((key, self._malformed(key, event)))
            else:
                out.append((key, json.dumps(event, ensure_ascii=False).encode("utf-8")))
        return out


# ---- sinks -------------------------------------------------------------------------------------
class _LandingSink:
    kind = "landing"

    def __init__(self, root: str, stream: str, run_id: str) -> None:
        self.folder = os.path.join(root, stream, "synthetic", run_id)
        os.makedirs(self.folder, exist_ok=True)
        self.seq = 0

    def write(self, lines: list[tuple[str, bytes]]) -> int:
        self.seq += 1
        name = f"{self.seq:06d}.jsonl"
        tmp = os.path.join(self.folder, f".{name}.tmp")  # invisible to the landing sensor
        with open(tmp, "wb") as f:
            f.write(b"".join(line + b"\n" for _, line in lines))
        os.replace(tmp, os.path.join(self.folder, name))
        return 1

    def close(self) -> None:
        pass


class _S3Sink:
    kind = "s3"

    def __init__(self, url: str, client: Any, run_id: str, compress: bool) -> None:
        bucket, _, prefix = url[len("s3://") :].partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client, self.run_id, self.compress = client, run_id, compress
        self.seq = 0

    def write(self, lines: list[tuple[str, bytes]]) -> int:
        self.seq += 1
        now = datetime.now(UTC)
        body = b"".join(line + b"\n" for _, line in lines)
        name = f"synthetic-{self.run_id}-{self.seq:06d}.jsonl"
        if self.compress:
            body, name = gzip.compress(body, mtime=0), name + ".gz"
        key = "/".join(p for p in (self.prefix, now.strftime("%Y/%m/%d/%H"), name) if p)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        return 1

    def close(self) -> None:
        pass


class _KafkaSink:
    kind = "kafka"

    def __init__(self, url: str, config: dict | None) -> None:
        from confluent_kafka import Producer

        parsed = urlparse(url)
        self.topic = parsed.path.strip("/")
        if not parsed.netloc or not self.topic:
            raise ValueError(f"Expected kafka://host:port/topic, got {url!r}")
        self.errors: list[str] = []
        self.producer = Producer(
            {
                "bootstrap.servers": parsed.netloc,
                "linger.ms": 20,
                "compression.type": "lz4",
                "enable.idempotence": True,
                **(config or {}),
            }
        )

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self.errors.append(str(err))

    def write(self, lines: list[tuple[str, bytes]]) -> int:
        for key, value in lines:
            while True:
                try:
                    self.producer.produce(
                        self.topic, key=key.encode(), value=value, on_delivery=self._delivered
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self.producer.poll(0.05)
        self.producer.poll(0)
        return len(lines)

    def close(self) -> None:
        left = self.producer.flush(30)
        if left or self.errors:
            raise RuntimeError(
                f"{left} messages undelivered, {len(self.errors)} delivery errors to "
                f"{self.topic}: {self.errors[:3]}"
            )


def produce_synthetic(
    target: str,
    rate: float,
    duration: float,
    *,
    stream: str = "conversations",
    endpoint_url: str | None = None,
    s3_client_factory: Callable[[], Any] | None = None,
    kafka_config: dict | None = None,
    seed: int | None = None,
    malformed_fraction: float = 0.0,
    batch_seconds: float = 1.0,
    compress: bool = False,
    progress: Callable[[int, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ProduceReport:
    """Emit ``round(rate * duration)`` events over ``duration`` seconds into ``target``.

    ``target``: a landing folder (events go to ``<folder>/<stream>/synthetic/<run>/``),
    ``s3://bucket/prefix`` (objects under ``prefix/YYYY/MM/DD/HH/``, ``endpoint_url`` for
    MinIO/moto/LocalStack), or ``kafka://host:port/topic``. Files and objects are written one per
    ``batch_seconds``; Kafka messages are produced as they fall due (every 50 ms).
    ``progress(sent, total)`` is called after each tick.
    """
    if rate <= 0 or duration < 0:
        raise ValueError("rate must be > 0 and duration >= 0")
    chat = SyntheticChat(stream, seed=seed, malformed_fraction=malformed_fraction)
    if target.startswith("kafka://"):
        sink: Any = _KafkaSink(target, kafka_config)
        interval = 0.05
    elif target.startswith("s3://"):
        if s3_client_factory is None:
            import boto3

            def s3_client_factory():
                return boto3.client("s3", endpoint_url=endpoint_url or None)

        sink = _S3Sink(target, s3_client_factory(), chat.run_id, compress)
        interval = batch_seconds
    else:
        path = target[len("file://") :] if target.startswith("file://") else target
        sink = _LandingSink(path, stream, chat.run_id)
        interval = batch_seconds

    total = int(round(rate * duration))
    started = clock()
    sent = units = 0
    tick = 0
    try:
        while sent < total:
            tick += 1
            due_at = min(tick * interval, duration)
            wait = started + due_at - clock()
            if wait > 0:
                sleep(wait)
            due = total if due_at >= duration else min(total, int(rate * due_at))
            if due > sent:
                units += sink.write(chat.next_lines(due - sent))
                sent = due
            if progress is not None:
                progress(sent, total)
    finally:
        sink.close()
    return ProduceReport(
        target=target,
        kind=sink.kind,
        events=sent,
        malformed=chat.malformed,
        units=units,
        conversations=chat.conversations,
        seconds=clock() - started,
    )


__all__ = ["ProduceReport", "SyntheticChat", "produce_synthetic"]
