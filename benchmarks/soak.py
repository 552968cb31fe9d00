"""Soak: a sustained chat stream through the real ``dagster-daemon`` for ``--minutes``, then a
bounded drain and the verdicts (every event in raw exactly once, clean reconciles, the live
index equals its manifest), with throughput, latency, memory and run counts.

    .venv/bin/python benchmarks/soak.py --minutes 1            # a quick look, ~4 min
    .venv/bin/python benchmarks/soak.py                        # 10 min at 50 events/s
    .venv/bin/python benchmarks/soak.py --source kafka         # librdkafka's mock cluster

Everything lives in a temp folder (removed afterwards unless ``--keep``): a DAGSTER_HOME with
the project's ``dagster.yaml``, the lake, the landing folder, Chroma, and a small knowledge
base. The daemon is started as ``llm_data_platform_tests/test_daemon_ingest.py`` starts it
(its own session, only this soak's LDP_/DAGSTER_ variables, storage created beforehand), with
the project's default sensor interval (``--sensor-interval``). Its sensors do all the work:
landing (or Kafka) sensors → staging runs → ``raw_conversations_after_staging_sensor`` →
``ingest_conversations_job`` (raw + clean); a few knowledge-base edits (``ldp ingest-docs``'s
``sync_directory``) → document staging → ``ingest_documents_job`` (which ends with the index
build, its gate and the promotion). Network: loopback only (the daemon's
gRPC code server, and the mock Kafka brokers of ``--source kafka``).

Definitions of the figures:
- events/s produced: events written by ``produce_synthetic`` / its wall time. Landed in raw:
  events in raw / (the time the last of them was first in raw - the producer's start).
- latency, per event, from its arrival (raw's ``arrived_at``: the landing file's mtime, or the
  Kafka message timestamp) to the materialization of its day's ``conversations_clean`` (and
  ``raw_conversations``) in the first run whose raw step started after the event's micro-batch
  file was written (its mtime). A raw step lists the day's micro-batches when it starts, so
  that run is the first whose clean partition holds the event (or names it in
  ``conversations_clean_dropped``); checked against each run's recorded raw row count.
- peak RSS: ``/proc`` of the daemon's process tree (its session and descendants: the daemon,
  the gRPC code server, every run worker), sampled every 0.5 s. ``peak_rss_mb`` on the last
  line is the largest sum over the tree at one sample. CPU seconds per role: utime + stime at
  each process's last sample (a lower bound: up to 0.5 s of a process's end is missed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from llm_data_platform_tests.conftest import platform_env  # noqa: E402
from llm_data_platform_tests.daemon import process_cmdline, process_rss  # noqa: E402

KB_PREFIX = "soak-kb"
KB_TOPICS = ("assert", "del", "return", "global", "nonlocal", "yield", "while", "break")
EDITS = (("modify", "assert"), ("add", "lambda"), ("modify", "while"), ("delete", "break"))
KAFKA_TOPIC = "soak.conversations"
QUIET = logging.getLogger("soak.librdkafka")
QUIET.setLevel(logging.CRITICAL)
STOP_SECONDS = 30


def say(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


# ---- the daemon's process tree and its memory ---------------------------------------------------
def _stat(pid: int) -> tuple[int, int, int, int] | None:
    """(ppid, session id, start time, CPU ticks used) of a live process; None when gone or a
    zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[3]), int(fields[19]), int(fields[11]) + int(fields[12])


def role(cmdline: str) -> str:
    if "dagster-daemon" in cmdline:
        return "daemon"
    if " api grpc" in cmdline or "code-server" in cmdline:
        return "code server"
    if "spawn_main" in cmdline or "execute_run" in cmdline or "execute_step" in cmdline:
        return "run worker"  # the code server starts runs with multiprocessing's spawn
    if "resource_tracker" in cmdline:
        return "mp tracker"
    if "poll_compute_logs" in cmdline or "watch_orphans" in cmdline or cmdline.startswith("tail "):
        return "log tailer"  # Dagster's compute-log capture, a few per run
    return "other"


