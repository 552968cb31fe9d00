"""Throughput of ``redact_pii`` alone on synthetic chat messages.

    .venv/bin/python benchmarks/bench_pii.py [--rows 50000] [--seed 7] [--repeat 3]

Messages mix plain chat, code, numbers and strings that look like PII (versions, dates, ids,
SHAs, UUIDs, checksums, digests, base64 data) and about one in five with real-looking PII of
every kind (secrets of several families among them). Prints msg/s (best of
``--repeat``) and the span counts per kind.
"""

from __future__ import annotations

import argparse
import random
import time

import pyarrow as pa

from llm_data_platform.transforms.pii import redact_pii

PLAIN = [
    "How do I reverse a list in Python without copying it?",
    "A join multiplies rows when the key is not unique on one side; deduplicate first.",
    "Upgrade to 3.11.7 and rerun; 1,000 rows is tiny, see line 42 of main.py.",
    "Sure. Here are the key points:\n- growth slowed in 2026\n- costs rose\n- outlook stable",
    "Commit 3f9a1c2e7b4d5f60718293a4b5c6d7e8f9012345 fixed it on 2026-03-14 10:30:45.",
    "The order 4410-2291-8837 shipped; request id 550e8400-e29b-41d4-a716-446655440000.",
    '[assembly: AssemblyVersion("1.0.0.0")] and locale en_US, fr-FR.',
    "Meeting ID 845 2231 9904, passcode 991203, at 14:00 CET.",
    "¿Cómo puedo invertir una lista en Python? Versión 3.12.",
    "Wie kann ich eine Liste in Python umdrehen? Seit 2019 nutze ich 3.8.",
    "    def make_adder(n):\n        return lambda x: x + n",
    "Thanks!",
    # look-alikes of secrets that must survive (and cost the secret detectors a look)
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  app.tar.gz",
    "docker pull nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd5",
    "token_count: 4096, max_tokens=2048; api_key = os.getenv('OPENAI_API_KEY')",
    '<img src="data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7">',
    "connect to postgres://localhost:5432/app with the password from Vault",
]
PII = [
    "you can reach me at {name}@example.com",
    "my number is (415) 555-{d4}",
    "call +44 20 7946 {d4} tomorrow",
    "ring me on 07700 900{d3} after six",
    "mon portable : 06 12 34 {d2} {d2}",
    "I live at {n} Main Street, Apt 4B, Springfield, IL 62704",
    "Flat {n}, 12 Baker Street, London, NW1 6XE",
    "Meine Adresse: Hauptstraße {n}, 10115 Berlin",
    "SSN 123 45 {d4}",
    "card 4111 1111 1111 1111 exp 12/28",
    "the server is at 10.{o}.{o}.{o}",
    "Authorization: Bearer abC9{d4}xYz81QwErTy77uIoP0aSdF",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY{d4}EXAMPLEK",
    "DATABASE_URL=postgres://app:Qm8{d4}zX@db.internal:5432/main",
    "git clone https://oauth2:glpat-Xq3vT9{d4}bK2mW7yZ1pR@gitlab.com/team/app.git",
    "post alerts to https://hooks.slack.com/services/T04B2{d3}/B07QX{d3}/Zk81QwErTy77uI{d4}aSdF",
    "use Wug9CYx4Tb{d4}yLAHaY6kq5 as the api key",
]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]


def synthetic(rows: int, seed: int) -> pa.Array:
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        text = rng.choice(PLAIN)
        if rng.random() < 0.2:
            pii = rng.choice(PII).format(
                name=rng.choice(NAMES),
                n=rng.randint(1, 99),
                d2=f"{rng.randint(0, 99):02d}",
                d3=f"{rng.randint(0, 999):03d}",
                d4=f"{rng.randint(0, 9999):04d}",
                o=rng.randint(0, 255),
            )
            text = f"{text} {pii}"
        out.append(f"{text} (#{i})")
    return pa.array(out, pa.string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    content = synthetic(args.rows, args.seed)
    redact_pii(content.slice(0, 500))  # warm-up: regex compilation
    best, result = float("inf"), None
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = redact_pii(content)
        best = min(best, time.perf_counter() - started)
    assert result is not None
    print(f"redact_pii: {args.rows:,} messages in {best:.2f} s = {args.rows / best:,.0f} msg/s")
    print(f"spans per kind: { {k: v for k, v in result.counts.items()} }")


if __name__ == "__main__":
    main()
