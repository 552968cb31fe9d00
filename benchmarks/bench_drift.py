"""What the drift checks on conversations_clean cost, per day and for a backfill.

    .venv/bin/python benchmarks/bench_drift.py [--messages 200000] [--days 8] [--sample 5000]

Writes ``--days`` synthetic clean days (``--messages`` kept messages each, chat-like lengths,
3% with a redaction, 4% dropped rows) into a temp lake, then times, in one process:
  * profiling one day from the lake (read 4 columns in batches, tokenize a ``--sample``
    evenly spaced sample of the messages with the embedding model's tokenizer);
  * the drift step for the last day (its own profile plus up to 7 earlier ones, cold);
  * the drift step for a backfill of every day (each day profiled once);
  * rendering a histogram PNG (the first one imports Pillow and loads the font), and its size.
These are component figures of a warm process (the tokenizer loaded once before timing);
the check runs inside a materialization's run, after the clean step.
"""

import argparse
import random
import tempfile
import time
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from llm_data_platform import schemas
from llm_data_platform.defs.conversations.drift import DriftSettings, evaluate_drift
from llm_data_platform.lib import drift, plots
from llm_data_platform.lib.drift_lake import LakeProfiles
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.tokenizer import count_tokens

WORDS = [
    "python",
    "list",
    "dict",
    "error",
    "install",
    "version",
    "script",
    "file",
    "folder",
    "server",
    "database",
    "query",
    "table",
    "column",
    "export",
    "import",
    "cache",
    "setting",
    "profile",
    "module",
    "function",
    "class",
    "return",
    "value",
    "loop",
    "thread",
    "process",
    "memory",
    "async",
    "await",
    "context",
    "manager",
    "decorator",
    "generator",
    "iterator",
]


def clean_day(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """``n`` kept messages (+ 10% feedback rows) and 4% dropped rows of one synthetic day."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    lengths = np.clip(rng.lognormal(2.6, 0.9, n).astype(int), 1, 400)
    content = [" ".join(pick.choices(WORDS, k=int(k))) for k in lengths]
    n_fb = n // 10
    total = n + n_fb
    table = pa.table(
        {
            "event_id": [f"e{seed}-{i}" for i in range(total)],
            "event_type": ["message"] * n + ["feedback"] * n_fb,
            "conversation_id": [f"c{seed}-{i // 6:07d}" for i in range(total)],
            "turn_index": pa.array(np.arange(total) % 6, pa.int32()),
            "role": ["user"] * total,
            "content": content + [None] * n_fb,
            "rating": pa.nulls(total, pa.int8()),
            "user_id": ["u"] * total,
            "event_time": pa.array(np.zeros(total, "datetime64[us]")).cast(schemas.TS),
            "language": ["en"] * total,
            "quality_score": pa.array(
                np.concatenate([rng.uniform(0.5, 1.0, n), np.full(n_fb, np.nan)]), pa.float32()
            ),
            "pii_redactions": pa.array((rng.random(total) < 0.03).astype(np.int32)),
            "content_hash": [None] * total,
            "source_file": ["f"] * total,
            "source_line": pa.array(np.arange(total), pa.int32()),
        }
    ).cast(schemas.CONVERSATIONS_CLEAN, safe=False)
    n_drop = n // 25
    reasons = pick.choices(["duplicate_content", "low_quality:keyboard_mash", "empty"], k=n_drop)
    dropped = pa.table(
        {
            "event_id": [f"d{i}" for i in range(n_drop)],
            "source_file": ["f"] * n_drop,
            "source_line": pa.array(np.arange(n_drop), pa.int32()),
            "reason": reasons,
            "content": ["x"] * n_drop,
        }
    )  # the columns the drift checks read of conversations_clean_dropped
    return table, dropped


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--sample", type=int, default=5_000)
    args = parser.parse_args()
    lake = LakeResource(root=tempfile.mkdtemp(prefix="bench-drift-"))
    first = date(2026, 1, 5)
    keys = [(first + timedelta(days=i)).isoformat() for i in range(args.days)]
    for i, key in enumerate(keys):
        clean, dropped = clean_day(args.messages, seed=i)
        lake.write_partition("clean", "conversations_clean", key, clean)
        lake.write_partition("clean", "conversations_clean_dropped", key, dropped)
    count_tokens(["warm the tokenizer up"])
    settings = DriftSettings(token_sample=args.sample)
    print(f"{args.days} clean days of {args.messages:,} messages; token sample {args.sample:,}")

    profile, seconds = timed(lambda: LakeProfiles(lake, args.sample).get(keys[-1]))
    print(
        f"profile one day: {seconds:.2f} s ({args.messages / seconds:,.0f} messages/s; "
        f"{int(profile.token_hist.sum()):,} tokenized)"
    )
    profiles = LakeProfiles(lake, args.sample)
    _, seconds = timed(lambda: [profiles.get(k) for k in keys])
    print(f"profile all {args.days} days: {seconds:.2f} s")

    labels = drift.bin_labels(drift.TOKEN_EDGES)
    shares = drift.shares(profile.token_hist)
    series = {"baseline": shares, "today": shares[::-1]}

    def render() -> bytes:
        return plots.bar_histogram_png(labels, series, title="tokens", xlabel="word pieces")

    _, seconds = timed(render)
    print(f"first histogram PNG (imports Pillow): {seconds * 1000:.0f} ms")
    png, seconds = timed(render)
    print(f"next histogram PNG: {len(png):,} bytes in {seconds * 1000:.0f} ms")

    _, seconds = timed(lambda: evaluate_drift(lake, keys[-1:], settings))
    print(f"drift step, one day + {min(args.days - 1, 7)} earlier days: {seconds:.2f} s")
    _, seconds = timed(lambda: evaluate_drift(lake, keys, settings))
    per_day = seconds / len(keys)
    print(f"drift step, backfill of {args.days} days: {seconds:.2f} s ({per_day:.2f} s/day)")


if __name__ == "__main__":
    main()