class Family:
    """The daemon and every process it started (same session, or a descendant), sampled."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root = root
        self.interval = interval
        self.seen: dict[int, int] = {}  # pid -> start time (guards against pid reuse)
        self.peak: dict[int, int] = {}
        self.cpu: dict[int, int] = {}  # pid -> CPU ticks at its last sample (a lower bound)
        self.names: dict[int, str] = {}
        self.peak_total = 0
        self.samples = 0
        self.started = self.stopped = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def members(self) -> list[int]:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat(int(entry))) is not None:
                stats[int(entry)] = stat
        found = {pid for pid, (_, sid, _, _) in stats.items() if sid == self.root}
        found.add(self.root)
        grew = True
        while grew:  # descendants that left the session
            grew = False
            for pid, (ppid, _, _, _) in stats.items():
                if ppid in found and pid not in found:
                    found.add(pid)
                    grew = True
        live = [pid for pid in found if pid in stats]
        for pid in live:
            self.seen.setdefault(pid, stats[pid][2])
            self.cpu[pid] = stats[pid][3]
        return live

    def sample(self) -> None:
        total = 0
        for pid in self.members():
            rss = process_rss(pid)
            total += rss
            if pid not in self.names:
                self.names[pid] = process_cmdline(pid)
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a process vanishing mid-sample
                self.sample()

    def start(self) -> None:
        self.started = time.time()
        self._thread.start()

    def stop(self) -> None:
        self.stopped = time.time()
        self._stop.set()
        self._thread.join(timeout=10)

    def alive(self) -> list[int]:
        """Processes of the family that still run (the same process, not a reused pid)."""
        out = []
        for pid, started in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[2] == started:
                out.append(pid)
        return out

    def peaks_by_role(self) -> dict[str, tuple[int, int, float, str]]:
        """role -> (peak RSS of one process, number of processes, CPU seconds of them all,
        the largest one's command)."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, tuple[int, int, float, str]] = {}
        for pid, rss in self.peak.items():
            name = self.names.get(pid, "")
            r = role(name)
            peak, n, cpu, example = out.get(r, (-1, 0, 0.0, ""))
            cpu += self.cpu.get(pid, 0) / tick
            out[r] = (rss, n + 1, cpu, name) if rss > peak else (peak, n + 1, cpu, example)
        return out


def stop_daemon(daemon: subprocess.Popen, family: Family) -> None:
    """SIGTERM to the daemon, SIGKILL after STOP_SECONDS; then every process of its family
    still alive is signalled by its pid (SIGTERM, then SIGKILL)."""
    family.sample()
    with contextlib.suppress(ProcessLookupError):
        daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(timeout=STOP_SECONDS)
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        left = family.alive()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while family.alive() and time.monotonic() < deadline:
            time.sleep(0.2)


# ---- the platform in a temp folder --------------------------------------------------------------
def prepare_home(root: Path, env: dict[str, str]) -> Path:
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True)
    # the project's instance settings as they are: run queue of 2, pools of 1, run monitoring
    shutil.copyfile(PROJECT / "dagster.yaml", home / "dagster.yaml")
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: llm_data_platform\n"
        "      location_name: llm_data_platform\n"
    )
    return workspace


class KnowledgeBase:
    """A folder of Markdown pages (Python reference topics), synced into the landing folder
    with ``sync_directory`` (what ``ldp ingest-docs`` runs) after every edit."""

    def __init__(self, folder: Path, landing: Path, floor: datetime) -> None:
        import pydoc_data.topics

        self.topics = pydoc_data.topics.topics
        self.folder, self.landing, self.floor = folder, landing, floor
        self.folder.mkdir(parents=True)
        self.landed: list[str] = []  # landing keys under <landing>/documents/
        self.edits = 0
        for topic in KB_TOPICS:
            self._write(topic)

    def _write(self, topic: str, extra: str = "") -> None:
        text = f"# The {topic} statement\n\n{self.topics[topic].strip()}\n{extra}"
        (self.folder / f"{topic}.md").write_text(text)

    def doc_ids(self) -> set[str]:
        return {f"{KB_PREFIX}/{p.name}" for p in self.folder.glob("*.md")}

    def edit(self, kind: str, topic: str) -> None:
        self.edits += 1
        if kind == "delete":
            (self.folder / f"{topic}.md").unlink()
        elif kind == "add":
            self._write(topic)
        else:
            note = f"\nSoak edit {self.edits}: this page was revised at {datetime.now(UTC)}.\n"
            self._write(topic, note)

    def sync(self) -> str:
        from llm_data_platform.sources import sync_directory

        report = sync_directory(self.folder, self.landing, prefix=KB_PREFIX, not_before=self.floor)
        if not report.landing_file:
            return "nothing changed"
        key = os.path.relpath(report.landing_file, self.landing / "documents")
        self.landed.append(key.replace(os.sep, "/"))
        return f"{len(report.upserts)} upserts, {len(report.deletes)} deletes → {key}"


# ---- the producer -------------------------------------------------------------------------------
@dataclass
class Production:
    target: str
    sent: int = 0
    report: object = None
    error: BaseException | None = None
    started: float = 0.0  # epoch
    ended: float = 0.0


