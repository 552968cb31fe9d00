"""The history-wide duplicate step over a 7-day backfill: in process vs Spark (local mode).

    .venv/bin/python benchmarks/bench_history_duplicates.py                 # 100k conversations/day
    .venv/bin/python benchmarks/bench_history_duplicates.py --per-day 20000 --engines local,spark

Data: ``--days`` days of the clean step's index tables (``conversations_content_hashes`` and
``conversations_near_dup_signatures``, the same schemas, parameters and lake layout), made by
the real transforms (``content_hash``, ``shingle_hashes``, ``minhash_signatures``) from
``--per-day`` conversations a day: a user message of 20-80 words and an assistant reply of
20-60 words, word-bigram text over real prose (``bench_curation``'s chain), so unrelated
messages share common bigrams as real traffic does. From the second day on, 2% of a day's
conversations replay one of an earlier day (exact) and 2% carry a 3-10% word edit of an
earlier user message (near). Generation is not timed.

Then, per engine, what a user runs, from a fresh process: ``dagster asset materialize -m
llm_data_platform.definitions --select conversations_history_duplicates`` with
``LDP_HISTORY_ENGINE=<engine>`` (the step in the CLI's own process: ``LDP_EXECUTOR`` is
in_process by default; Spark's JVM is that process's child). Figures: wall seconds of the
command, the step's own seconds (its log line), and peak RSS of the whole process tree (the
CLI plus the JVM: the sum of VmRSS of every descendant, sampled every 100 ms). The engines'
result tables are compared (``identical=``). One line per engine, then the ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import bench_curation  # noqa: E402  (the word-bigram chain over real prose)

from llm_data_platform.resources.lake import LakeResource  # noqa: E402
from llm_data_platform.transforms.cross_dedup import (  # noqa: E402
    CONTENT_HASHES,
    SIGNATURES,
    DedupConfig,  # noqa: E402
)
from llm_data_platform.transforms.dedup import content_hash  # noqa: E402
from llm_data_platform.transforms.near_dedup import minhash_signatures, shingle_hashes  # noqa: E402
from llm_data_platform_tests.daemon import _descendants, _table  # noqa: E402

DAGSTER = str(Path(sys.executable).parent / "dagster")
FIRST_DAY = date(2026, 3, 2)
STEP_LINE = re.compile(r"(local|spark): (\d+) groups, (\d+) members over (\d+) days in ([\d.]+) s")


def _signature_table(scope: str, ids: list[str], texts: pa.Array, config: DedupConfig) -> pa.Table:
    p = config.near if scope == "message" else config.conversation
    offsets, hashes = shingle_hashes(texts, p.shingle)
    sig = minhash_signatures(offsets, hashes, p.num_perm, p.seed)
    n = len(ids)
    flat = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * p.num_perm + 1, p.num_perm, dtype=np.int32)),
        pa.array(sig.ravel(), pa.uint32()),
    )
    cols = {"scope": [scope] * n, "id": ids, "params": [config.fingerprint(scope)] * n}
    return pa.table({**cols, "signature": flat}, schema=SIGNATURES)


def _day_texts(
    chain, vocab: list[str], n: int, earlier: list[str], rng: random.Random, np_rng
) -> tuple[list[str], list[str], int, int]:
    """(user texts, assistant texts, exact replays, near copies) of one day."""
    users = chain.texts(np_rng.integers(20, 81, n), np_rng)
    replies = chain.texts(np_rng.integers(20, 61, n), np_rng)
    exact = near = 0
    if earlier:
        for i in range(n):
            r = rng.random()
            if r < 0.02:
                j = rng.randrange(len(earlier) // 2)
                users[i], replies[i] = earlier[2 * j], earlier[2 * j + 1]
                exact += 1
            elif r < 0.04:
                users[i] = bench_curation._edit_words(
                    rng,
                    earlier[2 * rng.randrange(len(earlier) // 2)],
                    rng.uniform(0.03, 0.1),
                    vocab,
                )
                near += 1
    return users, replies, exact, near


def generate(lake: LakeResource, days: list[str], per_day: int, seed: int = 7) -> dict:
    """The index tables of ``days`` in the lake's clean zone; counts of what was planted."""
    config = DedupConfig()
    words = bench_curation._corpus_words()
    chain, vocab = bench_curation._Markov(words), bench_curation._vocabulary(words)
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    earlier: list[str] = []  # a sample of earlier (user, reply) pairs, flattened
    planted = {"exact": 0, "near": 0}
    for day in days:
        users, replies, exact, near = _day_texts(chain, vocab, per_day, earlier, rng, np_rng)
        planted["exact"] += exact
        planted["near"] += near
        event_ids = [f"{day}/e{i:07d}" for i in range(per_day)]
        conv_ids = [f"{day}/c{i:07d}" for i in range(per_day)]
        user_arr = pa.array(users, pa.string())
        conv_arr = pa.array(
            [f"user: {u}\nassistant: {r}" for u, r in zip(users, replies, strict=True)]
        )
        hashes = pa.table(
            {
                "event_id": event_ids,
                "conversation_id": conv_ids,
                "content_hash": content_hash(user_arr),
            },
            schema=CONTENT_HASHES,
        )
        signatures = pa.concat_tables(
            [
                _signature_table("message", event_ids, user_arr, config),
                _signature_table("conversation", conv_ids, conv_arr, config),
            ]
        )
        lake.write_partition("clean", "conversations_content_hashes", day, hashes)
        lake.write_partition("clean", "conversations_near_dup_signatures", day, signatures)
        for i in rng.sample(range(per_day), min(per_day, 2000)):
            earlier += [users[i], replies[i]]
    return planted


