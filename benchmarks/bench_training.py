"""training_examples at 10k / 100k / 1M conversations a day, as a user runs it.

    .venv/bin/python benchmarks/bench_training.py                    # 10k, 100k, 1M
    .venv/bin/python benchmarks/bench_training.py --sizes 10000,100000 --cache-dir /tmp/bt

Headline (where the user waits): ``dagster asset materialize -m llm_data_platform --select
training_examples,training_selection_log --partition DAY`` in a fresh process, against a lake
in a temp folder holding one generated day of ``conversations_clean`` (and a small given
evaluation set, so decontamination is paid for). Wall time and peak RSS are the child's
(``os.wait4``); "in run" is the run's own step time from its log; the asset check of
``training_examples`` runs in the same run and is included.

Data: ``--sizes`` conversations of 2-6 messages (user first, alternating), 24 words a message
on average from a 2,000-word vocabulary (distinct texts), 85% rated (mostly 4-5), 95% English,
2% with a PII redaction, 10% ending in an unanswered question; sorted as the clean step
writes it. Generated with numpy/Arrow a block at a time, timed apart and not counted;
``--cache-dir`` keeps it.

Peer, same data, same run: the per-row implementation this module replaced (``git show
PEER_COMMIT:...training_examples.py``, each conversation assembled and ``json.dumps``-ed in
Python; given the same target tokenizer and rules it had) against ``build_training_examples``
now, in this process, on the same day (component figures; sizes up to ``--peer-max``). The
peer has no PII, quality, resolved or length rules, so it keeps more examples.
Last line: ``training: growth_10x=... cli_<size>_s=...``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm_data_platform import schemas

PROJECT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
DAY = "2026-03-02"
PEER_COMMIT = "b942a87"  # main before the vectorised training_examples
PEER_PATH = "llm_data_platform/transforms/training_examples.py"
BLOCK = 50_000  # conversations generated at once
IN_RUN = re.compile(r"Finished steps in process \(pid: \d+\) in (\S+)")
DURATION = re.compile(r"([\d.]+)(ms|h|m|s)")
UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
EVAL_QUESTIONS = (
    "How do I create a virtual environment with venv?",
    "What does functools.lru_cache do to a function's return values?",
    "Which exception is raised when a dictionary key is missing?",
)


def _vocabulary(rng: np.random.Generator, n: int = 2000) -> pa.Array:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 10, n)
    words = ["".join(rng.choice(letters, k)) for k in lengths]  # generation, not timed
    return pa.array(words, pa.string())


def _block(rng: np.random.Generator, vocab: pa.Array, first: int, n: int) -> pa.Table:
    """``n`` conversations from id ``first``: their messages and feedback, clean-sorted."""
    per = rng.integers(2, 7, n)
    m = int(per.sum())
    conv = np.repeat(np.arange(first, first + n), per)
    turn = np.arange(m) - np.repeat(np.cumsum(per) - per, per)
    words = rng.integers(6, 43, m)
    ids = rng.integers(0, len(vocab), int(words.sum()))
    offsets = pa.array(np.concatenate([[0], np.cumsum(words)]).astype(np.int32))
    text = pc.binary_join(pa.ListArray.from_arrays(offsets, vocab.take(pa.array(ids))), " ")
    role = np.where(turn % 2 == 0, "user", "assistant")
    asks = (role == "user") & (rng.random(m) < 0.5)
    text = pc.if_else(pa.array(asks), pc.binary_join_element_wise(text, "?", ""), text)
    base = int(datetime.fromisoformat(DAY).replace(tzinfo=UTC).timestamp() * 1e6)
    start = base + rng.integers(0, 86_000_000_000, n)
    times = np.repeat(start, per) + turn * 30_000_000
    lang = rng.choice(np.array(["en", "und", "fr"]), m, p=[0.95, 0.03, 0.02])
    cid = pa.array(np.char.add("c", np.char.zfill(np.arange(first, first + n).astype(str), 9)))
    rated = rng.random(n) < 0.85
    rating = rng.choice(np.arange(1, 6), n, p=[0.05, 0.05, 0.1, 0.35, 0.45])
    messages = {
        "event_id": pc.binary_join_element_wise(
            cid.take(pa.array(conv - first)), pa.array(turn.astype(str)), "-"
        ),
        "event_type": pa.array(np.full(m, "message")),
        "conversation_id": cid.take(pa.array(conv - first)),
        "turn_index": pa.array(turn.astype(np.int32)),
        "role": pa.array(role),
        "content": text,
        "rating": pa.nulls(m, pa.int8()),
        "user_id": pa.array(np.full(m, "u")),
        "event_time": pa.array(times, schemas.TS),
        "language": pa.array(lang),
        "quality_score": pa.array(rng.uniform(0.5, 1.0, m).astype(np.float32)),
        "pii_redactions": pa.array((rng.random(m) < 0.02 / 4).astype(np.int32)),
        "content_hash": pa.array(np.full(m, "h")),
        "source_file": pa.array(np.full(m, "bench.jsonl")),
        "source_line": pa.array(np.arange(m, dtype=np.int32)),
    }
    k = int(rated.sum())
    rated_cid = cid.filter(pa.array(rated))
    feedback = {
        **{name: pa.nulls(k, messages[name].type) for name in messages},
        "event_id": pc.binary_join_element_wise(rated_cid, "f", "-"),
        "event_type": pa.array(np.full(k, "feedback")),
        "conversation_id": rated_cid,
        "rating": pa.array(rating[rated].astype(np.int8)),
        "event_time": pa.array(start[rated] + 3_600_000_000, schemas.TS),
        "source_file": pa.array(np.full(k, "bench.jsonl")),
    }
    table = pa.concat_tables(
        [pa.table(messages).cast(schemas.CONVERSATIONS_CLEAN),
         pa.table(feedback).cast(schemas.CONVERSATIONS_CLEAN)]
    )  # fmt: skip
    return table.sort_by([(c, "ascending") for c in ("conversation_id", "event_time", "event_id")])


def generate(cache: Path, conversations: int) -> tuple[Path, float]:
    """The clean day as one Parquet file (reused when cached); (path, seconds)."""
    path = cache / f"clean-{conversations}.parquet"
    if path.exists():
        return path, 0.0
    started = time.perf_counter()
    rng = np.random.default_rng(conversations)
    vocab = _vocabulary(rng)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schemas.CONVERSATIONS_CLEAN, compression="zstd") as writer:
        for first in range(0, conversations, BLOCK):
            writer.write_table(_block(rng, vocab, first, min(BLOCK, conversations - first)))
    tmp.rename(path)
    return path, time.perf_counter() - started


def _home(root: Path, clean: Path) -> dict[str, str]:
    """A project home whose lake holds the day and the evaluation set."""
    lake = root / "data" / "lake"
    day_dir = lake / "clean" / "conversations_clean" / f"dt={DAY}"
    day_dir.mkdir(parents=True)
    os.link(clean, day_dir / "data.parquet")
    eval_dir = lake / "curated" / "retrieval_eval_set" / "dt=all"
    eval_dir.mkdir(parents=True)
    questions = pa.table({"question": list(EVAL_QUESTIONS), "source": ["given"] * 3})
    pq.write_table(questions, eval_dir / "data.parquet")
    (root / "dagster_home").mkdir()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("LDP_")},
        "LDP_HOME": str(root),
        "LDP_LAKE_ROOT": str(lake),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "LDP_EXECUTOR": "in_process",
        "HF_HUB_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "False",
    }


def run_cli(env: dict[str, str], root: Path) -> dict[str, float]:
    """The user's command, fresh process: wall seconds, in-run seconds, peak RSS (MB)."""
    cmd = [DAGSTER, "asset", "materialize", "-m", "llm_data_platform", "--select",
           "training_examples,training_selection_log", "--partition", DAY]  # fmt: skip
    log = root / "cli.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        child = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if status != 0 or "RUN_SUCCESS" not in text:
        tail = "\n".join(text.splitlines()[-15:])
        raise SystemExit(f"dagster asset materialize failed (status {status}):\n{tail}")
    found = IN_RUN.search(text)
    in_run = math.nan
    if found:
        in_run = sum(float(v) * UNIT[u] for v, u in DURATION.findall(found.group(1)))
    return {"wall_s": wall, "in_run_s": in_run, "rss_mb": usage.ru_maxrss / 1024}