def produce(prod: Production, rate: float, seconds: float, seed: int) -> None:
    from llm_data_platform.streaming.producer import produce_synthetic

    def progress(done: int, total: int) -> None:
        prod.sent = done

    prod.started = time.time()
    try:
        prod.report = produce_synthetic(
            prod.target,
            rate,
            seconds,
            kafka_config={"logger": QUIET},
            seed=seed,
            progress=progress,
        )
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        prod.error = exc
    prod.ended = time.time()


def produced_ids_landing(landing: Path) -> list[str]:
    ids = []
    for path in sorted((landing / "conversations" / "synthetic").rglob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                ids.append(json.loads(line)["event_id"])
    return ids


def produced_ids_kafka(bootstrap: str, topic: str, timeout: float = 120) -> list[str]:
    """Every message of the topic, read back from the beginning by a group of its own."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"soak-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "logger": QUIET,
        }
    )
    try:
        parts = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        high = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        done = {p for p in parts if high[p] <= 0}
        ids: list[str] = []
        deadline = time.monotonic() + timeout
        while len(done) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error():
                    continue
                ids.append(json.loads(msg.value())["event_id"])
                if msg.offset() + 1 >= high[msg.partition()]:
                    done.add(msg.partition())
        if len(done) < len(parts):
            raise TimeoutError(f"read back {len(ids)} messages of {topic} in {timeout} s")
        return ids
    finally:
        consumer.close()


# ---- the lake -----------------------------------------------------------------------------------
def partition_files(lake: Path, zone: str, table: str) -> dict[str, Path]:
    base = lake / zone / table
    if not base.is_dir():
        return {}
    return {
        d.name[3:]: d / "data.parquet"
        for d in sorted(base.glob("dt=*"))
        if (d / "data.parquet").exists()
    }


def read_column(path: Path, columns: list[str]):
    import pyarrow.parquet as pq

    for _ in range(5):  # files are replaced atomically; a read may race a replace
        try:
            return pq.read_table(path, columns=columns)
        except (OSError, ValueError):
            time.sleep(0.2)
    return None


def row_count(path: Path) -> int:
    import pyarrow.parquet as pq

    with contextlib.suppress(OSError, ValueError):
        return pq.ParquetFile(path).metadata.num_rows
    return -1


def raw_ids(lake: Path) -> dict[str, list[str]]:
    out = {}
    for day, path in partition_files(lake, "raw", "raw_conversations").items():
        table = read_column(path, ["event_id"])
        out[day] = table["event_id"].to_pylist() if table is not None else []
    return out


def clean_reconciles(lake: Path) -> tuple[bool, dict[str, dict]]:
    """Per day: raw event ids = clean ids + dropped ids, the two disjoint."""
    raw = partition_files(lake, "raw", "raw_conversations")
    clean = partition_files(lake, "clean", "conversations_clean")
    dropped = partition_files(lake, "clean", "conversations_clean_dropped")
    ok, detail = True, {}
    for day, path in raw.items():
        r = read_column(path, ["event_id"])
        c = read_column(clean[day], ["event_id"]) if day in clean else None
        d = read_column(dropped[day], ["event_id"]) if day in dropped else None
        r_ids = set(r["event_id"].to_pylist()) if r is not None else set()
        c_ids = c["event_id"].to_pylist() if c is not None else []
        d_ids = d["event_id"].to_pylist() if d is not None else []
        both = set(c_ids) & set(d_ids)
        day_ok = (
            c is not None
            and len(c_ids) + len(d_ids) == len(r_ids)
            and set(c_ids) | set(d_ids) == r_ids
            and not both
        )
        ok &= day_ok
        detail[day] = {"raw": len(r_ids), "clean": len(c_ids), "dropped": len(d_ids), "ok": day_ok}
    return ok, detail


def quick_reconciled(lake: Path) -> bool:
    """Footer counts only: clean + dropped rows = raw rows for every day (drain polling)."""
    raw = partition_files(lake, "raw", "raw_conversations")
    clean = partition_files(lake, "clean", "conversations_clean")
    dropped = partition_files(lake, "clean", "conversations_clean_dropped")
    return bool(raw) and all(
        day in clean
        and day in dropped
        and row_count(clean[day]) + row_count(dropped[day]) == row_count(path)
        for day, path in raw.items()
    )


def batch_written_at(lake: Path):
    """event_id -> epoch seconds its (first) micro-batch file was written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    tables = []
    for path in sorted((lake / "raw" / "conversations_batches").glob("dt=*/*.parquet")):
        t = pq.read_table(path, columns=["event_id"])
        tables.append(t.append_column("written", pa.array([path.stat().st_mtime] * t.num_rows)))
    if not tables:
        return {}
    table = pa.concat_tables(tables)
    grouped = table.group_by("event_id").aggregate([("written", "min")])
    return dict(
        zip(
            grouped["event_id"].to_pylist(),
            pc.cast(grouped["written_min"], pa.float64()).to_pylist(),
            strict=True,
        )
    )


# ---- the instance -------------------------------------------------------------------------------
IN_FLIGHT = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def in_flight(instance) -> list:
    import dagster as dg

    statuses = [dg.DagsterRunStatus[s] for s in IN_FLIGHT]
    return instance.get_runs(dg.RunsFilter(statuses=statuses))


def run_table(instance) -> dict[str, Counter]:
    table: dict[str, Counter] = defaultdict(Counter)
    for run in instance.get_runs():
        table[run.job_name][run.status.value] += 1
    return table


def materializations(instance, asset: str) -> list:
    import dagster as dg

    records, cursor = [], None
    while True:
        got = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)),
            limit=500,
            cursor=cursor,
            ascending=True,
        )
        records += got.records
        if not got.has_more:
            return records
        cursor = got.cursor


