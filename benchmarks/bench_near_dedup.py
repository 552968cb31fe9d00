"""Throughput of MinHash near-duplicate detection on synthetic chat sessions.

    .venv/bin/python benchmarks/bench_near_dedup.py [--texts 20000] [--dup-rate 0.05] [--seed 7]

Sessions are built from real prose (the CPython language reference topics of the demo
corpus), so unrelated sessions share vocabulary and templates like real traffic does; a fraction
are near-duplicate copies (one word changed). Prints, best of ``--repeat`` runs:

- texts/s and MB/s of ``near_duplicate_mask`` end to end, and its stages (shingle hashing,
  signatures, LSH query + exact verification);
- the same signatures built the usual way, ``datasketch.MinHash.bulk`` over the shingle strings
  with the default SHA-1 hash, on a subset, with the speed-up ratio;
- recall on the injected copies and the number of other texts flagged.
"""

from __future__ import annotations

import argparse
import random
import re
import time

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


def make_texts(n: int, dup_rate: float, seed: int) -> tuple[list[str], list[str], set[int]]:
    rng = random.Random(seed)
    pool = sentences()
    subjects = [doc.title.lower() for doc in load_topics()]
    texts: list[str] = []
    copies: set[int] = set()
    while len(texts) < n:
        if texts and rng.random() < dup_rate:
            words = rng.choice(texts).split(" ")
            i = rng.randrange(len(words))
            words[i] = rng.choice(("basically", "actually", "essentially", "really"))
            copies.add(len(texts))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--dup-rate", type=float, default=0.05)
    parser.add_argument("--baseline", type=int, default=2_000, help="texts for the bulk baseline")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

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

    # baseline: shingle strings hashed by datasketch (SHA-1) one sketch at a time
    sub = texts[: args.baseline]

    def bulk() -> list:
        norm = near_dedup.normalize_for_matching(sub).to_pylist()
        sets = []
        for t in norm:
            w = t.split(" ")
            sets.append([" ".join(w[i : i + 5]).encode() for i in range(len(w) - 4)])
        return MinHash.bulk(sets, num_perm=128, seed=1)

    t_bulk, _ = best_of(args.repeat, bulk)
    t_ours, _ = best_of(
        args.repeat, lambda: near_dedup.minhash_signatures(*near_dedup.shingle_hashes(sub))
    )
    m = len(sub)
    print(
        f"signatures for {m} texts: MinHash.bulk {m / t_bulk:9,.0f} texts/s, "
        f"vectorised {m / t_ours:9,.0f} texts/s ({t_bulk / t_ours:.0f}x)"
    )

    flagged = {i for i, k in enumerate(result.keep) if not k}
    caught = len(flagged & copies)
    print(
        f"recall on injected copies {caught}/{len(copies)}, "
        f"other texts flagged {len(flagged - copies)}"
    )


if __name__ == "__main__":
    main()