def _peer_module():
    """The replaced per-row implementation, from git (None when git cannot give it)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{PEER_COMMIT}:{PEER_PATH}"],
            cwd=PROJECT, capture_output=True, check=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = Path(tempfile.mkdtemp(prefix="peer-"))
    (folder / "peer_training_examples.py").write_text(source)
    spec = importlib.util.spec_from_file_location(
        "peer_training_examples", folder / "peer_training_examples.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def components(clean: Path, peer) -> dict[str, float]:
    """Warm, in-process seconds of one day's build: now, and the peer's (component figures)."""
    from llm_data_platform.defs.training.resources import TrainingSettings
    from llm_data_platform.transforms.target_tokenizer import count_tokens
    from llm_data_platform.transforms.training_examples import (
        build_training_examples,
        whole_conversations,
    )

    config = TrainingSettings().config()
    out = {}
    chunks = list(whole_conversations(pq.ParquetFile(clean).iter_batches(100_000)))
    count_tokens(["the tokenizer's vocabulary loaded before either is timed"], config.encoding)
    started = time.perf_counter()
    kept = sum(build_training_examples(c, config).examples.num_rows for c in chunks)
    out["now_s"], out["now_examples"] = time.perf_counter() - started, kept
    if peer is not None:
        old = peer.TrainingConfig(system_prompt=config.system_prompt, few_shot=config.few_shot,
                                  allow_undetermined_language=True)  # fmt: skip

        def count(texts):  # the same tokenizer: the difference is the per-row assembly
            return count_tokens(texts, config.encoding).tolist()

        started = time.perf_counter()
        kept = sum(peer.build_training_examples(c, old, count).examples.num_rows for c in chunks)
        out["peer_s"], out["peer_examples"] = time.perf_counter() - started, kept
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--cache-dir", default="")
    parser.add_argument("--peer-max", type=int, default=100_000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="bench-training-gen-"))
    cache.mkdir(parents=True, exist_ok=True)
    peer = _peer_module()
    results = {}
    for size in sizes:
        clean, gen_s = generate(cache, size)
        rows = pq.ParquetFile(clean).metadata.num_rows
        root = Path(tempfile.mkdtemp(prefix=f"bench-training-{size}-"))
        try:
            cli = run_cli(_home(root, clean), root)
            examples = pq.ParquetFile(
                root / "data/lake/curated/training_examples" / f"dt={DAY}" / "data.parquet"
            ).metadata.num_rows
        finally:
            shutil.rmtree(root, ignore_errors=True)
        comp = components(clean, peer if size <= args.peer_max else None)
        results[size] = {**cli, **comp, "rows": rows, "examples": examples}
        peer_text = ""
        if "peer_s" in comp:
            speedup = comp["peer_s"] / comp["now_s"]
            peer_text = f" peer(per-row) {comp['peer_s']:.2f} s (now {speedup:.1f}x faster)"
        print(
            f"{size:>9,} conversations ({rows:,} rows, generated in {gen_s:.1f} s): "
            f"CLI wall {cli['wall_s']:.1f} s, in run {cli['in_run_s']:.2f} s, peak RSS "
            f"{cli['rss_mb']:.0f} MB, {examples:,} examples | component: now "
            f"{comp['now_s']:.2f} s{peer_text}",
            flush=True,
        )
    growth = [
        results[b]["in_run_s"] / results[a]["in_run_s"]
        for a, b in zip(sizes, sizes[1:], strict=False)
        if b == a * 10
    ]
    figures = " ".join(f"cli_{s}_s={results[s]['wall_s']:.1f}" for s in sizes)
    print(f"training: growth_10x={max(growth) if growth else math.nan:.2f} {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