def staged_files(record) -> list[str]:
    """Landing keys a staging run was asked to stage (its run config)."""
    ops = record.dagster_run.run_config.get("ops", {})
    return ops.get("stage_documents", {}).get("config", {}).get("files", [])


def docs_settled(instance, kb: KnowledgeBase) -> bool:
    """The last knowledge-base file was staged, every document ingest succeeded or failed, and
    a successful index sync started after the last successful document ingest ended."""
    import dagster as dg

    if not kb.landed:
        return True
    last = kb.landed[-1]

    def records(job: str):
        return instance.get_run_records(
            dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS])
        )

    staged = [r for r in records("stage_documents_job") if last in staged_files(r)]
    ingests = records("ingest_documents_job")
    if not staged or not ingests:
        return False
    # an ingest that started after the last staging run ends with the index promoted
    return max(r.start_time or 0 for r in ingests) >= min(r.end_time or 0 for r in staged)


# ---- latency: which run first held each event ---------------------------------------------------
@dataclass
class Attribution:
    clean_latency: list[float] = field(default_factory=list)
    raw_latency: list[float] = field(default_factory=list)
    first_in_raw: list[float] = field(default_factory=list)  # epoch, per event
    unattributed: int = 0
    runs_checked: int = 0
    runs_exact: int = 0
    worst_gap: int = 0


def attribute(instance, lake: Path) -> Attribution:
    """Per event: the first raw step started after its micro-batch was written, that run's raw
    and clean materialization times, minus the event's arrival."""
    import bisect

    import dagster as dg

    out = Attribution()
    written = batch_written_at(lake)
    step_starts: dict[str, dict[str, float]] = {}

    def step_start(run_id: str, step_key: str | None) -> float | None:
        if run_id not in step_starts:
            logs = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
            step_starts[run_id] = {e.step_key: e.timestamp for e in logs}
        return step_starts[run_id].get(step_key)

    raws: dict[str, list[tuple[float, float, str, int]]] = defaultdict(list)
    for rec in materializations(instance, "raw_conversations"):
        start = step_start(rec.run_id, rec.event_log_entry.step_key)
        meta = rec.asset_materialization.metadata
        rows = meta["dagster/row_count"].value if "dagster/row_count" in meta else -1
        if start is not None:
            raws[rec.partition_key].append((start, rec.timestamp, rec.run_id, int(rows)))
    clean_at: dict[tuple[str, str], float] = {
        (rec.run_id, rec.partition_key): rec.timestamp
        for rec in materializations(instance, "conversations_clean")
    }
    for day, path in partition_files(lake, "raw", "raw_conversations").items():
        table = read_column(path, ["event_id", "arrived_at"])
        if table is None:
            continue
        runs = sorted(raws.get(day, []))
        starts = [r[0] for r in runs]
        with_clean = [r for r in runs if (r[2], day) in clean_at]
        clean_starts = [r[0] for r in with_clean]
        per_run = Counter()
        arrived = [t.timestamp() for t in table["arrived_at"].to_pylist()]
        for event_id, arrival in zip(table["event_id"].to_pylist(), arrived, strict=True):
            at = written.get(event_id)
            i = bisect.bisect_left(starts, at) if at is not None else len(starts)
            j = bisect.bisect_left(clean_starts, at) if at is not None else len(clean_starts)
            if i >= len(runs) or j >= len(with_clean):
                out.unattributed += 1
                continue
            per_run[i] += 1
            out.raw_latency.append(runs[i][1] - arrival)
            out.first_in_raw.append(runs[i][1])
            out.clean_latency.append(clean_at[(with_clean[j][2], day)] - arrival)
        # check: the events given to the runs up to each one = the rows that run recorded
        cumulative = 0
        for i, (_, _, _, rows) in enumerate(runs):
            cumulative += per_run.get(i, 0)
            out.runs_checked += 1
            out.runs_exact += int(cumulative == rows)
            out.worst_gap = max(out.worst_gap, abs(cumulative - rows))
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def edit_to_live(instance, kb: KnowledgeBase, landing: Path) -> list[float | None]:
    """Per knowledge-base landing file: seconds from its landing (mtime) to the end of the
    first successful document ingest (which promotes the index) that started after the
    staging run naming the file ended; None: never."""
    import dagster as dg

    def successes(job: str) -> list:
        records = instance.get_run_records(
            dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS])
        )
        return sorted(records, key=lambda r: r.start_time or 0)

    stages, ingests = (successes(j) for j in ("stage_documents_job", "ingest_documents_job"))
    out: list[float | None] = []
    for key in kb.landed:
        stage = next((r for r in stages if key in staged_files(r)), None)
        ingest = stage and next((r for r in ingests if r.start_time >= stage.end_time), None)
        landed = (landing / "documents" / key).stat().st_mtime
        out.append(ingest.end_time - landed if ingest else None)
    return out


