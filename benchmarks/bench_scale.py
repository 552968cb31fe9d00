"""Scale of the conversation path through the real assets, each step a fresh Dagster process.

    .venv/bin/python benchmarks/bench_scale.py            # 10k, 100k and 1M conversations/day
    .venv/bin/python benchmarks/bench_scale.py --quick    # 10k and 100k; under 10 minutes
    .venv/bin/python benchmarks/bench_scale.py --sizes 10000,100000 --cache-dir /tmp/bench_gen

Measured where a user waits: every step is ``dagster asset materialize -m llm_data_platform``
in a subprocess, against a lake, landing folder and DAGSTER_HOME in a temp folder. The run
executes in process (``LDP_EXECUTOR=in_process``, or the run config ``execution: {config:
{in_process: {}}}`` when the code location has Dagster's default executor), so the child the
benchmark waits for with ``os.wait4`` is the one doing the work: its wall time and peak RSS
(ru_maxrss) are the step's (checked: the executor's pid must be the child's). The asset checks
of the selected assets run in the same run and are included.

Data: one day of synthetic chat traffic per size, from the package's own ``SyntheticChat``
(sessions of 2-6 messages, most with a rating: ~4.2 events per conversation, 0.1% malformed
lines), each message made distinct by five appended words (the producer has 24 texts; real
traffic rarely repeats, and cleaning and near-dedup pay per distinct text). Written as landing
files of ``--file-minutes`` of traffic each (at most ``--file-max-events`` lines), stamped with
their arrival time on that day. Generation is timed separately and not counted;
``--cache-dir`` keeps the generated files for the next invocation.

Per size: stage (conversations_batches + quarantine, i.e. ``stage_conversations``), raw
(raw_conversations + quarantine for the day), conversations_clean, training_examples (after
an untimed retrieval_eval_set). Then the growth of each asset's time per 10x of traffic (goal
<= 11x). History: the raw step of day D (10k conversations) in a lake holding 1 prior day vs
30 prior days, already staged and compacted (goal ratio <= 1.2, best of 3 each). CLI: the wall
time of raw + clean + training of the 10k day with the code location's default settings
(whatever executor it has), after staging, from a fresh process.

Last line: ``scale: history_ratio=X rss_1m_mb=Y growth_10x=Z cli_small_s=W`` (rss_1m_mb is
extrapolated linearly from 10k -> 100k with ``--quick``, and says so; a failed figure is nan).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from llm_data_platform.streaming.producer import SyntheticChat

PROJECT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
DAY = date(2026, 3, 2)  # the benchmark day D (a Monday); history days are the 30 before it
HISTORY_DAYS = 30
CLEAN = "conversations_clean"
TRAINING = "training_examples"
STAGE = ("conversations_batches", "conversations_batches_quarantine")
RAW = ("raw_conversations", "raw_conversations_quarantine")
ASSET_STEPS = (("stage", STAGE), ("raw", RAW), (CLEAN, (CLEAN,)), (TRAINING, (TRAINING,)))
MALFORMED = 0.001  # share of bad lines (broken JSON, wrong types, ...): the quarantine path
_TAIL = (
    "also list dict file loop error value string number function class module test data "
    "server query table index cache thread process memory python code example output input "
    "async await import package lambda tuple set slice iterator generator decorator context "
    "manager exception"
)
TAIL_WORDS = tuple(_TAIL.split())  # appended to messages to make them distinct
EVAL = ("retrieval_eval_set",)
CLI = (*RAW, CLEAN, TRAINING)
SELECTIONS = (STAGE, RAW, (CLEAN,), (TRAINING,), EVAL, CLI)
NOTED: set[tuple[str, ...]] = set()
# a failure that a changed code location explains: read it again, run once more
PROBE_AGAIN = ("root:execution", "DagsterInvalidSubsetError")
IN_RUN = re.compile(r"Finished steps in process \(pid: (\d+)\) in (\S+)")
DURATION = re.compile(r"([\d.]+)(ms|h|m|s)")
UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
IN_PROCESS = "execution:\n  config:\n    in_process: {}\n"
# Decontamination needs an evaluation set; these questions share no 8-word run with the
# synthetic chats, so the examples are kept (and the check is still paid for).
EVAL_QUESTIONS = (
    ("How do I create a virtual environment with venv?", "python-library/venv"),
    ("What does functools.lru_cache do to a function's return values?", "python-library/functools"),
    ("How can I parse command line options with argparse subcommands?", "python-library/argparse"),
    ("Which exception is raised when a dictionary key is missing?", "python-library/exceptions"),
    ("How do I run a coroutine from synchronous code with asyncio?", "python-library/asyncio"),
    ("What is the difference between shallow and deep copies?", "python-library/copy"),
)


# ---- data --------------------------------------------------------------------------------------
@dataclass
class Generated:
    folder: Path  # <folder>/conversations/synthetic/<run>/*.jsonl
    conversations: int
    events: int
    files: int
    seconds: float


def _distinct(line: bytes, rng: random.Random) -> bytes:
    """A message made distinct by a few words at its end: real traffic rarely repeats whole
    messages (the producer has 24 texts), and cleaning and near-dedup cost per distinct text."""
    try:
        event = json.loads(line)
    except ValueError:  # a malformed line stays as the producer wrote it
        return line
    if not isinstance(event, dict) or event.get("type") != "message":
        return line
    if not isinstance(event.get("content"), str):
        return line
    event["content"] += f" ({' '.join(rng.choices(TAIL_WORDS, k=5))})"
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def _write_file(path: Path, lines: list[bytes], arrived: datetime) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: never listed as a landing file
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    os.replace(tmp, path)
    ts = arrived.timestamp()
    os.utime(path, (ts, ts))


def generate_day(
    cache: Path, day: date, conversations: int, file_minutes: float, file_max_events: int
) -> Generated:
    """One day of ``conversations`` chat sessions as landing files (reused when cached)."""
    run_id = f"bench{day:%Y%m%d}n{conversations}"
    folder = cache / f"{run_id}-{file_minutes:g}min-{file_max_events}"
    marker = folder / "generated.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        return Generated(folder, info["conversations"], info["events"], info["files"], 0.0)
    shutil.rmtree(folder, ignore_errors=True)
    target = folder / "conversations" / "synthetic" / run_id
    target.mkdir(parents=True)
    started = time.perf_counter()
    seed = day.toordinal() * 31 + conversations
    chat = SyntheticChat(seed=seed, run_id=run_id, malformed_fraction=MALFORMED)
    rng = random.Random(seed)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    last_second = 86_399
    window = max(1.0, file_minutes * 60)
    events = files = 0
    pending: list[bytes] = []
    window_end = window

    def flush(at_second: float) -> None:
        nonlocal files, pending
        if pending:
            files += 1
            arrived = midnight + timedelta(seconds=min(at_second + 30, last_second))
            _write_file(target / f"{files:06d}.jsonl", pending, arrived)
            pending = []

    while chat.conversations < conversations:
        second = last_second * chat.conversations / conversations
        if second >= window_end:
            flush(window_end)
            window_end = (second // window + 1) * window
        now = midnight + timedelta(seconds=second)
        lines = chat.next_lines(min(64, file_max_events - len(pending)), now)
        pending.extend(_distinct(line, rng) for _key, line in lines)
        events += len(lines)
        if len(pending) >= file_max_events:
            flush(second)
    flush(min(window_end, last_second))
    seconds = time.perf_counter() - started
    info = {"conversations": chat.conversations, "events": events, "files": files}
    marker.write_text(json.dumps(info))
    return Generated(folder, chat.conversations, events, files, seconds)


def link_into(generated: Generated, landing: Path) -> None:
    """Hard-link (or copy) generated landing files into a lake's landing folder."""
    for src in sorted(generated.folder.rglob("*.jsonl")):
        dst = landing / src.relative_to(generated.folder)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


