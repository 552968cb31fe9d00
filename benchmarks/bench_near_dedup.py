"""Throughput of MinHash near-duplicate detection on synthetic chat sessions.

    .venv/bin/python benchmarks/bench_near_dedup.py [--texts 20000] [--dup-rate 0.05] [--seed 7]
        [--phases 100000]

Sessions are built from real prose (the CPython language reference topics of the demo
corpus), so unrelated sessions share vocabulary and templates like real traffic does; a fraction
are near-duplicate copies (one word changed). Prints, best of ``--repeat`` runs:

- texts/s and MB/s of ``near_duplicate_mask`` end to end, and its stages (shingle hashing,
  signatures, LSH query + exact verification);
- the same signatures built the usual way, ``datasketch.MinHash.bulk`` over the shingle strings
  with the default SHA-1 hash, on a subset, with the speed-up ratio;
- recall on the injected copies and the number of other texts flagged;
- with ``--phases N``: where the time of message near-dup goes, phase by phase (wall and CPU
  seconds of all threads), on ``bench_curation.py``'s N support messages with the clean
  step's parameters (``DedupConfig.near``: word 2-grams, 0.5, 42 bands of 3): shingles,
  signature minima and band keys on one thread a block at a time as a pool thread does them,
  the three on the shared pool, candidate pairs, screening, exact verification + clusters,
  and ``cluster_texts`` end to end. The generator's exact copies are left in (the clean step
  drops them before near-dup), so the clusters are bigger here.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasketch import MinHash

from llm_data_platform.demo import load_topics
from llm_data_platform.transforms import near_dedup

QUESTIONS = (
    "How does {s} work in Python?",
    "Can you explain {s}?",
    "Please explain {s} in simple terms.",
    "What should I know about {s} when writing Python code?",
)


def sentences() -> list[str]:
    out = []
    for doc in load_topics():
        for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z])", doc.content.replace("\n", " ")):
            if 6 <= len(sent.split()) <= 50 and not sent.startswith("#"):
                out.append(sent)
    return out


def make_texts(n: int, dup_rate: float, seed: int) -> tuple[list[str], list[str], dict[int, int]]:
    """(texts, ids, {copy index: source index})."""
    rng = random.Random(seed)
    pool = sentences()
    subjects = [doc.title.lower() for doc in load_topics()]
    texts: list[str] = []
    copies: dict[int, int] = {}
    while len(texts) < n:
        if texts and rng.random() < dup_rate:
            src = rng.randrange(len(texts))
            words = texts[src].split(" ")
            i = rng.randrange(len(words))
            words[i] = rng.choice(("basically", "actually", "essentially", "really"))
            copies[len(texts)] = src
            texts.append(" ".join(words))
            continue
        lines = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            q = rng.choice(QUESTIONS).format(s=rng.choice(subjects))
            a = " ".join(rng.sample(pool, rng.randint(2, 5)))
            lines += [f"user: {q}", f"assistant: {a}"]
        texts.append("\n".join(lines))
    return texts, [f"c{i:06d}" for i in range(n)], copies


def best_of(repeat: int, fn):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _timed(rows: list, repeat: int, label: str, fn):
    """Best-of-``repeat`` wall seconds of ``fn`` with the CPU seconds of that run."""
    best = (float("inf"), 0.0)
    out = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    rows.append((label, *best))
    return out


def _verify(sig: np.ndarray, kept: tuple, a: np.ndarray, b: np.ndarray, threshold: float):
    """Screening's survivors verified and merged, as ``cluster_texts`` does."""
    exact = near_dedup._ExactSets(kept[0], kept[1], near_dedup._SIG_BLOCK, np.arange(len(sig)))
    root, _ = near_dedup._union_verified(
        a, b, len(sig), lambda i, j: exact.jaccard(i, j) >= threshold
    )
    for p in np.flatnonzero(root != np.arange(len(sig))).tolist():
        exact.jaccard(p, int(root[p]))
    return root