def staging_events_unseen(instance) -> tuple[int, int]:
    """(staging materializations of conversations_batches with no ingest run requested for
    them, how many of those named a day that no raw step started after them compacted)."""
    import dagster as dg

    requested = {
        r.tags.get("ldp/staging_run")
        for r in instance.get_runs(dg.RunsFilter(job_name="ingest_conversations_job"))
    }
    raw_steps: dict[str, list[float]] = defaultdict(list)
    for rec in materializations(instance, "raw_conversations"):
        logs = instance.all_logs(rec.run_id, of_type=dg.DagsterEventType.STEP_START)
        raw_steps[rec.partition_key] += [e.timestamp for e in logs[:1]]
    unseen = uncovered = 0
    for rec in materializations(instance, "conversations_batches"):
        if rec.run_id in requested:
            continue
        unseen += 1
        days = rec.asset_materialization.metadata.get("days")
        for day in days.value if days else []:
            if not any(t > rec.timestamp for t in raw_steps.get(day, [])):
                uncovered += 1
                break
    return unseen, uncovered


# ---- the index ----------------------------------------------------------------------------------
def index_verdict(env: dict[str, str], kb: KnowledgeBase) -> tuple[bool, bool, str]:
    """(the live collection holds exactly the manifest's chunk ids at the manifest's versions,
    the manifest's documents are the knowledge base's files, details)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from llm_data_platform.definitions import build_resources
        from llm_data_platform.defs.rag.index import read_manifest
        from llm_data_platform.lib.index_slots import read_entries as existing_entries
        from llm_data_platform.settings import load_settings

        resources = build_resources(load_settings(env))
        lake, chroma, embeddings = resources["lake"], resources["chroma"], resources["embeddings"]
        manifest = read_manifest(lake)
        live = chroma.live_collection(embeddings.model_id, embeddings.dimension)
        if manifest is None or live is None:
            return False, False, f"manifest {'missing' if manifest is None else 'ok'}, live {live}"
        held = {cid: str(m.get("version")) for cid, m in existing_entries(live).items()}
        wanted = dict(
            zip(manifest["chunk_id"].to_pylist(), manifest["version"].to_pylist(), strict=True)
        )
        missing, stale = wanted.keys() - held.keys(), held.keys() - wanted.keys()
        other = [cid for cid in wanted.keys() & held.keys() if held[cid] != wanted[cid]]
        docs = set(manifest["doc_id"].to_pylist())
        meta = live.metadata or {}
        return (
            (not missing and not stale and not other),
            docs == kb.doc_ids(),
            (
                f"live {live.name} (version {meta.get('version')}): {len(held)} chunks, manifest "
                f"{len(wanted)}; missing {len(missing)}, stale {len(stale)}, other version "
                f"{len(other)}; manifest documents {len(docs)}, knowledge base files "
                f"{len(kb.doc_ids())}"
            ),
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---- the soak -----------------------------------------------------------------------------------
@dataclass
class Soak:
    """One soak's temp platform and what happened in it."""

    args: argparse.Namespace
    root: Path
    env: dict[str, str]
    target: str
    kb: KnowledgeBase | None = None
    instance: object = None
    daemon: subprocess.Popen | None = None
    family: Family | None = None
    cluster: object = None  # the mock Kafka cluster (lives as long as this object)
    prod: Production | None = None
    load: list[tuple[float, float, float]] = field(default_factory=list)
    warmup: float = float("nan")
    drain: float = float("nan")
    drained: bool = False
    conversations_drain: float = float("nan")  # seconds after the producer stopped
    produced: list[str] = field(default_factory=list)

    @property
    def landing(self) -> Path:
        return Path(self.env["LDP_LANDING_DIR"])

    @property
    def lake(self) -> Path:
        return Path(self.env["LDP_LAKE_ROOT"])

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"


