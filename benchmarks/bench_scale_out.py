"""Scale-out of the clean stage: 1, 2 and 4 concurrent partitions, in process vs Celery workers.

    .venv/bin/python benchmarks/bench_scale_out.py                  # 10k conversations/day
    .venv/bin/python benchmarks/bench_scale_out.py --conversations 2000 --partitions 1,2

What a user runs, wall clock, from fresh processes: for N days at once, N concurrent
``dagster asset materialize -m llm_data_platform.definitions --select conversations_clean,
conversations_clean_dropped --partition D`` commands (one run per day), first with
``LDP_EXECUTOR=in_process`` (the step in the CLI's own process: the baseline), then with
``LDP_EXECUTOR=celery`` (the step a task on the Celery workers). Both against the same lake and
the same PostgreSQL instance (``deploy/dagster.postgres.yaml`` on a server the benchmark starts
on loopback), with a Redis broker and ``--workers`` workers of ``--concurrency`` processes
started before the figures (a deployment keeps its workers up) and warmed by one untimed
wave (a pool process loads the code location's repository once, at its first step); with
``--fresh-child`` each worker runs ``--max-tasks-per-child=1`` instead (a new pool process per
step, forked from the worker: no step shares a process, each pays the repository load).

Figures per N and mode: wall seconds from the first command to the last exit; throughput in
clean rows (messages kept) per second of wall; per-partition memory: the peak RSS of the
process that executed the step (in process: the CLI, ``os.wait4``'s ru_maxrss; on Celery: the
worker's pool process that ran it, VmHWM sampled every 50 ms from /proc, its peak reset
through /proc/PID/clear_refs before each wave; with N above the worker processes, a process
runs several of the wave's steps and reports their peak) and, on Celery, the CLI's own (the
orchestrating run process). Setup (data generation, staging,
the raw days) is not timed. Last line: ``scale_out: ...`` with the throughput of each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "benchmarks"))

import dagster as dg  # noqa: E402
from bench_scale import generate_day, link_into  # noqa: E402

from llm_data_platform_tests import postgres  # noqa: E402
from llm_data_platform_tests.celery_site import start_redis, start_workers, step_records  # noqa: E402
from llm_data_platform_tests.daemon import BIN, Site, _descendants, _table, site_env  # noqa: E402

FIRST_DAY = date(2026, 3, 2)
CLEAN = ("conversations_clean", "conversations_clean_dropped")
STAGE = ("conversations_batches", "conversations_batches_quarantine")
RAW = ("raw_conversations", "raw_conversations_quarantine")
MODES = ("in_process", "celery")


class PeakSampler(threading.Thread):
    """VmHWM of every descendant of the worker processes, sampled until stopped."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.peak_kb, self.done = roots, {}, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            table = _table()
            for root in self.roots:
                for pid in _descendants(root, table):
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue
                    for line in status.splitlines():
                        if line.startswith("VmHWM:"):
                            kb = int(line.split()[1])
                            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), kb)
            time.sleep(0.05)

    def reset(self) -> None:
        """Forget the peaks: VmHWM back to the current RSS (clear_refs 5) in every process."""
        table = _table()
        for root in self.roots:
            for pid in _descendants(root, table):
                with contextlib.suppress(OSError):
                    Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.peak_kb.clear()