def phases(n: int, seed: int, repeat: int) -> None:
    """Message near-dup of the curation bench's messages, phase by phase (module doc)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_curation

    from llm_data_platform.transforms import minhash
    from llm_data_platform.transforms.cross_dedup import DedupConfig

    params = DedupConfig().near
    texts = pa.array([m.text for m in bench_curation.generate(n, seed)], pa.string())
    step = near_dedup._SIG_BLOCK
    blocks = [texts.slice(start, step) for start in range(0, n, step)]
    rows: list = []
    shingled = _timed(
        rows,
        repeat,
        "shingles (1 thread)",
        lambda: [near_dedup.shingle_hashes(b, params.shingle) for b in blocks],
    )
    tops = [(o, (h >> np.uint64(32)).astype(np.uint32)) for o, h in shingled]
    sigs = _timed(
        rows,
        repeat,
        "signature minima (1 thread)",
        lambda: [minhash.minhash_signatures(o, t, params.num_perm, params.seed) for o, t in tops],
    )
    _timed(
        rows,
        repeat,
        "band keys (1 thread)",
        lambda: [minhash.folded_band_keys(s, *params.banding) for s in sigs],
    )
    sig, _, keys, kept = _timed(
        rows, repeat, "  the three on the pool", lambda: near_dedup._signatures(texts, params)
    )
    a, b = _timed(rows, repeat, "candidate pairs", lambda: minhash._bucket_edges(keys))
    est = _timed(rows, repeat, "screening", lambda: minhash.signature_agreement(sig, a, b))
    keep = est >= params.threshold - near_dedup.ESTIMATE_MARGIN
    _timed(
        rows,
        repeat,
        "verification + clusters",
        lambda: _verify(sig, kept, a[keep], b[keep], params.threshold),
    )
    _timed(
        rows, repeat, "cluster_texts end to end", lambda: near_dedup.cluster_texts(texts, params)
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n== message near-dup phases, {n:,} curation messages (load {load}, best of {repeat})")
    print(f"  candidates {len(a):,}, screened {int(keep.sum()):,}")
    print(f"  {'phase':<32}{'wall s':>8}{'msgs/s':>11}{'CPU s':>8}")
    for label, wall, cpu in rows:
        print(f"  {label:<32}{wall:8.3f}{n / max(wall, 1e-9):>11,.0f}{cpu:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--dup-rate", type=float, default=0.05)
    parser.add_argument("--baseline", type=int, default=0, help="texts for the bulk baseline (all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--phases", type=int, default=0, help="curation messages; 0: skip")
    args = parser.parse_args()
    if args.phases:
        phases(args.phases, args.seed, args.repeat)
        return

    texts, ids, copies = make_texts(args.texts, args.dup_rate, args.seed)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    n = len(texts)
    print(f"{n} texts, {mb:.1f} MB, {len(copies)} injected near-duplicate copies")

    total, result = best_of(args.repeat, lambda: near_dedup.near_duplicate_mask(texts, ids))
    t_sh, (offsets, hashes) = best_of(args.repeat, lambda: near_dedup.shingle_hashes(texts))
    t_sig, _ = best_of(args.repeat, lambda: near_dedup.minhash_signatures(offsets, hashes))
    print(f"near_duplicate_mask  {total:7.2f} s  {n / total:9,.0f} texts/s  {mb / total:6.1f} MB/s")
    print(f"  shingle hashing    {t_sh:7.2f} s  {n / t_sh:9,.0f} texts/s")
    print(f"  minhash signatures {t_sig:7.2f} s  {n / t_sig:9,.0f} texts/s")
    t_lsh = total - t_sh - t_sig
    print(f"  lsh query+verify   {t_lsh:7.2f} s  {n / t_lsh:9,.0f} texts/s")
    b, r = near_dedup.lsh_params(0.8, 128)
    print(
        f"  lsh {b} bands x {r} rows; candidates {result.candidates}, "
        f"exact checks {result.pairs_checked}, duplicates {result.n_duplicates}"
    )

    # baseline: shingle strings built in Python, hashed (SHA-1) and sketched by datasketch one
    # text at a time with MinHash.bulk
    sub = texts[: args.baseline or None]
    m = len(sub)

    def python_shingles() -> list[list[bytes]]:
        sets = []
        for t in near_dedup.normalize_for_matching(sub).to_pylist():
            w = t.split(" ")
            sets.append([" ".join(w[i : i + 5]).encode() for i in range(len(w) - 4)])
        return sets

    t_py, sets = best_of(1, python_shingles)
    t_bulk, _ = best_of(1, lambda: MinHash.bulk(sets, num_perm=128, seed=1))
    t_sh2, (off2, h2) = best_of(args.repeat, lambda: near_dedup.shingle_hashes(sub))
    t_sig2, _ = best_of(args.repeat, lambda: near_dedup.minhash_signatures(off2, h2))
    print(
        f"signatures of {m} texts, text -> shingles + sketches:\n"
        f"  datasketch MinHash.bulk  {t_py:5.2f} s + {t_bulk:5.2f} s = "
        f"{m / (t_py + t_bulk):7,.0f} texts/s\n"
        f"  vectorised               {t_sh2:5.2f} s + {t_sig2:5.2f} s = "
        f"{m / (t_sh2 + t_sig2):7,.0f} texts/s  "
        f"(sketching {t_bulk / t_sig2:.0f}x, overall {(t_py + t_bulk) / (t_sh2 + t_sig2):.1f}x)"
    )

    # A one-word edit of a short text can leave it under the threshold: count as findable the
    # copies whose exact Jaccard with their source (over the shingle-hash sets) is >= 0.8.
    offsets, hashes = near_dedup.shingle_hashes(texts)

    def shingle_set(i: int):
        return set(hashes[offsets[i] : offsets[i + 1]].tolist())

    findable = set()
    for c, src in copies.items():
        a, b = shingle_set(c), shingle_set(src)
        if len(a & b) / len(a | b) >= 0.8:
            findable.add(c)
    flagged = {i for i, k in enumerate(result.keep) if not k}
    print(
        f"injected copies flagged {len(flagged & set(copies))}/{len(copies)}; "
        f"with exact Jaccard >= 0.8 to their source: {len(flagged & findable)}/{len(findable)}; "
        f"other texts flagged {len(flagged - set(copies))}"
    )


if __name__ == "__main__":
    main()