def set_up(args: argparse.Namespace) -> Soak:
    """The temp platform: env, instance settings, the Kafka mock cluster, the knowledge base."""
    root = Path(tempfile.mkdtemp(prefix="ldp-soak-"))
    env = platform_env(root)
    env["LDP_SENSOR_INTERVAL_SECONDS"] = str(args.sensor_interval)
    soak = Soak(args, root, env, target=env["LDP_LANDING_DIR"])
    if args.source == "kafka":
        from confluent_kafka import Producer

        soak.cluster = Producer({"test.mock.num.brokers": 1, "logger": QUIET})
        brokers = soak.cluster.list_topics(timeout=10).brokers.values()
        if not all(b.host == "127.0.0.1" for b in brokers):
            raise SystemExit(f"mock brokers not on loopback: {list(brokers)}")
        bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)
        env.update(
            LDP_KAFKA_BOOTSTRAP=bootstrap,
            LDP_KAFKA_TOPICS=f"conversations={KAFKA_TOPIC}",
            LDP_KAFKA_GROUP="soak",
        )
        soak.target = f"kafka://{bootstrap.split(',')[0]}/{KAFKA_TOPIC}"
    (soak.landing / "conversations").mkdir(parents=True)
    soak.load.append(os.getloadavg())
    say(
        f"soak in {root}: {args.minutes} min at {args.rate}/s into {args.source}; "
        f"load {fmt_load(soak.load[0])}"
    )
    from llm_data_platform.settings import load_settings

    floor = datetime.fromisoformat(load_settings(env).partitions_start).replace(tzinfo=UTC)
    soak.kb = KnowledgeBase(root / "kb", soak.landing, floor)
    say(f"knowledge base: {soak.kb.sync()}")
    return soak


def start_daemon(soak: Soak) -> None:
    """``dagster-daemon run`` in its own session, seeing only this soak's settings; returns
    once its sensors asked for the first run (the knowledge base's staging)."""
    import dagster as dg

    workspace = prepare_home(soak.root, soak.env)
    # storage created before the daemon starts (two processes creating the schema race)
    soak.instance = instance = dg.DagsterInstance.from_config(soak.env["DAGSTER_HOME"])
    instance.get_runs(limit=1)
    instance.get_latest_materialization_event(dg.AssetKey("conversations_batches"))
    instance.all_instigator_state()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LDP_", "DAGSTER_"))}
    with open(soak.log, "wb") as out:
        soak.daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            env=env | soak.env,
            cwd=soak.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    soak.family = Family(soak.daemon.pid)
    soak.family.start()
    started = time.time()
    deadline = time.monotonic() + soak.args.warmup_timeout
    while not instance.get_runs(dg.RunsFilter(job_name="stage_documents_job"), limit=1):
        if soak.daemon.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"daemon not ready (exit {soak.daemon.poll()}); see {soak.log}")
        time.sleep(1)
    soak.warmup = time.time() - started
    say(f"daemon ready after {soak.warmup:.0f} s (first staging run requested)")


def stream(soak: Soak) -> None:
    """The producer for ``--minutes``, with the knowledge-base edits spread over it."""
    args, kb = soak.args, soak.kb
    seconds = args.minutes * 60
    soak.prod = prod = Production(soak.target)
    producer = threading.Thread(
        target=produce, args=(prod, args.rate, seconds, args.seed), daemon=True
    )
    producer.start()
    edit_at = [seconds * (i + 1) / (args.doc_edits + 1) for i in range(args.doc_edits)]
    t0, next_status = time.monotonic(), 0.0
    while producer.is_alive():
        elapsed = time.monotonic() - t0
        if edit_at and elapsed >= edit_at[0]:
            edit_at.pop(0)
            kind, topic = EDITS[kb.edits % len(EDITS)]
            kb.edit(kind, topic)
            say(f"document edit {kb.edits} ({kind} {topic}.md): {kb.sync()}")
        if elapsed >= next_status:
            next_status += 60
            say(status_line(soak))
        if soak.daemon.poll() is not None:
            raise RuntimeError(f"daemon exited ({soak.daemon.returncode}); see {soak.log}")
        producer.join(timeout=1)
    if prod.error is not None:
        raise prod.error
    say(f"producer done: {prod.report.events} events in {prod.report.seconds:.1f} s")