class TreeRss(threading.Thread):
    """Peak of the summed VmRSS of a process and its descendants, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            for pid in {self.pid} | _descendants(self.pid, _table()):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                total += next(
                    (
                        int(line.split()[1])
                        for line in status.splitlines()
                        if line.startswith("VmRSS:")
                    ),
                    0,
                )
            self.peak_kb = max(self.peak_kb, total)
            self.done.wait(0.1)


def run_engine(home: Path, engine: str, driver_memory: str) -> dict:
    """One ``dagster asset materialize`` of the history step with ``engine``, measured."""
    env = {
        **os.environ,
        "LDP_HOME": str(home),
        "LDP_LAKE_ROOT": str(home / "lake"),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "LDP_HISTORY_ENGINE": engine,
        "LDP_SPARK_DRIVER_MEMORY": driver_memory,
        "HF_HUB_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "False",
    }
    cmd = [DAGSTER, "asset", "materialize", "-m", "llm_data_platform.definitions"]
    cmd += ["--select", "conversations_history_duplicates"]
    log = home / f"{engine}.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home)
        sampler = TreeRss(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        sampler.done.set()
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    found = STEP_LINE.search(text)
    if status != 0 or found is None:
        raise SystemExit(f"{engine} failed (exit {status}); log: {log}\n{text[-3000:]}")
    peak_kb = max(sampler.peak_kb, usage.ru_maxrss)
    return {
        "wall_s": wall,
        "step_s": float(found.group(5)),
        "peak_rss_mb": peak_kb / 1024,
        "groups": int(found.group(2)),
        "members": int(found.group(3)),
        "days": int(found.group(4)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--per-day", type=int, default=100_000, help="conversations a day")
    parser.add_argument("--engines", default="local,spark")
    parser.add_argument("--spark-driver-memory", default="4g")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench_history_"))
    (home / "dagster_home").mkdir()
    lake = LakeResource(root=str(home / "lake"))
    days = [(FIRST_DAY + timedelta(days=d)).isoformat() for d in range(args.days)]
    started = time.perf_counter()
    planted = generate(lake, days, args.per_day)
    rows = lake.count_rows("clean", "conversations_near_dup_signatures", days)
    print(
        f"generated: days={args.days} conversations/day={args.per_day} signature_rows={rows} "
        f"planted_exact={planted['exact']} planted_near={planted['near']} "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    results, tables = {}, {}
    for engine in args.engines.split(","):
        r = results[engine] = run_engine(home, engine, args.spark_driver_memory)
        table = tables[engine] = lake.read_partition(
            "clean", "conversations_history_duplicates", "all"
        )
        kinds = Counter(zip(table["scope"].to_pylist(), table["kind"].to_pylist(), strict=True))
        print(
            f"history_duplicates: engine={engine} days={r['days']} "
            f"messages={args.per_day * args.days} conversations={args.per_day * args.days} "
            f"wall_s={r['wall_s']:.1f} step_s={r['step_s']:.1f} peak_rss_mb={r['peak_rss_mb']:.0f} "
            f"groups={r['groups']} members={r['members']} "
            f"message_exact={kinds['message', 'exact']} message_near={kinds['message', 'near']} "
            f"conversation_near={kinds['conversation', 'near']}",
            flush=True,
        )
    if {"local", "spark"} <= set(results):
        local, spark = results["local"], results["spark"]
        print(
            f"history_duplicates: spark/local wall={spark['wall_s'] / local['wall_s']:.2f}x "
            f"step={spark['step_s'] / local['step_s']:.2f}x "
            f"rss={spark['peak_rss_mb'] / local['peak_rss_mb']:.2f}x "
            f"identical={'yes' if tables['spark'].equals(tables['local']) else 'NO'}"
        )
    if args.keep:
        print(f"kept: {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
