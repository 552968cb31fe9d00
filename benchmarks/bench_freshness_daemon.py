"""Freshness through the real daemon: a knowledge-base edit → its text in the live index.

What a user of `make dev` waits for after saving a page and running `ldp ingest-docs`: the
daemon's landing sensor sees the landed file, named with its day, and asks for one run of
``sync_documents_job``: staging, then the day's clean, chunks, embeddings and the next index
version, gated and promoted. (A file without a day goes through ``stage_documents_job`` and
``raw_documents_after_staging_sensor``'s ``ingest_documents_job``, also timed when seen.)
Each edit appends a unique sentence to one page of a small knowledge base; the latency is
from the saved edit (`ldp ingest-docs` included) to the end of the first successful run
promoting an index created after it. Hops are read
back from the instance: the sensor's wait before each run, each run's queue time and duration.

    .venv/bin/python benchmarks/bench_freshness_daemon.py --edits 10

Everything lives in a temp folder (the project's dagster.yaml, a lake, Chroma) removed
afterwards; the daemon and its processes are this script's own and are stopped by their ids.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from llm_data_platform_tests.conftest import platform_env  # noqa: E402
from llm_data_platform_tests.daemon import (  # noqa: E402
    BIN,
    Site,
    prepared_instance,
    project_site,
    site_env,
)

JOBS = ("stage_documents_job", "sync_documents_job", "ingest_documents_job")
PROMOTING = JOBS[1:]  # runs that end with the index promoted
TOPICS = ("logging", "queues", "retries", "caching", "metrics", "tracing", "quotas", "backups")


def _page(topic: str, extra: str = "") -> str:
    body = " ".join(f"The {topic} service keeps setting {i} in its table." for i in range(8))
    return f"# {topic.title()}\n\n{body}\n{extra}"


def _ingest(kb: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(BIN / "ldp"), "ingest-docs", str(kb)], env=env, capture_output=True, timeout=300
    )
    if done.returncode:
        sys.exit(done.stderr.decode()[-2000:])


def _runs_since(instance: dg.DagsterInstance, job: str, since: float) -> list:
    records = instance.get_run_records(dg.RunsFilter(job_name=job))
    return sorted(
        (r for r in records if r.create_timestamp.timestamp() >= since),
        key=lambda r: r.create_timestamp,
    )


def _wait(instance: dg.DagsterInstance, since: float, timeout: float) -> dict[str, float]:
    """Hops of the first complete sync after ``since``: sensor waits, queue, run times."""
    deadline = time.monotonic() + timeout
    while True:
        synced = sorted(
            (
                r
                for job in PROMOTING
                for r in _runs_since(instance, job, since)
                if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            ),
            key=lambda r: r.end_time,
        )
        if synced:
            break
        if time.monotonic() > deadline:
            sys.exit(f"no index sync within {timeout} s of an edit")
        time.sleep(0.5)
    hops: dict[str, float] = {"total": synced[0].end_time - since}
    previous_end = since
    for job in JOBS:
        runs = _runs_since(instance, job, since)
        if not runs:
            continue
        run = runs[0]
        created = run.create_timestamp.timestamp()
        hops[f"{job}: sensor wait"] = created - previous_end
        hops[f"{job}: queued"] = (run.start_time or created) - created
        hops[f"{job}: ran"] = (run.end_time or created) - (run.start_time or created)
        previous_end = run.end_time or created
    return hops


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument(
        "--sensor-interval", type=int, help="documents landing sensor, s (default: shipped)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per sync, s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ldp-fresh-") as folder:
        root = Path(folder)
        env = platform_env(root)
        if args.sensor_interval is not None:
            env["LDP_DOCUMENTS_SENSOR_INTERVAL_SECONDS"] = str(args.sensor_interval)
        workspace = project_site(root, env, PROJECT / "dagster.yaml")
        home = Path(env["DAGSTER_HOME"])
        kb = root / "kb"
        kb.mkdir()
        for topic in TOPICS:
            (kb / f"{topic}.md").write_text(_page(topic))
        env = site_env(home, env)
        instance = prepared_instance(home)
        site = Site(root, env)
        try:
            started = time.time()
            _ingest(kb, env)
            site.start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], "daemon")
            first = _wait(instance, started, args.timeout)
            print(f"first build through the daemon: {first['total']:.1f} s", flush=True)
            latencies, hops = [], []
            for i in range(args.edits):
                topic = TOPICS[i % len(TOPICS)]
                (kb / f"{topic}.md").write_text(_page(topic, f"Edit {i}: flag zq{i} is new.\n"))
                edited = time.time()  # the page is saved; `ldp ingest-docs` is part of the wait
                _ingest(kb, env)
                one = _wait(instance, edited, args.timeout)
                latencies.append(one["total"])
                hops.append(one)
                print(f"edit {i + 1}/{args.edits}: {one['total']:.1f} s", flush=True)
        finally:
            site.stop()
    print("\nper hop, median over edits (s):")
    for name in hops[0]:
        if name != "total":
            print(f"  {name:36s} {statistics.median(h.get(name, 0.0) for h in hops):6.1f}")
    p50, p95 = _pct(latencies, 0.5), _pct(latencies, 0.95)
    print(f"freshness_daemon: edits={len(latencies)} p50_s={p50:.1f} p95_s={p95:.1f} goal_p95_s=15")


if __name__ == "__main__":
    main()