def drain(soak: Soak) -> None:
    """Bounded wait until every produced event is in raw, every raw day reconciles with clean,
    the last knowledge-base file is in a promoted index, and no run is queued or running."""
    if soak.args.source == "kafka":
        soak.produced = produced_ids_kafka(soak.env["LDP_KAFKA_BOOTSTRAP"], KAFKA_TOPIC)
    else:
        soak.produced = produced_ids_landing(soak.landing)
    wanted = set(soak.produced)
    deadline = time.monotonic() + soak.args.drain_timeout
    quiet_polls, next_status = 0, time.monotonic() + 60
    while time.monotonic() < deadline and soak.daemon.poll() is None:
        seen = {i for ids in raw_ids(soak.lake).values() for i in ids}
        conversations = wanted <= seen and quick_reconciled(soak.lake)
        if conversations and soak.conversations_drain != soak.conversations_drain:  # nan
            soak.conversations_drain = time.time() - soak.prod.ended
            say(f"every event in raw and clean {soak.conversations_drain:.0f} s after the producer")
        settled = (
            conversations and not in_flight(soak.instance) and docs_settled(soak.instance, soak.kb)
        )
        quiet_polls = quiet_polls + 1 if settled else 0
        if quiet_polls >= 3:  # three polls in a row, 10 s: no sensor had more to ask
            soak.drained = True
            break
        if time.monotonic() >= next_status:
            next_status += 60
            say(f"draining: {len(wanted & seen)}/{len(wanted)} in raw; {status_line(soak)}")
        time.sleep(5)
    soak.drain = time.time() - soak.prod.ended
    say(f"{'drained' if soak.drained else 'NOT drained'} {soak.drain:.0f} s after the producer")


def tear_down(soak: Soak) -> None:
    if soak.daemon is not None:
        stop_daemon(soak.daemon, soak.family)
        soak.family.stop()
    soak.load.append(os.getloadavg())


# ---- the report ---------------------------------------------------------------------------------
def run_processes(instance) -> dict[int, str]:
    """pid of each run's worker process -> its job (from the run's RUN_START event)."""
    import dagster as dg

    out = {}
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START):
            if entry.dagster_event is not None and entry.dagster_event.pid:
                out[entry.dagster_event.pid] = run.job_name
    return out


