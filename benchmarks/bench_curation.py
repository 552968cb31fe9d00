"""Curation of support chat with ground truth: exact and near duplicates, junk, PII, speed, RSS.

    .venv/bin/python benchmarks/bench_curation.py [--sizes 100000,250000] [--seed 7]
        [--rss 1000000] [--hashers 20000]

Generates support-chat messages of 20-400 words (each message its own conversation, so every
message is one document) in the issue's mix: 10% exact copies of an earlier message, 10% near
copies (70% with 3-10% of the words substituted, inserted or deleted, 30% changed in
whitespace, case or punctuation only), 5% junk in the eight families of
``bench_quality.py``, the rest distinct messages built from real prose (CPython's reference
topics) and chat templates. Then, per size:

- the whole clean pipeline (``clean_conversations``, chunks of whole conversations through one
  ``DedupIndex`` as the asset streams a day), msgs/s per stage;
- near-dup recall / precision overall, per edit level and per length band, exact-copy recall;
- junk recall per family and normal messages removed;
- the similarity distribution of the near copies (exact Jaccard of the configured shingles);

and once: the peak RSS of a fresh process cleaning ``--rss`` messages, the MinHash hashers side
by side (this project's vectorised signatures, rensa, datasketch), and the PII corpus figures
per type (``llm_data_platform_tests/test_pii_corpus.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import bench_quality  # noqa: E402  (the junk families and chat templates)

LENGTH_BANDS = ((20, 49), (50, 99), (100, 199), (200, 400))
EDIT_LEVELS = ((0.03, 0.05), (0.05, 0.075), (0.075, 0.10))
OPENERS = [
    "Hi,",
    "Hello team,",
    "Hey support,",
    "Good morning,",
    "Hi there, quick question.",
    "Hello, I hope you can help.",
    "",
    "",
]
CLOSERS = ["Thanks!", "Thanks in advance.", "Any idea?", "Cheers", "", "", "Please advise."]


@dataclass
class Message:
    text: str
    kind: str  # normal | exact | near | format | junk:<family>
    source: int | None = None  # index of the original, for copies
    edit: float = 0.0  # share of words edited (near copies)
    band: int = 0  # length band of the original


def _corpus_words() -> list[str]:
    """Real prose as one word stream: CPython's reference topics."""
    from llm_data_platform.demo import load_topics

    return [w for doc in load_topics() for w in doc.content.split() if not w.startswith("#")]


class _Markov:
    """A word-bigram chain over real prose: new text with the word pairs of real text (so
    unrelated messages share common bigrams as real traffic does), sampled in numpy."""

    def __init__(self, words: list[str]) -> None:
        self.vocab, ids = np.unique(np.array(words), return_inverse=True)
        order = np.argsort(ids[:-1], kind="stable")
        self.succ = ids[1:][order]
        self.deg = np.bincount(ids[:-1], minlength=len(self.vocab))
        self.ptr = np.concatenate([[0], np.cumsum(self.deg)[:-1]])
        self.starts = np.flatnonzero(self.deg > 0)

    def texts(self, lengths: np.ndarray, rng: np.random.Generator) -> list[str]:
        n, longest = len(lengths), int(lengths.max(initial=0))
        out = np.empty((n, longest), np.int64)
        state = rng.choice(self.starts, n)
        for step in range(longest):
            out[:, step] = state
            # a dead end, or now and then a jump: no loop of the chain (a repeated code
            # example) makes two messages alike by accident
            dead = (self.deg[state] == 0) | (rng.random(n) < 0.05)
            state[dead] = rng.choice(self.starts, int(dead.sum()))
            pick = (rng.random(n) * self.deg[state]).astype(np.int64)
            state = self.succ[self.ptr[state] + pick]
        vocab = self.vocab.tolist()
        return [
            " ".join([vocab[j] for j in row[:length]])
            for row, length in zip(out.tolist(), lengths.tolist(), strict=True)
        ]


def _vocabulary(words: list[str]) -> list[str]:
    return sorted({w for w in words if w.isalpha() and 3 <= len(w) <= 12} | set(bench_quality.WORDS))