def materialize(s: Site, select: tuple[str, ...], extra: list[str], mode: str, log: str):
    """A ``dagster asset materialize`` of the code location, started now in its own session."""
    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "llm_data_platform.definitions"]
    with open(s.root / f"{log}.log", "wb") as out:
        return subprocess.Popen(
            cmd + ["--select", ",".join(select), *extra],
            env=s.env | {"LDP_EXECUTOR": mode},
            cwd=s.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def setup(s: Site, days: list[str], conversations: int, cache: Path) -> int:
    """Landing files for ``days``, staged and compacted into raw days (not timed)."""
    events = 0
    for day in days:
        generated = generate_day(cache, date.fromisoformat(day), conversations, 10.0, 50_000)
        link_into(generated, Path(s.env["LDP_LANDING_DIR"]))
        events += generated.events
    for select, extra in ((STAGE, []), (RAW, ["--partition-range", f"{days[0]}...{days[-1]}"])):
        proc = materialize(s, select, extra, "in_process", f"setup-{select[0]}")
        assert proc.wait(timeout=3600) == 0, s.log(f"setup-{select[0]}")
    return events


def clean_rows(s: Site, days: list[str]) -> int:
    lake = Path(s.env["LDP_LAKE_ROOT"])
    files = [f for d in days for f in lake.glob(f"*/conversations_clean/dt={d}/*.parquet")]
    return sum(pq.read_metadata(f).num_rows for f in files)


def wave(s: Site, instance, days: list[str], mode: str, sampler: PeakSampler | None) -> dict:
    """N concurrent clean commands; wall, rows per second and memory per partition."""
    started_at = time.time()
    if sampler is not None:
        sampler.reset()
    t0 = time.perf_counter()
    procs = {
        d: materialize(s, CLEAN, ["--partition", d], mode, f"{mode}-{len(days)}-{d}") for d in days
    }
    cli_mb = {}
    for day, proc in procs.items():
        _, status, usage = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        assert code == 0, s.log(f"{mode}-{len(days)}-{day}")
        cli_mb[day] = usage.ru_maxrss / 1024
    wall = time.perf_counter() - t0
    step_mb = dict(cli_mb)
    if sampler is not None:
        time.sleep(0.3)  # the last pool process's final sample
        for day in days:
            after = datetime.fromtimestamp(started_at - 1, UTC)
            wanted = dg.RunsFilter(tags={"dagster/partition": day}, created_after=after)
            runs = instance.get_runs(wanted, limit=1)
            assert runs, day
            pids = [r.pid for r in step_records(instance, runs[0]) if r.step.startswith(CLEAN[0])]
            assert pids and all(r.worker for r in step_records(instance, runs[0])), day
            step_mb[day] = max(sampler.peak_kb.get(pid, 0) for pid in pids) / 1024
    rows = clean_rows(s, days)
    return {"wall": wall, "rows": rows, "step_mb": step_mb, "cli_mb": cli_mb}


def report(results: dict, partitions: list[int], args: argparse.Namespace) -> None:
    print(
        f"\nclean stage, {args.conversations:,} conversations/day; celery: {args.workers} "
        f"workers x {args.concurrency} process(es)"
        f"{', a fresh process per step' if args.fresh_child else ''}; {os.cpu_count()} cores"
    )
    print(
        f"{'N':>2} {'mode':<11} {'wall s':>7} {'rows':>9} {'rows/s':>8} "
        f"{'step RSS MB (mean/max)':>23} {'CLI RSS MB':>11}"
    )
    for n in partitions:
        for mode in MODES:
            r = results[(n, mode)]
            step = list(r["step_mb"].values())
            cli = max(r["cli_mb"].values())
            print(
                f"{n:>2} {mode:<11} {r['wall']:>7.1f} {r['rows']:>9,} "
                f"{r['rows'] / r['wall']:>8.0f} {sum(step) / len(step):>11.0f} / "
                f"{max(step):<9.0f} {cli:>11.0f}"
            )
    parts = [
        f"{mode}_{n}={results[(n, mode)]['rows'] / results[(n, mode)]['wall']:.0f}rows/s"
        for n in partitions
        for mode in MODES
    ]
    print("scale_out: " + " ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000, help="per day")
    parser.add_argument("--partitions", default="1,2,4", help="concurrent days per wave")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="processes per worker")
    parser.add_argument(
        "--fresh-child", action="store_true", help="a new worker pool process per step"
    )
    parser.add_argument("--cache-dir", help="keep generated landing files here, reuse them")
    args = parser.parse_args()
    partitions = sorted({int(n) for n in args.partitions.split(",")})
    days = [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(max(partitions))]
    root = Path(tempfile.mkdtemp(prefix="bench_scale_out_"))
    cache = Path(args.cache_dir) if args.cache_dir else root / "generated"
    results: dict = {}
    with postgres.postgres_server() as pg:
        os.environ.update(pg.env)  # this process reads the instance too
        home = root / "dagster_home"
        home.mkdir()
        shutil.copyfile(PROJECT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
        data = root / "data"
        s = Site(root, site_env(home, pg.env))
        s.env |= {
            "LDP_HOME": str(root),
            "LDP_DATA_DIR": str(data),
            "LDP_LAKE_ROOT": str(data / "lake"),
            "LDP_LANDING_DIR": str(data / "landing"),
            "LDP_CHROMA_PATH": str(data / "chroma"),
            "LDP_PARTITIONS_START": days[0],
            "HF_HUB_OFFLINE": "1",
            "GX_ANALYTICS_ENABLED": "False",
            "PYTHONWARNINGS": "ignore",
        }
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            s.env["LDP_CELERY_BROKER_URL"] = start_redis(s)
            t = time.perf_counter()
            events = setup(s, days, args.conversations, cache)
            print(
                f"setup: {len(days)} days, {events:,} events staged + raw in "
                f"{time.perf_counter() - t:.0f} s (not counted)",
                flush=True,
            )
            names = [f"w{i + 1}" for i in range(args.workers)]
            fresh = ["--max-tasks-per-child=1"] if args.fresh_child else []
            start_workers(s, names, args.concurrency, fresh)
            roots = [p.pid for p in s.procs[-args.workers :]]
            sampler = PeakSampler(roots)
            sampler.start()
            warm = days[: min(len(days), args.workers * args.concurrency)]
            r = wave(s, instance, warm, "celery", sampler)
            print(f"  warm-up: celery over {len(warm)} day(s), {r['wall']:.1f} s (not counted)")
            for n in partitions:
                for mode in MODES:
                    r = wave(s, instance, days[:n], mode, sampler if mode == "celery" else None)
                    results[(n, mode)] = r
                    print(f"  N={n} {mode}: {r['wall']:.1f} s, {r['rows']:,} rows", flush=True)
            sampler.done.set()
        finally:
            s.stop()
            instance.dispose()
    shutil.rmtree(root, ignore_errors=True)
    report(results, partitions, args)


if __name__ == "__main__":
    main()