def report(soak: Soak) -> bool:
    """Prints the verdicts and figures (the daemon has stopped: nothing writes any more)."""
    args, instance, family, prod = soak.args, soak.instance, soak.family, soak.prod
    wanted = set(soak.produced)
    per_day = raw_ids(soak.lake)
    counts = Counter(i for ids in per_day.values() for i in ids)
    dupes = {i: n for i, n in counts.items() if n > 1}
    missing, strays = wanted - counts.keys(), counts.keys() - wanted
    repeats = len(soak.produced) - len(wanted)
    exactly_once = bool(wanted) and not dupes and not missing and not strays and not repeats
    reconciles, detail = clean_reconciles(soak.lake)
    index_ok, follows_kb, index_detail = index_verdict(soak.env, soak.kb)
    edits = edit_to_live(instance, soak.kb, soak.landing)
    unseen, uncovered = staging_events_unseen(instance)
    attr = attribute(instance, soak.lake)
    records = instance.get_run_records()
    waits = [r.start_time - r.create_timestamp.timestamp() for r in records if r.start_time]
    durations: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.start_time and r.end_time:
            durations[r.dagster_run.job_name].append(r.end_time - r.start_time)
    pids = run_processes(instance)
    failed = [r.dagster_run for r in records if r.dagster_run.status.value == "FAILURE"]

    sent = prod.report
    produced_rate = sent.events / sent.seconds if sent.seconds else float("nan")
    last_in_raw = max(attr.first_in_raw, default=float("nan"))
    raw_rate = len(counts) / (last_in_raw - prod.started) if attr.first_in_raw else 0.0
    backlog = sum(1 for t in attr.first_in_raw if t > prod.ended)
    p95_clean = pct(attr.clean_latency, 0.95)
    print("\n" + "=" * 100)
    print(
        f"load average (1/5/15 min) before {fmt_load(soak.load[0])}, after "
        f"{fmt_load(soak.load[-1])} ({os.cpu_count()} cores); daemon warm-up {soak.warmup:.0f} s; "
        f"drain {soak.drain:.0f} s ({'complete' if soak.drained else 'TIMED OUT'}; every event "
        f"in raw and clean after {soak.conversations_drain:.0f} s)"
    )
    print(
        f"produced: {sent.events} events in {sent.seconds:.1f} s = {produced_rate:.1f}/s "
        f"(target {args.rate}/s; {sent.units} {sent.kind} units, {sent.conversations} "
        "conversations)"
    )
    print(
        f"raw: {len(counts)} distinct events in {len(per_day)} partition(s), landed at "
        f"{raw_rate:.1f}/s (producer start → last event first in raw: "
        f"{last_in_raw - prod.started:.0f} s); {backlog} events not yet in raw when the "
        "producer stopped"
    )
    print(
        f"exactly once: {exactly_once} (missing {len(missing)}, duplicated {len(dupes)}, "
        f"unknown {len(strays)}, producer repeats {repeats})"
    )
    print(f"conversations_clean reconciles (raw ids = clean ids + dropped ids): {reconciles}")
    for day, d in detail.items():
        print(f"  {day}: {d}")
    print(f"index matches manifest: {index_ok}; follows the knowledge base: {follows_kb}")
    print(f"  {index_detail}")
    print(
        "knowledge-base file landed → index sync done, per file: "
        + ", ".join("never" if t is None else f"{t:.0f} s" for t in edits)
    )
    print(
        f"staging materializations no raw run was requested for: {unseen} "
        f"({uncovered} of them with a day no later raw step compacted)"
    )
    for name, values in (("raw", attr.raw_latency), ("clean", attr.clean_latency)):
        print(
            f"arrival → {name:5s}: p50 {pct(values, 0.5):6.1f} s  p95 {pct(values, 0.95):6.1f} s"
            f"  max {max(values, default=float('nan')):6.1f} s  ({len(values)} events)"
        )
    print(
        f"  attribution: {attr.unattributed} events without a run; the events given to each "
        f"run = its recorded raw rows for {attr.runs_exact}/{attr.runs_checked} runs (worst "
        f"gap {attr.worst_gap})"
    )
    print(
        f"run queue wait (created → started): p50 {pct(waits, 0.5):.1f} s, "
        f"p95 {pct(waits, 0.95):.1f} s"
    )
    print(
        f"peak RSS ({family.samples} samples every {family.interval} s, "
        f"{len(family.seen)} processes):"
    )
    wall = family.stopped - family.started
    for name, (peak, n, cpu, example) in sorted(family.peaks_by_role().items()):
        print(
            f"  {name:12s} {peak / 1e6:8.1f} MB (largest of {n}); CPU {cpu:7.1f} s = "
            f"{cpu / wall:4.2f} cores over {wall:.0f} s; {example[:50]}"
        )
    print(f"  whole tree   {family.peak_total / 1e6:8.1f} MB (largest sum at one sample)")
    by_job: dict[str, int] = defaultdict(int)
    for pid, job in pids.items():
        by_job[job] = max(by_job[job], family.peak.get(pid, 0))
    print("runs: job, status counts, duration p50/max, peak RSS of its run processes")
    launched = succeeded = 0
    for job, statuses in sorted(run_table(instance).items()):
        launched += sum(statuses.values())
        succeeded += statuses.get("SUCCESS", 0)
        d = durations.get(job, [])
        print(
            f"  {job:26s} {dict(statuses)}  {pct(d, 0.5):5.1f}/{max(d, default=0):5.1f} s  "
            f"{by_job.get(job, 0) / 1e6:6.1f} MB"
        )
    print(f"  total: {launched} launched, {succeeded} succeeded, {len(failed)} failed")
    for run in failed[:10]:
        print(f"  FAILED {run.job_name} {run.tags.get('dagster/partition', '')} {run.run_id}")
    if left := family.alive():
        print(f"processes left running: {left}")
    summary = dict(
        events_per_s=f"{raw_rate:.1f}",
        p95_arrival_to_clean_s=f"{p95_clean:.1f}",
        peak_rss_mb=f"{family.peak_total / 1e6:.0f}",
        exactly_once=str(exactly_once).lower(),
        index_matches_manifest=str(index_ok).lower(),
    )
    print("soak: " + " ".join(f"{k}={v}" for k, v in summary.items()))
    return exactly_once and index_ok and follows_kb and reconciles and soak.drained and not failed


def fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def status_line(soak: Soak) -> str:
    total = Counter()
    for statuses in run_table(soak.instance).values():
        total.update(statuses)
    return (
        f"produced {soak.prod.sent if soak.prod else 0}; runs {dict(total)}; tree RSS peak "
        f"{soak.family.peak_total / 1e6:.0f} MB; load {fmt_load(os.getloadavg())}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to produce")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--source", choices=("landing", "kafka"), default="landing")
    parser.add_argument(
        "--sensor-interval", type=int, default=30, help="LDP_SENSOR_INTERVAL_SECONDS (default 30)"
    )
    parser.add_argument("--doc-edits", type=int, default=len(EDITS), help="knowledge-base edits")
    parser.add_argument("--warmup-timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()

    soak = set_up(args)
    try:
        try:
            start_daemon(soak)
            stream(soak)
            drain(soak)
        finally:
            tear_down(soak)
        ok = report(soak)
    finally:
        if soak.instance is not None:
            soak.instance.dispose()
        if args.keep:
            print(f"kept {soak.root} (daemon log: {soak.log})")
        else:
            shutil.rmtree(soak.root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