def _normal(rng: random.Random, body: str, target: int) -> str:
    """A support message of ``target`` words: an opener, a chat template, prose, a closer."""
    parts = [rng.choice(OPENERS)]
    if target >= 60 and rng.random() < 0.5:  # a template would be most of a short message
        parts.append(bench_quality._fill(rng, rng.choice(bench_quality.QUESTIONS)))
    parts += [body, rng.choice(CLOSERS)]
    words = " ".join(p for p in parts if p).split(" ")
    return " ".join(words[:target])


def _edit_words(rng: random.Random, text: str, share: float, vocab: list[str]) -> str:
    """Substitute, insert or delete ``share`` of the words (at least one), at random places."""
    words = text.split(" ")
    n_edits = max(1, round(share * len(words)))
    for _ in range(n_edits):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.5:
            words[i] = rng.choice(vocab)
        elif op < 0.75:
            words.insert(i, rng.choice(vocab))
        elif len(words) > 2:
            del words[i]
    return " ".join(words)


def _format_only(rng: random.Random, text: str) -> str:
    """Whitespace, case or punctuation changed, words kept."""
    r = rng.random()
    if r < 0.3:
        return text.lower() if rng.random() < 0.5 else text.upper()
    if r < 0.6:
        return re.sub(r" ", lambda _: rng.choice([" ", "  ", "\n", " "]), text)
    if r < 0.8:
        return text.replace(",", "").replace(".", "!").rstrip("!") + "!!"
    return "  " + text.replace(". ", ".\n\n") + "\n"


def generate(n: int, seed: int = 7) -> list[Message]:
    """``n`` messages in the issue's mix; copies refer to an earlier normal message."""
    rng = random.Random(seed)
    words = _corpus_words()
    chain, vocab = _Markov(words), _vocabulary(words)
    bands = [rng.randrange(len(LENGTH_BANDS)) for _ in range(n)]
    lengths = np.array([rng.randint(*LENGTH_BANDS[b]) for b in bands])
    bodies = chain.texts(lengths, np.random.default_rng(seed))
    junk = list(bench_quality.JUNK_FAMILIES)
    out: list[Message] = []
    originals: list[int] = []
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            family = junk[i % len(junk)]
            out.append(Message(bench_quality.JUNK_FAMILIES[family](rng), f"junk:{family}"))
        elif r < 0.25 and originals:
            src = rng.choice(originals)
            base = out[src]
            if r < 0.15:
                out.append(Message(base.text, "exact", src, band=base.band))
            elif rng.random() < 0.7:
                lo, hi = EDIT_LEVELS[rng.randrange(len(EDIT_LEVELS))]
                share = rng.uniform(lo, hi)
                text = _edit_words(rng, base.text, share, vocab)
                out.append(Message(text, "near", src, share, base.band))
            else:
                out.append(Message(_format_only(rng, base.text), "format", src, band=base.band))
        else:
            text = _normal(rng, bodies[i], int(lengths[i]))
            out.append(Message(text, "normal", band=bands[i]))
            originals.append(i)
    return out


def raw_table(messages: list[Message], start: datetime | None = None) -> pa.Table:
    """Raw conversation events, one message per conversation, in time order."""
    from llm_data_platform import schemas

    start = start or datetime(2026, 1, 5, tzinfo=UTC)
    n = len(messages)
    times = [start + timedelta(milliseconds=50 * i) for i in range(n)]
    cols = {
        "event_id": [f"e{i:08d}" for i in range(n)],
        "event_type": ["message"] * n,
        "conversation_id": [f"c{i:08d}" for i in range(n)],
        "turn_index": [0] * n,
        "role": ["user"] * n,
        "content": [m.text for m in messages],
        "rating": [None] * n,
        "user_id": [f"u{i % 997}" for i in range(n)],
        "event_time": times,
        "source_file": ["bench.jsonl"] * n,
        "source_line": list(range(1, n + 1)),
        "arrived_at": times,
    }
    return pa.table({f.name: cols.get(f.name) for f in schemas.RAW_CONVERSATIONS}).cast(
        schemas.RAW_CONVERSATIONS
    )