# ---- steps -------------------------------------------------------------------------------------
@dataclass
class Step:
    label: str
    seconds: float
    rss_mb: float
    ok: bool
    stderr_tail: str = ""
    in_run: float = math.nan  # the run's steps alone ("Finished steps in process ... in X")


class Lake:
    """A temp LDP_HOME: lake, landing, Chroma and DAGSTER_HOME; steps run against it."""

    def __init__(self, root: Path, partitions_start: date, timeout: float) -> None:
        self.root = root
        self.timeout = timeout
        self.landing = root / "data" / "landing"
        dagster_home = root / "dagster_home"
        dagster_home.mkdir(parents=True)
        shutil.copyfile(PROJECT / "dagster.yaml", dagster_home / "dagster.yaml")
        self.in_process = root / "in_process.yaml"
        self.in_process.write_text(IN_PROCESS)
        self.logs = root / "logs"
        self.logs.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LDP_", "DAGSTER_"))}
        env.update(
            LDP_HOME=str(root),
            LDP_DATA_DIR=str(root / "data"),
            LDP_LAKE_ROOT=str(root / "data" / "lake"),
            LDP_LANDING_DIR=str(self.landing),
            LDP_CHROMA_PATH=str(root / "data" / "chroma"),
            LDP_PARTITIONS_START=partitions_start.isoformat(),
            DAGSTER_HOME=str(dagster_home),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            GX_ANALYTICS_ENABLED="False",
            PYTHONWARNINGS="ignore",
        )
        self.default_env = dict(env)  # the code location's own settings (the CLI figure)
        # measured steps: in one process (LDP_EXECUTOR: the code location's executor switch)
        self.env = {**env, "LDP_EXECUTOR": "in_process"}
        self.n = 0
        eval_file = self.landing / "eval" / "questions.jsonl"  # what retrieval_eval_set reads
        eval_file.parent.mkdir(parents=True, exist_ok=True)
        eval_file.write_text(
            "".join(json.dumps({"question": q, "doc_id": d}) + "\n" for q, d in EVAL_QUESTIONS)
        )
        self.executor, self.selections = "unknown", {}
        self.probe()

    def probe(self) -> None:
        """The code location as it is now (others may be editing it): the executor of its
        asset job, and what each selection must include (a multi-asset that cannot be
        subset is selected whole, as ``required_multi_asset_neighbors`` says)."""
        self.executor = self.probe_executor(self.env)
        code = (
            "import json, sys; import dagster as dg\n"
            "from llm_data_platform.definitions import defs\n"
            "g = defs.resolve_asset_graph()\n"
            "for keys in json.loads(sys.argv[1]):\n"
            "    sel = dg.AssetSelection.assets(*keys).required_multi_asset_neighbors()\n"
            "    extra = sorted(k.to_user_string() for k in sel.resolve(g) - "
            "{dg.AssetKey(k) for k in keys})\n"
            "    print(json.dumps([keys, extra]))\n"
        )
        wanted = json.dumps([list(k) for k in SELECTIONS])
        out = subprocess.run(
            [sys.executable, "-c", code, wanted],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            return  # the run itself will fail and say why
        for line in out.stdout.splitlines():
            if line.startswith("[["):
                keys, extra = json.loads(line)
                self.selections[tuple(keys)] = (*keys, *extra)

    def probe_executor(self, env: dict[str, str]) -> str:
        """Name of the executor of the code location's asset job, under ``env``."""
        code = (
            "from llm_data_platform.definitions import defs;"
            "print(defs.resolve_implicit_global_asset_job_def().executor_def.name)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
        lines = out.stdout.strip().splitlines()
        return lines[-1] if out.returncode == 0 and lines else "unknown"

    def selection(self, select: tuple[str, ...]) -> tuple[str, ...]:
        full = self.selections.get(select, select)
        if full != select and select not in NOTED:
            NOTED.add(select)
            added = ",".join(full[len(select) :])
            print(f"  (selecting {','.join(select)} takes {added} too: one multi-asset)")
        return full

    def run(
        self,
        label: str,
        select: tuple[str, ...],
        partition: str | None = None,
        partition_range: str | None = None,
        in_process: bool = True,
    ) -> Step:
        """One ``dagster asset materialize`` in a fresh process: wall time, peak RSS.

        ``in_process``: steps in the measured process (run config when the executor is
        Dagster's default multi-or-in-process one); else the code location's defaults."""
        step = self._run(label, select, partition, partition_range, in_process)
        if not step.ok and any(m in step.stderr_tail for m in PROBE_AGAIN):
            self.probe()  # the code location changed under us
            print(f"  (code location re-read: executor {self.executor}; {label} again)")
            step = self._run(label, select, partition, partition_range, in_process)
        return step

    def _run(
        self,
        label: str,
        select: tuple[str, ...],
        partition: str | None,
        partition_range: str | None,
        in_process: bool,
    ) -> Step:
        cmd = [DAGSTER, "asset", "materialize", "-m", "llm_data_platform"]
        cmd += ["--select", ",".join(self.selection(select))]
        if partition:
            cmd += ["--partition", partition]
        if partition_range:
            cmd += ["--partition-range", partition_range]
        if in_process and self.executor == "multi_or_in_process_executor":
            cmd += ["-c", str(self.in_process)]
        self.n += 1
        log = self.logs / f"{self.n:03d}-{label.replace(' ', '_')}.log"
        with open(log, "wb") as out:
            started = time.perf_counter()
            proc = subprocess.Popen(
                cmd,
                env=self.env if in_process else self.default_env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout ends it and its steps
            )
            timer = threading.Timer(self.timeout, _kill_group, (proc.pid,))
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:  # Ctrl-C: the child has its own session, end it too
                _kill_group(proc.pid)
                proc.wait()
                raise
            finally:
                timer.cancel()
            elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss_mb = usage.ru_maxrss / 1024  # KB on Linux
        text = log.read_text(errors="replace")
        if proc.returncode == 0:
            in_run, pid = _in_run(text)
            if in_process and pid != proc.pid:
                print(
                    f"  !! {label}: the steps did not run in the measured process "
                    f"(executor {self.executor}): its peak RSS misses them",
                    flush=True,
                )
            return Step(label, elapsed, rss_mb, True, in_run=in_run)
        tail = text.splitlines()[-25:]
        reason = f"exit {proc.returncode}"
        if proc.returncode < 0:
            reason = f"killed by signal {-proc.returncode}"
            if elapsed >= self.timeout:
                reason += f" at the {self.timeout:.0f} s --step-timeout"
        print(f"  !! {label} failed ({reason}, {elapsed:.1f} s); log {log}, last lines:")
        print("\n".join(f"     | {line}" for line in tail), flush=True)
        return Step(label, math.nan, math.nan, False, "\n".join(tail))


def _in_run(log: str) -> tuple[float, int | None]:
    """(seconds, pid) the in-process executor reports for the steps (format_duration)."""
    found = IN_RUN.findall(log)
    if not found:
        return math.nan, None
    pid, duration = found[-1]
    return sum(float(n) * UNIT[u] for n, u in DURATION.findall(duration)), int(pid)


def lake_rows(lake: Lake, table: str, day: str) -> int:
    files = list((lake.root / "data" / "lake").glob(f"*/{table}/dt={day}/*.parquet"))
    return sum(pq.read_metadata(f).num_rows for f in files) if files else -1


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the group the benchmark's own child leads


# ---- figures -----------------------------------------------------------------------------------
def fmt(value: float, spec: str = ".2f") -> str:
    return "nan" if value is None or math.isnan(value) else format(value, spec)


def per_10x(t_small: float, t_big: float, n_small: int, n_big: int) -> float:
    """Time growth normalised to a 10x step of traffic."""
    if not (t_small > 0 and t_big > 0) or n_big <= n_small:
        return math.nan
    return (t_big / t_small) ** (1 / math.log10(n_big / n_small))


def best(steps: list[Step]) -> float:
    ok = [s.seconds for s in steps if s.ok]
    return min(ok) if ok else math.nan


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k only; < 10 min")
    parser.add_argument("--sizes", help="conversations per day, comma-separated")
    parser.add_argument("--history-size", type=int, default=10_000, help="conversations on D")
    parser.add_argument(
        "--history-day-size", type=int, help="conversations per prior day (2k quick, 10k full)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="history runs, best of")
    parser.add_argument("--file-minutes", type=float, default=10.0)
    parser.add_argument("--file-max-events", type=int, default=50_000)
    parser.add_argument("--cache-dir", help="keep generated landing files here, reuse them")
    parser.add_argument("--step-timeout", type=float, default=3600.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp folders")
    args = parser.parse_args()

    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    )
    sizes = sorted(set(sizes))
    history_day_size = args.history_day_size or (2_000 if args.quick else 10_000)
    if date.today() < DAY:
        sys.exit(f"the benchmark day {DAY} is in the future on this clock")

    t_start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    cache = Path(args.cache_dir) if args.cache_dir else root / "generated"
    cache.mkdir(parents=True, exist_ok=True)
    print(
        f"bench_scale: sizes {', '.join(human(s) for s in sizes)} conversations/day; history "
        f"{HISTORY_DAYS} prior days x {human(history_day_size)}, D = {human(args.history_size)}; "
        f"{os.cpu_count()} cores; temp {root}",
        flush=True,
    )
    try:
        results, events_of = run_sizes(args, sizes, root, cache)
        cli_small_s = results.pop("cli_small", math.nan)
        history_ratio = run_history(args, history_day_size, root, cache)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            if args.cache_dir is None:
                shutil.rmtree(cache, ignore_errors=True)

    # ---- table and growth
    print(
        "\nwall s: the fresh `dagster asset materialize` process, start to exit (what the user "
        "waits for);\nin-run s: its steps alone as the in-process executor reports them (the "
        "rest: interpreter,\nimports, code location load, run bookkeeping); peak RSS: that "
        "process's ru_maxrss (os.wait4)."
    )
    print(
        f"{'size':>6} {'events':>10} {'asset':<20} {'wall s':>8} {'in-run s':>9} "
        f"{'peak RSS MB':>12}"
    )
    for size in sizes:
        for name, _ in ASSET_STEPS:
            step = results[(size, name)]
            print(
                f"{human(size):>6} {events_of[size]:>10,} {name:<20} {fmt(step.seconds):>8} "
                f"{fmt(step.in_run):>9} {fmt(step.rss_mb, '.0f'):>12}"
            )
    growths: list[float] = []
    if len(sizes) > 1:
        print("\ntime growth per 10x of traffic (goal <= 11x):")
        for small, big in zip(sizes, sizes[1:], strict=False):
            parts = []
            for name, _ in ASSET_STEPS:
                g = per_10x(
                    results[(small, name)].seconds, results[(big, name)].seconds, small, big
                )
                growths.append(g)
                parts.append(f"{name} {fmt(g)}x")
            print(f"  {human(small)} -> {human(big)}: " + ", ".join(parts))
    growth_10x = max_or_nan(growths)  # a failed step: the max is unknown
    print(f"  max growth per 10x: {fmt(growth_10x)}x")

    rss_1m, rss_note = rss_at_1m(results, sizes, args.quick)
    print(f"peak RSS at 1M conversations/day: {fmt(rss_1m, '.0f')} MB{rss_note}")
    print(
        f"history: raw of D after {HISTORY_DAYS} prior days / after 1: {fmt(history_ratio)} "
        "(goal <= 1.2)"
    )
    print(f"total benchmark time: {time.perf_counter() - t_start:.0f} s")
    extrapolated = "(extrapolated)" if rss_note else ""
    print(
        f"scale: history_ratio={fmt(history_ratio)} rss_1m_mb={fmt(rss_1m)}{extrapolated} "
        f"growth_10x={fmt(growth_10x)} cli_small_s={fmt(cli_small_s)}"
    )


def run_sizes(
    args: argparse.Namespace, sizes: list[int], root: Path, cache: Path
) -> tuple[dict, dict[int, int]]:
    results: dict = {}
    events_of: dict[int, int] = {}
    day = DAY.isoformat()
    for size in sizes:
        gen = generate_day(cache, DAY, size, args.file_minutes, args.file_max_events)
        events_of[size] = gen.events
        origin = f"generated in {gen.seconds:.1f} s (not counted)" if gen.seconds else "cached"
        print(
            f"\n[{human(size)}] {gen.conversations:,} conversations, {gen.events:,} events "
            f"({gen.events / gen.conversations:.2f} per conversation), {gen.files} landing "
            f"files; {origin}",
            flush=True,
        )
        lake = Lake(root / f"size_{size}", DAY, args.step_timeout)
        link_into(gen, lake.landing)
        for name, select in ASSET_STEPS:
            if name == TRAINING:
                prep = lake.run("retrieval_eval_set", EVAL)
                print(f"  retrieval_eval_set (untimed): {'ok' if prep.ok else 'FAILED'}")
            step = lake.run(name, select, partition=None if name == "stage" else day)
            results[(size, name)] = step
            print(
                f"  {name:<20} {fmt(step.seconds):>8} s  (in-run {fmt(step.in_run)} s)  "
                f"{fmt(step.rss_mb, '.0f'):>6} MB",
                flush=True,
            )
        counts = {t: lake_rows(lake, t, day) for t in (RAW[0], RAW[1], CLEAN, TRAINING)}
        print("  rows of the day: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
        if size == sizes[0]:
            # what a user types, default executor (a process per step), after staging
            executor = lake.probe_executor(lake.default_env)
            cli = lake.run("cli", CLI, partition=day, in_process=False)
            results["cli_small"] = cli.seconds
            print(
                f"  CLI, default settings (executor {executor}), "
                f"{','.join(lake.selection(CLI))} ({gen.events:,} events): "
                f"{fmt(cli.seconds)} s",
                flush=True,
            )
        if not args.keep:
            shutil.rmtree(lake.root, ignore_errors=True)
    return results, events_of


def run_history(args: argparse.Namespace, day_size: int, root: Path, cache: Path) -> float:
    """Raw of day D in a lake with 1 prior day and in one with 30 (both staged and compacted
    beforehand, untimed); runs alternate between the two so load on the machine hits both
    alike; best of ``repeat`` each."""
    first = DAY - timedelta(days=HISTORY_DAYS)
    day = DAY.isoformat()
    started = time.perf_counter()
    size, minutes, max_events = args.history_size, args.file_minutes, args.file_max_events
    gens = {DAY: generate_day(cache, DAY, size, minutes, max_events)}
    for n in range(1, HISTORY_DAYS + 1):
        d = DAY - timedelta(days=n)
        gens[d] = generate_day(cache, d, day_size, minutes, max_events)
    prior_events = sum(g.events for d, g in gens.items() if d != DAY)
    print(
        f"\n[history] D = {day}: {gens[DAY].events:,} events; {HISTORY_DAYS} prior days: "
        f"{prior_events:,} events; generated in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    lakes: dict[int, Lake] = {}
    ready: dict[int, bool] = {}
    for prior_days in (1, HISTORY_DAYS):
        t0 = time.perf_counter()
        lake = lakes[prior_days] = Lake(root / f"history_{prior_days}d", first, args.step_timeout)
        prior = [DAY - timedelta(days=n) for n in range(1, prior_days + 1)]
        for d in (*prior, DAY):
            link_into(gens[d], lake.landing)
        span = f"{min(prior).isoformat()}...{max(prior).isoformat()}"
        ok = lake.run(f"history {prior_days}d stage", STAGE).ok
        ready[prior_days] = ok and lake.run(f"history {prior_days}d compact", RAW, None, span).ok
        print(
            f"  lake with {prior_days:>2} prior day(s) staged and compacted in "
            f"{time.perf_counter() - t0:.1f} s (untimed)",
            flush=True,
        )
    runs: dict[int, list[Step]] = {1: [], HISTORY_DAYS: []}
    for i in range(args.repeat):
        order = (1, HISTORY_DAYS) if i % 2 == 0 else (HISTORY_DAYS, 1)
        for prior_days in order:
            if ready[prior_days]:
                step = lakes[prior_days].run(f"raw D {prior_days}d", RAW, partition=day)
                runs[prior_days].append(step)
    wall: dict[int, float] = {}
    for prior_days, steps in runs.items():
        wall[prior_days] = best(steps)
        in_run = min((s.in_run for s in steps if s.ok), default=math.nan)
        print(
            f"  raw of D with {prior_days:>2} prior day(s): "
            + ", ".join(fmt(s.seconds) for s in steps)
            + f" s (best {fmt(wall[prior_days])} s; in-run best {fmt(in_run)} s)",
            flush=True,
        )
    if not args.keep:
        for lake in lakes.values():
            shutil.rmtree(lake.root, ignore_errors=True)
    return wall[HISTORY_DAYS] / wall[1]


def rss_at_1m(results: dict, sizes: list[int], quick: bool) -> tuple[float, str]:
    """Peak RSS of the largest step at 1M conversations/day: measured when 1M ran; with
    ``--quick``, linear from the two largest sizes measured (10k -> 100k) of the asset with the
    largest peak. A failed step makes it nan."""
    target = 1_000_000
    if target in sizes:
        return max_or_nan(results[(target, name)].rss_mb for name, _ in ASSET_STEPS), ""
    if not quick:
        return math.nan, " (1M not run; extrapolated only with --quick)"
    if len(sizes) < 2:
        return math.nan, " (needs two sizes to extrapolate)"
    small, big = sizes[-2], sizes[-1]
    peaks = {n: results[(big, n)].rss_mb for n, _ in ASSET_STEPS}
    if any(math.isnan(v) for v in peaks.values()):
        return math.nan, " (a step failed; not extrapolated)"
    name = max(peaks, key=peaks.__getitem__)
    r_small, r_big = results[(small, name)].rss_mb, peaks[name]
    slope = (r_big - r_small) / (big - small)
    return r_big + slope * (target - big), (
        f" (extrapolated linearly from {human(small)} -> {human(big)} of {name}: "
        f"{fmt(r_small, '.0f')} -> {fmt(r_big, '.0f')} MB)"
    )


def max_or_nan(values) -> float:
    values = list(values)
    return math.nan if not values or any(math.isnan(v) for v in values) else max(values)


if __name__ == "__main__":
    main()
