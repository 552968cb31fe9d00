"""DataTrove 0.10.1 with its defaults beside this project's curation, on the same messages.

    .venv/bin/pip install "datatrove==0.10.1" spacy "xxhash<4"   # the peer, benchmark only
    .venv/bin/python benchmarks/bench_datatrove_peer.py [--messages 100000] [--seed 7]
        [--verbose]

Generates the support-chat messages of ``bench_curation.py`` (its generator, seed and mix:
exact copies, near copies with 3-10% of the words edited or with format-only changes, junk in
eight families, the rest distinct messages) and, in one process, one run after the other:

- this project: the clean pipeline through ``bench_curation.clean_all`` (as bench_curation
  measures it);
- DataTrove: each message one ``Document(text, id)``, fed in-process to
  ``LocalPipelineExecutor`` (``workers=1``, temporary folders) in two parts: (a) MinHash
  dedup with the default ``MinhashConfig`` (5-word shingles, 14 buckets x 8 hashes), its four
  stages (signatures, buckets, cluster, filter; the buckets stage needs one task per bucket,
  14, run one after the other, every other stage one task); (b) the default quality filters
  a user would run on text: ``GopherRepetitionFilter``, ``GopherQualityFilter``,
  ``C4QualityFilter``, ``FineWebQualityFilter`` (defaults, that order; the first that drops a
  message takes it).

Both are scored by ``bench_curation.evaluate`` against the generator's truth, with its metric
definitions: near-dup recall (near + format-only copies found by dedup) overall, per edit level
and per length band, exact-copy recall, precision (copies among dedup drops), junk recall
(junk dropped by a quality filter), normal messages removed by any filter. DataTrove's
near-dup figures come from the dedup part alone over all messages (the MinHash stages saw
every message); its junk recall from the quality part; its removed normals from both. Wall
and CPU seconds (process plus reaped children) per part, msgs/s and msgs/CPU-s; this
project's total also holds the steps DataTrove is not asked to do (replayed events,
normalising, PII redaction, language tagging), its dedup and quality rows only those steps.
DataTrove's documents come from memory (no reader); its signatures, buckets and removal lists
go to a temporary folder on local disk, as its stages hand them on.

DataTrove's English word tokenizer (every step above splits words with it) is spaCy's blank
English pipeline with its sentencizer (no model download), hence spacy and xxhash (the
MinHash shingle hash) beside datatrove: the part of its ``processing`` extra these steps
import; the extra itself pins trafilatura<1.12, which this project's trafilatura>=2 excludes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import bench_curation as bc  # noqa: E402  (the generator and the evaluation)

INSTALL = '.venv/bin/pip install "datatrove==0.10.1" spacy "xxhash<4"'
DEDUP_REASON = "near_duplicate"  # one of bench_curation.evaluate's dedup reasons
QUALITY_FILTERS = (
    "GopherRepetitionFilter",
    "GopherQualityFilter",
    "C4QualityFilter",
    "FineWebQualityFilter",
)

Step = Callable[..., Iterator[Any]]


def _require_datatrove() -> None:
    try:
        import datatrove  # noqa: F401
        import spacy  # noqa: F401
        import xxhash  # noqa: F401
    except ImportError as missing:
        sys.exit(
            f"{missing}: the peer is not installed; install it for the benchmark with\n  {INSTALL}"
        )


# ------------------------------------------------------------------------------ timing


class Clock:
    """Wall and CPU seconds (this process's threads plus its reaped children) since start."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = self._cpu()

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, self._cpu() - self.cpu


# ------------------------------------------------------------------------------ DataTrove


def _documents(texts: list[str]) -> Step:
    """A pipeline's first step: each message one Document, id = its index."""
    from datatrove.data import Document

    def step(data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        for i, text in enumerate(texts):
            yield Document(text=text, id=str(i))

    return step


def _mark(seen: list[int]) -> Step:
    """A pass-through step noting the ids it forwards (a function: the executor's deepcopy of
    the pipeline keeps it, and so the list, as it is)."""

    def step(data: Iterator[Any], rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        for doc in data:
            seen.append(int(doc.id))
            yield doc

    return step


def _run(pipeline: list[Any], logs: str, tasks: int = 1) -> Any:
    from datatrove.executor import LocalPipelineExecutor

    executor = LocalPipelineExecutor(
        pipeline=pipeline, tasks=tasks, workers=1, logging_dir=logs, skip_completed=False
    )
    return executor.run()


def datatrove_dedup(texts: list[str], tmp: str) -> tuple[set[int], dict[str, tuple[float, float]]]:
    """MinHash dedup, default config, the four stages: (ids removed, (wall, CPU) per stage)."""
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    config = MinhashConfig()
    sigs, buckets, remove = (os.path.join(tmp, d) for d in ("sigs", "buckets", "remove"))
    kept: list[int] = []
    stages: list[tuple[str, list[Any], int]] = [
        ("signatures", [_documents(texts), MinhashDedupSignature(sigs, config=config)], 1),
        (
            "buckets",
            [MinhashDedupBuckets(sigs, buckets, config=config)],
            config.num_buckets,  # it asserts tasks % num_buckets == 0
        ),
        ("cluster", [MinhashDedupCluster(buckets, remove, config=config)], 1),
        ("filter", [_documents(texts), MinhashDedupFilter(remove), _mark(kept)], 1),
    ]
    seconds: dict[str, tuple[float, float]] = {}
    for name, pipeline, tasks in stages:
        clock = Clock()
        _run(pipeline, os.path.join(tmp, "logs", f"minhash_{name}"), tasks)
        seconds[f"minhash {name}"] = clock.stop()
    return set(range(len(texts))) - set(kept), seconds


def datatrove_quality(
    texts: list[str], tmp: str
) -> tuple[dict[int, str], Counter, tuple[float, float]]:
    """The four default quality filters in a chain: (id -> filter that dropped it, DataTrove's
    own drop-reason counts, (wall, CPU))."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter()]
    filters.append(FineWebQualityFilter())
    passed: list[list[int]] = [[] for _ in range(len(filters) + 1)]
    pipeline: list[Any] = [_documents(texts), _mark(passed[0])]
    for f, seen in zip(filters, passed[1:], strict=True):
        pipeline += [f, _mark(seen)]
    clock = Clock()
    stats = _run(pipeline, os.path.join(tmp, "logs", "quality"))
    took = clock.stop()
    dropped: dict[int, str] = {}
    for name, before, after in zip(QUALITY_FILTERS, passed, passed[1:], strict=False):
        for i in set(before) - set(after):
            dropped[i] = name
    reasons: Counter = Counter()
    for name, step in zip(QUALITY_FILTERS, stats.stats, strict=True):  # the filters' stats
        for key, value in step.stats.items():
            if key.startswith("dropped_"):
                reasons[f"{name}:{key[8:]}"] += value.total
    return dropped, reasons, took


def dropped_table(reasons: dict[int, str]) -> pa.Table:
    """The shape ``bench_curation.evaluate`` reads: event_id ``e%08d`` and a reason."""
    ids = sorted(reasons)
    return pa.table({"event_id": [f"e{i:08d}" for i in ids], "reason": [reasons[i] for i in ids]})


# ------------------------------------------------------------------------------ report


def _swapped(messages: list[bc.Message], reason: dict[int, str]) -> int:
    """Originals dropped as duplicates while one of their copies was kept: a dedup that keeps
    one message per cluster but not the first (counted against precision by evaluate)."""
    copies: dict[int, list[int]] = {}
    for i, m in enumerate(messages):
        if m.source is not None:
            copies.setdefault(m.source, []).append(i)
    dedup = {"duplicate_content_elsewhere", "near_duplicate", "duplicate_content_history"}
    dedup |= {"near_duplicate_history", "near_duplicate_conversation"}
    return sum(
        1
        for i, m in enumerate(messages)
        if m.kind == "normal"
        and reason.get(i) in dedup
        and any(j not in reason for j in copies.get(i, []))
    )


def _cell(cells: dict, key: str, pct: bool = False) -> str:
    total, hit = cells.get(key, [0, 0])
    if pct:
        return f"{100 * hit / max(total, 1):.2f}% ({hit:,}/{total:,})"
    return f"{hit / max(total, 1):.3f} ({hit:,}/{total:,})"


def _junk(cells: dict) -> list[int]:
    keys = [k for k in cells if k.startswith("junk:")]
    return [sum(cells[k][0] for k in keys), sum(cells[k][1] for k in keys)]


def report(
    n: int,
    messages: list[bc.Message],
    ours: dict,
    peer: dict,
    load_start: tuple[float, ...],
) -> None:
    load_end = os.getloadavg()
    fmt = ", ".join
    print(f"\n== {n:,} messages (bench_curation's generator), one process, one after the other")
    print(
        f"  load average at start {fmt(f'{x:.2f}' for x in load_start)}, at end "
        f"{fmt(f'{x:.2f}' for x in load_end)}; {os.cpu_count()} cores, shared machine"
    )
    print("  DataTrove's English word tokenizer: spaCy blank 'en' + sentencizer (its default)")
    rows: list[tuple[str, str, str]] = []

    def both(label: str, fn: Callable[[dict], str]) -> None:
        rows.append((label, fn(ours), fn(peer)))

    levels = [f"near {100 * lo:g}-{100 * hi:g}%" for lo, hi in bc.EDIT_LEVELS]
    both("near-dup recall (near+format)", lambda r: _cell(r["near"], "near+format"))
    for key in levels + ["format"]:
        both(f"  recall {key}", lambda r, k=key: _cell(r["near"], k))
    for lo, hi in bc.LENGTH_BANDS:
        both(f"  recall length {lo}-{hi}", lambda r, k=f"length {lo}-{hi}": _cell(r["near"], k))
    both("exact-copy recall", lambda r: _cell(r["near"], "exact"))
    both("near-dup precision", lambda r: _cell(r["near"], "precision"))
    both("  originals dropped, a copy kept", lambda r: f"{r['swapped']:,}")
    both("junk recall", lambda r: _cell({"j": _junk(r["all"])}, "j"))
    for key in sorted(k for k in ours["all"] if k.startswith("junk:")):
        both(f"  junk {key[5:]}", lambda r, k=key: _cell(r["all"], k))
    both("normal removed (any filter)", lambda r: _cell(r["all"], "normal", pct=True))
    both("  by a quality filter", lambda r: _cell(r["normal_quality"], "normal", pct=True))
    both("  by dedup", lambda r: _cell(r["normal_dedup"], "normal", pct=True))
    for name in QUALITY_FILTERS:
        both(
            f"    first dropped by {name.removesuffix('Filter')}",
            lambda r, k=name: r["by_filter"].get(k, "-"),
        )
    for label, key in (("dedup", "dedup_s"), ("quality", "quality_s"), ("total", "total_s")):
        both(f"{label} wall s / CPU s", lambda r, k=key: f"{r[k][0]:.1f} / {r[k][1]:.1f}")
        both(f"  {label} msgs/s", lambda r, k=key: f"{n / max(r[k][0], 1e-9):,.0f}")
        both(f"  {label} msgs/CPU-s", lambda r, k=key: f"{n / max(r[k][1], 1e-9):,.0f}")
    width = max(len(c) for r in rows for c in r[1:]) + 2
    left = max(len(r[0]) for r in rows) + 2
    print(f"  {'':<{left}}{'this project':>{width}}{'DataTrove 0.10.1':>{width}}")
    for label, a, b in rows:
        print(f"  {label:<{left}}{a:>{width}}{b:>{width}}")
    print(
        "  DataTrove seconds per step: "
        + fmt(f"{k} {w:.1f}/{c:.1f}" for k, (w, c) in peer["steps"].items())
    )
    print(
        "  this project seconds per step: "
        + fmt(f"{k} {w:.1f}/{c:.1f}" for k, (w, c) in ours["steps"].items())
    )
    top = peer["reasons"].most_common(8)
    print(
        "  DataTrove's drop reasons (its own stats, all messages): "
        + fmt(f"{k} {v:,}" for k, v in top)
    )

    def line(r: dict) -> str:
        near, precision = r["near"]["near+format"], r["near"]["precision"]
        junk, normal = _junk(r["all"]), r["all"]["normal"]
        return (
            f"near_recall={near[1] / max(near[0], 1):.3f} "
            f"near_precision={precision[1] / max(precision[0], 1):.3f} "
            f"junk_recall={junk[1] / max(junk[0], 1):.3f} "
            f"normal_removed={100 * normal[1] / max(normal[0], 1):.2f}% "
            f"msgs_per_s={n / r['total_s'][0]:,.0f} msgs_per_cpu_s={n / r['total_s'][1]:,.0f}"
        )

    print(f"peer: ours {line(ours)} | datatrove {line(peer)}")


def _only(reason: dict[int, str], prefix: str) -> dict[int, str]:
    return {i: r for i, r in reason.items() if r.startswith(prefix)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--verbose", action="store_true", help="DataTrove's logs on stderr")
    args = parser.parse_args()
    _require_datatrove()
    load_start = os.getloadavg()
    n = args.messages
    messages = bc.generate(n, args.seed)
    texts = [m.text for m in messages]

    # this project, as bench_curation runs it
    raw = bc.raw_table(messages)
    clock = Clock()
    dropped, seconds, cpu = bc.clean_all(raw)
    total = clock.stop()
    del raw
    reason = dict(
        zip(
            (int(e[1:]) for e in dropped["event_id"].to_pylist()),
            dropped["reason"].to_pylist(),
            strict=True,
        )
    )
    # its parts: score_quality; drop_duplicate_content + drop_cross_duplicates (the rest of
    # the total is replay, normalising, empty, PII redaction, language tagging)
    quality_s = tuple(sum(d[k] for k in d if "quality" in k) for d in (seconds, cpu))
    dedup_s = tuple(sum(d[k] for k in d if "dup" in k) for d in (seconds, cpu))
    ours = {
        "by_filter": {},
        "near": bc.evaluate(messages, dropped),
        "all": bc.evaluate(messages, dropped),
        "normal_quality": bc.evaluate(messages, dropped_table(_only(reason, "low_quality"))),
        "normal_dedup": bc.evaluate(
            messages, dropped_table({i: r for i, r in reason.items() if "dup" in r})
        ),
        "swapped": _swapped(messages, reason),
        "dedup_s": dedup_s,
        "quality_s": quality_s,
        "total_s": total,
        "steps": {k: (seconds[k], cpu[k]) for k in seconds},
    }

    with tempfile.TemporaryDirectory(prefix="bench-datatrove-") as tmp:
        logs = io.StringIO()
        quiet = contextlib.nullcontext() if args.verbose else contextlib.redirect_stderr(logs)
        with quiet:
            clock = Clock()
            removed, dedup_steps = datatrove_dedup(texts, tmp)
            dedup_took = clock.stop()
            by_filter, reasons, quality_took = datatrove_quality(texts, tmp)
    dedup_reason = dict.fromkeys(removed, DEDUP_REASON)
    quality_reason = {i: f"low_quality:{f}" for i, f in by_filter.items()}
    combined = {**dedup_reason, **quality_reason}  # a quality drop named first, as ours
    normal_by: Counter = Counter(f for i, f in by_filter.items() if messages[i].kind == "normal")
    peer = {
        "by_filter": {k: f"{v:,}" for k, v in normal_by.items()},
        "near": bc.evaluate(messages, dropped_table(dedup_reason)),
        "all": bc.evaluate(messages, dropped_table(combined)),
        "normal_quality": bc.evaluate(messages, dropped_table(quality_reason)),
        "normal_dedup": bc.evaluate(messages, dropped_table(dedup_reason)),
        "swapped": _swapped(messages, dedup_reason),
        "dedup_s": dedup_took,
        "quality_s": quality_took,
        "total_s": tuple(a + b for a, b in zip(dedup_took, quality_took, strict=True)),
        "steps": {**dedup_steps, "quality filters": quality_took},
        "reasons": reasons,
    }
    report(n, messages, ours, peer, load_start)


if __name__ == "__main__":
    main()
