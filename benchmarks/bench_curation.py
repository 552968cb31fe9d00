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

and once: the peak RSS of a fresh process running the real ``conversations_clean`` step
(materialized in process, its checks apart) over one day of ``--rss`` messages in a temporary
lake, the MinHash hashers side by side (this project's vectorised signatures, rensa,
datasketch), and the PII corpus figures per type (``llm_data_platform_tests/test_pii_corpus.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
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
        """Texts of the given word counts, 10k at a time (the walk is n x longest ints)."""
        out: list[str] = []
        for start in range(0, len(lengths), 10_000):
            out += self._walk(lengths[start : start + 10_000], rng)
        return out

    def _walk(self, lengths: np.ndarray, rng: np.random.Generator) -> list[str]:
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
    return sorted(
        {w for w in words if w.isalpha() and 3 <= len(w) <= 12} | set(bench_quality.WORDS)
    )


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


# ------------------------------------------------------------------------------ the clean run

CHUNK = 100_000  # raw rows per chunk, as lib/cleaning reads a day


def clean_all(raw: pa.Table, chunk: int = CHUNK, writer=None) -> tuple[pa.Table, dict, dict]:
    """The clean pipeline over ``raw`` a chunk at a time through one DedupState, as the
    asset runs a day: (dropped rows, wall seconds per step, CPU seconds per step)."""
    from llm_data_platform.transforms.conversation_cleaning import (
        CleaningConfig,
        clean_conversations,
    )
    from llm_data_platform.transforms.cross_dedup import DedupConfig, DedupState

    config = CleaningConfig(dedup_state=DedupState(DedupConfig()))
    seconds: Counter = Counter()
    cpu: Counter = Counter()
    dropped = []
    for start in range(0, raw.num_rows, chunk):
        result = clean_conversations(raw.slice(start, chunk), config)
        seconds.update(result.seconds)
        cpu.update(result.cpu_seconds)
        dropped.append(result.dropped)
        if writer is not None:
            writer.write_table(result.clean)
    return pa.concat_tables(dropped), dict(seconds), dict(cpu)


def evaluate(messages: list[Message], dropped: pa.Table) -> dict:
    """Recall and precision against the generator's truth (see ``print_quality``)."""
    reason = dict(
        zip(
            (int(e[1:]) for e in dropped["event_id"].to_pylist()),
            dropped["reason"].to_pylist(),
            strict=True,
        )
    )
    dedup = {"duplicate_content_elsewhere", "near_duplicate", "duplicate_content_history"}
    dedup |= {"near_duplicate_history", "near_duplicate_conversation"}
    cells: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    false_pos = true_pos = 0
    for i, m in enumerate(messages):
        r = reason.get(i)
        if m.kind.startswith("junk:"):
            cells[m.kind][0] += 1
            cells[m.kind][1] += r is not None and r.startswith("low_quality")
            continue
        quality = r is not None and r.startswith("low_quality")
        if m.kind == "normal":
            cells["normal"][0] += 1
            cells["normal"][1] += r is not None
            false_pos += r in dedup
            continue
        source = reason.get(m.source)
        if quality or (source is not None and source.startswith("low_quality")):
            continue  # quality took it or its original first: nothing to dedup against
        hit = r in dedup
        true_pos += hit
        level = "format" if m.kind == "format" else m.kind
        if m.kind == "near":
            k = next(j for j, (lo, hi) in enumerate(EDIT_LEVELS) if m.edit < hi or j == 2)
            level = f"near {100 * EDIT_LEVELS[k][0]:g}-{100 * EDIT_LEVELS[k][1]:g}%"
        lo, hi = LENGTH_BANDS[m.band]
        for key in (level, f"length {lo}-{hi}" if m.kind != "exact" else "exact"):
            cells[key][0] += 1
            cells[key][1] += hit
        if m.kind != "exact":
            cells["near+format"][0] += 1
            cells["near+format"][1] += hit
    cells["precision"] = [true_pos + false_pos, true_pos]
    return cells


def print_quality(n: int, cells: dict, seconds: dict, cpu: dict, total: float) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n== {n:,} messages: clean pipeline {total:.1f} s = {n / total:,.0f} msgs/s")
    print(f"  (load average after the run {load}, {os.cpu_count()} cores: a shared machine")
    print("   slows every wall figure by about load / cores; CPU seconds are all threads)")
    print(f"  {'stage':<30}{'wall s':>8}{'msgs/s':>10}{'CPU s':>8}{'msgs/CPU-s':>12}")
    for step, s in seconds.items():
        c = cpu[step]
        print(f"  {step:<30}{s:8.2f}{n / max(s, 1e-9):>10,.0f}{c:8.2f}{n / max(c, 1e-9):>12,.0f}")
    print(f"  {'near-dup (copies found by dedup)':<44}{'found':>8}{'of':>8}{'rate':>8}")
    levels = [f"near {100 * lo:g}-{100 * hi:g}%" for lo, hi in EDIT_LEVELS]
    order = levels + ["format", "near+format", "exact"]
    order += [f"length {lo}-{hi}" for lo, hi in LENGTH_BANDS]
    for key in order:
        total_k, hit = cells.get(key, [0, 0])
        print(f"  recall {key:<37}{hit:>8}{total_k:>8}{hit / max(total_k, 1):>8.3f}")
    flagged, good = cells["precision"]
    print(
        f"  {'precision (copies among dedup drops)':<44}{good:>8}{flagged:>8}"
        f"{good / max(flagged, 1):>8.3f}"
    )
    for key in sorted(k for k in cells if k.startswith("junk:")):
        total_k, hit = cells[key]
        print(f"  junk recall {key[5:]:<32}{hit:>8}{total_k:>8}{hit / max(total_k, 1):>8.3f}")
    total_k, hit = cells["normal"]
    print(f"  normal removed (any reason){'':<17}{hit:>8}{total_k:>8}{100 * hit / total_k:>7.2f}%")


def similarity_table(messages: list[Message], sample: int = 20_000) -> None:
    """Exact Jaccard of near copies with their original, per edit level and shingle size,
    and of unrelated pairs: what the threshold was chosen on."""
    from llm_data_platform.transforms.near_dedup import exact_jaccard
    from llm_data_platform.transforms.shingles import shingle_hashes

    part = messages[:sample]
    rng = random.Random(1)
    normals = [i for i, m in enumerate(part) if m.kind == "normal"]
    print(f"\n== similarity of the first {len(part):,} messages (exact Jaccard, word k-grams)")
    for k in (2, 3, 5):
        off, h = shingle_hashes([m.text for m in part], k)
        sets = [np.unique(h[off[i] : off[i + 1]]) for i in range(len(part))]
        rows = defaultdict(list)
        for i, m in enumerate(part):
            if m.kind == "near":
                j = next(j for j, (lo, hi) in enumerate(EDIT_LEVELS) if m.edit < hi or j == 2)
                rows[f"{100 * EDIT_LEVELS[j][0]:g}-{100 * EDIT_LEVELS[j][1]:g}%"].append(
                    exact_jaccard(sets[i], sets[m.source])
                )
            elif m.kind == "format":
                rows["format"].append(exact_jaccard(sets[i], sets[m.source]))
        unrelated = [
            exact_jaccard(*(sets[i] for i in rng.sample(normals, 2))) for _ in range(20_000)
        ]
        line = "  ".join(
            f"{key} med {np.median(v):.2f} p1 {np.quantile(v, 0.01):.2f}" for key, v in rows.items()
        )
        print(f"  k={k}: {line}  unrelated max {max(unrelated):.2f} mean {np.mean(unrelated):.3f}")


# ------------------------------------------------------------------------------ hashers


def hashers(messages: list[Message], n: int) -> None:
    """Text -> 128 MinHash values, side by side: this project's vectorised signatures (one
    permutation and datasketch's affine scheme), rensa (Rust), datasketch (Python)."""
    from llm_data_platform.transforms.near_dedup import minhash_signatures, oph_signatures
    from llm_data_platform.transforms.shingles import normalize_for_matching, shingle_hashes

    texts = pa.array([m.text for m in messages[:n]])
    print(f"\n== MinHash hashers, {n:,} messages, word 2-grams, 128 values (best of 3)")

    def timed(label, fn):
        best = min(_seconds(fn) for _ in range(3))
        print(f"  {label:<44}{best:7.2f} s {n / best:>12,.0f} msgs/s")

    timed("shingles (vectorised, shared by the next two)", lambda: shingle_hashes(texts, 2))
    off, h = shingle_hashes(texts, 2)
    timed("  + one-permutation signatures (oph)", lambda: oph_signatures(off, h, 128))
    timed(
        "  + affine32 signatures (default, = datasketch)", lambda: minhash_signatures(off, h, 128)
    )

    def python_grams() -> list[list[str]]:
        words = [t.split(" ") for t in normalize_for_matching(texts).to_pylist()]
        return [[f"{a} {b}" for a, b in zip(w, w[1:], strict=False)] or w for w in words]

    grams = python_grams()
    try:
        from rensa import RMinHash

        def rensa_all(grams=None):
            for g in grams if grams is not None else python_grams():
                m = RMinHash(num_perm=128, seed=1)
                m.update(g)
                m.digest()

        timed("rensa RMinHash, shingle lists given", lambda: rensa_all(grams))
        timed("rensa RMinHash incl. Python shingle lists", rensa_all)
    except ImportError:
        print("  rensa: not installed (pip install rensa)")
    from datasketch import MinHash

    k = max(1, n // 10)
    best = min(
        _seconds(lambda: MinHash.bulk([[s.encode() for s in g] for g in grams[:k]], num_perm=128))
        for _ in range(1)
    )
    print(
        f"  {'datasketch MinHash.bulk (1/10 of the texts)':<44}{best:7.2f} s"
        f" {k / best:>12,.0f} msgs/s"
    )


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# ------------------------------------------------------------------------------ RSS, PII


RSS_DAY, WARM_DAY = "2026-01-05", "2026-01-20"  # the measured day, a later warm-up day


def _platform_env(root: str) -> dict[str, str]:
    """The settings of a code location whose lake lives under ``root`` (offline)."""
    data = os.path.join(root, "data")
    return {
        "LDP_HOME": root,
        "LDP_DATA_DIR": data,
        "LDP_LAKE_ROOT": os.path.join(data, "lake"),
        "LDP_LANDING_DIR": os.path.join(data, "landing"),
        "LDP_CHROMA_PATH": os.path.join(data, "chroma"),
        "DAGSTER_HOME": os.path.join(root, "dagster_home"),
        "HF_HUB_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "False",
    }


def _materialize_clean(settings, resources, instance, key: str) -> None:
    """The conversations clean step for day ``key``, in this process (its checks apart, as
    a run's separate steps)."""
    import dagster as dg

    from llm_data_platform.definitions import graph

    selection = dg.AssetSelection.assets("conversations_clean", "conversations_clean_dropped")
    result = dg.materialize(
        graph(settings),
        selection=selection.without_checks(),
        resources=resources,
        instance=instance,
        partition_key=key,
    )
    assert result.success


def rss_child(root: str) -> None:
    """A fresh process: the real clean step (``conversations_clean`` materialized in process:
    DuckDB's sorted read, chunks of whole conversations through one day's dedup state, the
    dropped rows and the index written as they come, the lake commit) over the day the parent
    wrote under ``root``, after a small warm-up day; prints the peak RSS."""
    import dagster as dg

    from llm_data_platform.definitions import build_resources  # the run's memory pool
    from llm_data_platform.settings import load_settings

    settings = load_settings(_platform_env(root))
    resources = build_resources(settings)
    instance = dg.DagsterInstance.ephemeral()
    _materialize_clean(settings, resources, instance, WARM_DAY)  # imports, models: the floor
    floor = _rss_now_mb()
    started = time.perf_counter()
    _materialize_clean(settings, resources, instance, RSS_DAY)
    seconds = time.perf_counter() - started
    peak = _rss_now_mb("VmHWM")
    lake = resources["lake"]
    rows = lake.count_rows("raw", "raw_conversations", [RSS_DAY])
    dropped = lake.count_rows("clean", "conversations_clean_dropped", [RSS_DAY])
    got = {"rows": rows, "seconds": seconds, "peak_mb": peak, "floor_mb": floor}
    print(json.dumps({**got, "dropped": dropped}))


def _rss_now_mb(field: str = "VmRSS") -> float:
    """This process's resident set (``VmHWM``: its peak), from its own memory map: not
    ``getrusage``'s ``ru_maxrss``, which a child started with ``subprocess`` inherits from
    the parent's peak before ``exec`` (here: the parent that generated the messages, ~5 GB)."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def rss(n: int, seed: int) -> None:
    import tempfile

    from llm_data_platform.resources.lake import LakeResource

    with tempfile.TemporaryDirectory(prefix="bench-curation-") as tmp:
        lake = LakeResource(root=_platform_env(tmp)["LDP_LAKE_ROOT"])
        messages = generate(n, seed)
        lake.write_partition("raw", "raw_conversations", RSS_DAY, raw_table(messages))
        del messages
        warm = raw_table(generate(200, seed + 1), datetime(2026, 1, 20, tzinfo=UTC))
        lake.write_partition("raw", "raw_conversations", WARM_DAY, warm)
        # a fresh process with the code location's own memory pool (definitions.py)
        done = subprocess.run(
            [sys.executable, __file__, "--rss-child", tmp],
            capture_output=True,
            text=True,
            check=True,
        )
        got = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"\n== peak RSS, fresh process running the conversations clean step over one day of "
        f"{got['rows']:,} messages (chunks of {CHUNK:,}): {got['peak_mb']:,.0f} MB "
        f"({got['floor_mb']:,.0f} MB of it after the imports and a warm-up day; "
        f"{got['seconds']:.0f} s, {got['rows'] / got['seconds']:,.0f} msgs/s, "
        f"{got['dropped']:,} rows dropped; load average {os.getloadavg()[0]:.1f})"
    )


def pii() -> None:
    """The PII corpus figures per type (the test's own table)."""
    from llm_data_platform_tests.test_pii_corpus import _table

    print("\n== PII corpus (llm_data_platform_tests/data/pii_corpus.jsonl)")
    for split in ("dev", "test"):
        _table(split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,250000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rss", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--hashers", type=int, default=20_000, help="0: skip")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    for n in [int(s) for s in args.sizes.split(",") if s and int(s) > 0]:
        messages = generate(n, args.seed)
        raw = raw_table(messages)
        started = time.perf_counter()
        dropped, seconds, cpu = clean_all(raw)
        total = time.perf_counter() - started
        print_quality(n, evaluate(messages, dropped), seconds, cpu, total)
    if args.hashers:
        messages = generate(args.hashers, args.seed)
        similarity_table(messages)
        hashers(messages, args.hashers)
    if args.rss:
        rss(args.rss, args.seed)
    pii()


if __name__ == "__main__":
    main()
