"""The landing path through the real daemon: bad files beside good ones never block the good.

The issue this guards: one corrupt ``.jsonl.gz`` in the landing folder made every landing-sensor
tick fail, so through ``dagster-daemon`` 0 of 200 good events that landed beside it ever reached
raw. Now the landing sensor only lists files and requests a staging run; the staging run
(``stage_conversations``) parses each file once and quarantines what it cannot read; the asset
sensor ``raw_conversations_after_staging_sensor`` turns the staged days into runs of
``ingest_conversations_job``.

Here a real ``dagster-daemon run`` (its own session, a temp DAGSTER_HOME with the project's
dagster.yaml) watches a landing folder holding 200 good events for 2026-01-05 in four files
(plain, gzip, concatenated gzip members, nested folders) and, beside them, a corrupt gzip, a
truncated gzip, a gzip bomb (300 MB of zeros), a file with NUL bytes and one with invalid
UTF-8. The test waits (bounded) until every good event is in the raw partition, every bad file
is named with its reason in the raw quarantine, and the runs succeeded on the instance, while
sampling the memory of the daemon and of every process it started.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from llm_data_platform_tests.conftest import platform_env
from llm_data_platform_tests.daemon import process_cmdline, process_rss, process_stat

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[1]
DAY = "2026-01-05"
STREAM = "conversations"
POLL_SECONDS = 150  # daemon start → every good event in raw, quarantine written, runs done
STOP_SECONDS = 30  # SIGTERM → SIGKILL
RSS_LIMIT = 2_000_000_000  # bytes, per process
BOMB_BYTES = 300 * 1024**2  # decompressed zeros; ~300 KB on disk

# Good files: (key under <landing>/conversations/, number of events, how it is written)
GOOD_FILES = [
    ("a-plain.jsonl", 60, "plain"),
    ("b-gzip.jsonl.gz", 70, "gzip"),
    ("2026/01/05/c-nested.jsonl", 40, "plain"),
    ("d-rotated.jsonl.gz", 30, "gzip-members"),
]
BAD_FILES = {
    "corrupt.jsonl.gz": "corrupt gzip",
    "partial.jsonl.gz": "truncated gzip",
    "bomb.jsonl.gz": "exceeds",  # one 300 MB line of NULs (or, over max_bytes, "gzip bomb")
    "nul-bytes.jsonl": "invalid JSON",
    "bad-utf8.jsonl": "not valid UTF-8",
}
WATCHED_JOBS = ("stage_conversations_job", "ingest_conversations_job")


# ---- the landing folder ---------------------------------------------------------------------


def _event(event_id: str, i: int, rng: random.Random) -> dict:
    ts = datetime(2026, 1, 5, 8, tzinfo=UTC) + timedelta(seconds=37 * i)
    base = {
        "event_id": event_id,
        "conversation_id": f"conv-{event_id.rsplit('-', 1)[0]}-{i // 4:03d}",
        "user_id": f"user-{i % 7}",
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
    }
    if i % 5 == 4:
        return {**base, "type": "feedback", "rating": 1 + i % 5}
    return {
        **base,
        "type": "message",
        "turn": i % 4,
        "role": "user" if i % 2 == 0 else "assistant",
        # random words: gzip cannot squeeze them away, so damage in the middle of a compressed
        # file lands in the middle of its lines
        "content": f"Step {i}: " + " ".join(rng.choice(WORDS) for _ in range(40)),
    }


WORDS = [
    *("python", "list", "dict", "generator", "asyncio", "typing", "dataclass", "import"),
    *("module", "package", "wheel", "venv", "pytest", "fixture", "decorator", "context"),
    *("manager", "iterator", "closure", "lambda", "slice", "tuple", "frozen", "bytes"),
    *("unicode", "encoding", "parquet", "arrow", "lake", "partition", "sensor", "daemon"),
]


def _lines(events: list[dict]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


@dataclass
class Landing:
    root: Path  # <landing>/conversations
    good_ids: set[str] = field(default_factory=set)
    bad_ids: set[str] = field(default_factory=set)  # ids written into the bad files
    bad_lines: dict[str, int] = field(default_factory=dict)  # lines of the line-level bad files
    written: dict[str, dict] = field(default_factory=dict)  # every event written, by id


def _write_landing(stream_dir: Path) -> Landing:
    rng = random.Random(20260105)
    landing = Landing(stream_dir)
    n = 0
    for key, count, how in GOOD_FILES:
        events = [_event(f"good-{n + j:04d}", n + j, rng) for j in range(count)]
        n += count
        landing.good_ids.update(e["event_id"] for e in events)
        landing.written.update((e["event_id"], e) for e in events)
        path = stream_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if how == "plain":
            path.write_bytes(_lines(events))
        elif how == "gzip":
            path.write_bytes(gzip.compress(_lines(events), mtime=0))
        else:  # a writer that appends a gzip member per flush (valid gzip: members concatenate)
            half = len(events) // 2
            path.write_bytes(
                gzip.compress(_lines(events[:half]), mtime=0)
                + gzip.compress(b"\n" + _lines(events[half:]), mtime=0)
            )
    assert len(landing.good_ids) == 200

    def bad_events(prefix: str, count: int) -> list[dict]:
        events = [_event(f"{prefix}-{j:04d}", j, rng) for j in range(count)]
        landing.bad_ids.update(e["event_id"] for e in events)
        landing.written.update((e["event_id"], e) for e in events)
        return events

    # garbage in the middle of the deflate stream
    data = bytearray(gzip.compress(_lines(bad_events("corrupt", 120)), mtime=0))
    middle = len(data) // 2
    data[middle : middle + 256] = rng.randbytes(256)
    (stream_dir / "corrupt.jsonl.gz").write_bytes(bytes(data))

    # cut short, as if the producer were still writing it
    data = gzip.compress(_lines(bad_events("partial", 80)), mtime=0)
    (stream_dir / "partial.jsonl.gz").write_bytes(data[: len(data) * 6 // 10])

    # a gzip bomb, compressed a block at a time (never 300 MB in this process)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    with open(stream_dir / "bomb.jsonl.gz", "wb") as f:
        for _ in range(BOMB_BYTES // len(zeros)):
            f.write(packer.compress(zeros))
        f.write(packer.flush())

    # NUL bytes: inside a JSON string, alone on a line, after an object
    nul_a, nul_b = (json.dumps(e).encode() for e in bad_events("nul", 2))
    nul_lines = [
        nul_a.replace(b'"Step', b'"St\x00ep', 1),
        b"\x00\x00\x00\x00\x00\x00\x00\x00",
        nul_b + b"\x00",
    ]
    (stream_dir / "nul-bytes.jsonl").write_bytes(b"\n".join(nul_lines) + b"\n")
    landing.bad_lines["nul-bytes.jsonl"] = len(nul_lines)

    # invalid UTF-8: a Latin-1 byte, a stray BOM-like prefix, an overlong encoding
    utf_a, utf_b, utf_c = (json.dumps(e).encode() for e in bad_events("utf8", 3))
    utf_lines = [
        utf_a.replace(b'"Step', b'"St\xe9p', 1),
        b"\xff\xfe" + utf_b,
        utf_c.replace(b'"Step', b'"St\xc0\xafep', 1),
    ]
    (stream_dir / "bad-utf8.jsonl").write_bytes(b"\n".join(utf_lines) + b"\n")
    landing.bad_lines["bad-utf8.jsonl"] = len(utf_lines)
    return landing


# ---- the processes the daemon starts, and their memory --------------------------------------


class Family:
    """The daemon and every process it started (same session, or a descendant), sampled."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, int] = {root: -1}  # pid → start time (guards against pid reuse)
        self.peak: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.peak_total = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def members(self) -> list[int]:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := process_stat(int(entry))) is not None:
                stats[int(entry)] = stat
        if self.root in stats:
            self.seen[self.root] = stats[self.root][2]
        found = {pid for pid, (_, sid, _) in stats.items() if sid == self.root}
        found.add(self.root)
        grew = True
        while grew:  # descendants that left the session
            grew = False
            for pid, (ppid, _, _) in stats.items():
                if ppid in found and pid not in found:
                    found.add(pid)
                    grew = True
        for pid in found:
            if pid in stats:
                self.seen.setdefault(pid, stats[pid][2])
        return [pid for pid in found if pid in stats]

    def sample(self) -> None:
        total = 0
        for pid in self.members():
            rss = process_rss(pid)
            total += rss
            if rss > self.peak.get(pid, 0):
                self.peak[pid] = rss
                self.names.setdefault(pid, process_cmdline(pid))
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def alive(self) -> list[int]:
        """Processes seen in the family that still run (the same process, not a reused pid)."""
        out = []
        for pid, started in self.seen.items():
            stat = process_stat(pid)
            if stat is not None and (started < 0 or stat[2] == started):
                out.append(pid)
        return out

    def report(self) -> str:
        top = sorted(self.peak.items(), key=lambda kv: -kv[1])[:6]
        rows = [f"  {rss / 1e6:8.1f} MB  pid {pid}: {self.names.get(pid, '?')}" for pid, rss in top]
        return (
            f"{self.samples} samples, {len(self.seen)} processes, family peak "
            f"{self.peak_total / 1e6:.1f} MB\n" + "\n".join(rows)
        )


def _stop_daemon(daemon: subprocess.Popen, family: Family) -> None:
    """SIGTERM to the daemon's process group, SIGKILL after STOP_SECONDS; then any process of
    the family still alive (a run or step worker that left the group) is killed by its pid."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        daemon.wait(timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=STOP_SECONDS)
    deadline = time.monotonic() + STOP_SECONDS
    while (left := family.alive()) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


# ---- the lake and the instance --------------------------------------------------------------


def _read_raw(path: Path) -> list[dict] | None:
    if not path.exists():
        return None
    try:
        columns = ["event_id", "conversation_id", "content", "rating", "source_file"]
        return pq.read_table(path, columns=columns).to_pylist()
    except OSError:  # written atomically, but be tolerant of a read racing a replace
        return None


def _quarantine(lake: Path, days: set[str]) -> list[dict]:
    rows: list[dict] = []
    for day in sorted(days):
        path = lake / "raw" / "raw_conversations_quarantine" / f"dt={day}" / "data.parquet"
        if path.exists():
            try:
                table = pq.read_table(path, columns=["source_file", "source_line", "reason"])
            except OSError:
                continue
            rows += table.to_pylist()
    return rows


def _runs(instance: dg.DagsterInstance, job: str, partition: str | None = None):
    tags = {"dagster/partition": partition} if partition else {}
    return instance.get_runs(dg.RunsFilter(job_name=job, tags=tags))


def _failures(instance: dg.DagsterInstance) -> str:
    """Error messages of the watched jobs' failed runs (for the assertion message)."""
    out = []
    for job in WATCHED_JOBS:
        for run in _runs(instance, job):
            if run.status != dg.DagsterRunStatus.FAILURE:
                continue
            errors = [
                e.message
                for e in instance.all_logs(run.run_id)
                if e.is_dagster_event and e.dagster_event.is_failure
            ]
            out.append(f"{job} {run.tags.get('dagster/partition', '')} {run.run_id}: {errors}")
    return "\n".join(out)


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


# ---- the test -------------------------------------------------------------------------------


def test_daemon_ingests_good_events_beside_bad_files(tmp_path):
    started = time.monotonic()
    env = platform_env(tmp_path)
    env.update(
        LDP_PARTITIONS_START=DAY,
        LDP_SENSOR_INTERVAL_SECONDS="5",
        HF_HUB_OFFLINE="1",
        GX_ANALYTICS_ENABLED="False",
    )
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True)
    # the project's instance settings (run queue, pools, sensor threads), plus run monitoring so
    # a run worker that dies cannot hold the queue
    (home / "dagster.yaml").write_text(
        (PROJECT / "dagster.yaml").read_text() + "\nrun_monitoring:\n"
        "  enabled: true\n"
        "  start_timeout_seconds: 180\n"
        "  poll_interval_seconds: 30\n"
        "  max_resume_run_attempts: 0\n"
        "  free_slots_after_run_end_seconds: 30\n"
    )
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: llm_data_platform\n"
        "      location_name: llm_data_platform\n"
    )
    lake = Path(env["LDP_LAKE_ROOT"])
    landing = _write_landing(Path(env["LDP_LANDING_DIR"]) / STREAM)
    bad_sources = {f"{STREAM}/{key}" for key in BAD_FILES}
    good_sources = {f"{STREAM}/{key}" for key, _, _ in GOOD_FILES}
    # file-level damage and unparseable lines belong to the day the file arrived
    days = {DAY} | {
        datetime.fromtimestamp((landing.root / key).stat().st_mtime, tz=UTC).date().isoformat()
        for key in BAD_FILES
    }
    raw_path = lake / "raw" / "raw_conversations" / f"dt={DAY}" / "data.parquet"

    # the instance's SQLite storage is created here, before the daemon starts: two processes
    # creating the same schema at once race ("table secondary_indexes already exists")
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.get_latest_materialization_event(dg.AssetKey(f"{STREAM}_batches"))
    instance.all_instigator_state()

    # the daemon sees only this test's settings: nothing inherited from the shell's LDP_/DAGSTER_
    daemon_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LDP_", "DAGSTER_"))
    } | env
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            env=daemon_env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    family = Family(daemon.pid)
    family.start()
    raw: list[dict] | None = None
    raw_ids: list[str] = []
    quarantine: list[dict] = []
    try:
        deadline = time.monotonic() + POLL_SECONDS
        while time.monotonic() < deadline:
            raw = _read_raw(raw_path)
            raw_ids = [row["event_id"] for row in raw or []]
            quarantine = _quarantine(lake, days)
            named = {row["source_file"] for row in quarantine}
            staged = _runs(instance, "stage_conversations_job")
            ingested = _runs(instance, "ingest_conversations_job")
            done = (
                raw is not None
                and landing.good_ids <= set(raw_ids)
                and bad_sources <= named
                and any(r.status == dg.DagsterRunStatus.SUCCESS for r in staged)
                # every day the staging touched has been ingested (or has failed: asserted below)
                and {r.tags.get("dagster/partition") for r in ingested if r.is_finished} >= days
            )
            failed = any(r.status == dg.DagsterRunStatus.FAILURE for r in [*staged, *ingested])
            if done or failed or daemon.poll() is not None:
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        family.sample()
        context = (
            f"after {elapsed:.0f} s; daemon exit code {daemon.poll()}\n"
            f"failed runs:\n{_failures(instance)}\n"
            f"memory: {family.report()}\n"
            f"daemon log tail:\n{_tail(log)}"
        )

        # every good event reached raw, once; nothing else did but salvaged bad-file lines
        assert raw is not None, f"no raw partition {DAY} {context}"
        missing = landing.good_ids - set(raw_ids)
        assert not missing, (
            f"{len(missing)} of 200 good events not in raw: {sorted(missing)[:5]} {context}"
        )
        assert len(raw_ids) == len(set(raw_ids)), "an event is twice in the raw partition"
        strays = set(raw_ids) - landing.good_ids - landing.bad_ids
        assert not strays, f"raw holds events nobody wrote: {sorted(strays)[:5]}"
        for prefix in ("nul-", "utf8-"):  # parse_lines rejects these lines, so raw must too
            leaked = sorted(i for i in raw_ids if i.startswith(prefix))
            assert not leaked, f"undecodable lines reached raw: {leaked}"
        # …and what reached raw is what was written (a line salvaged before a damaged spot in
        # a gzip is kept only intact)
        for row in raw:
            wrote = landing.written[row["event_id"]]
            got = {k: row[k] for k in ("conversation_id", "content", "rating")}
            assert got == {k: wrote.get(k) for k in got}, (row, wrote)

        # every bad file is named in the quarantine with its reason; no good file is
        by_file: dict[str, list[dict]] = {}
        for row in quarantine:
            by_file.setdefault(row["source_file"], []).append(row)
        for key, reason in BAD_FILES.items():
            rows = by_file.get(f"{STREAM}/{key}", [])
            reasons = sorted({r["reason"] for r in rows})
            assert rows, f"{key} is not in raw_conversations_quarantine {sorted(days)} {context}"
            if key == "bomb.jsonl.gz":
                assert any("exceeds" in r or "gzip bomb" in r for r in reasons), reasons
            else:
                assert any(reason in r for r in reasons), f"{key}: {reasons}"
            assert all(r["reason"] for r in rows)
        for key, lines in landing.bad_lines.items():
            assert len(by_file[f"{STREAM}/{key}"]) == lines, by_file[f"{STREAM}/{key}"]
        assert not good_sources & set(by_file), (
            f"good files quarantined: {good_sources & set(by_file)}"
        )

        # the runs, as the instance records them
        staged = _runs(instance, "stage_conversations_job")
        assert [r.status for r in staged] == [dg.DagsterRunStatus.SUCCESS], (
            f"expected one successful staging run of all files; {context}"
        )
        ingested = _runs(instance, "ingest_conversations_job", DAY)
        assert any(r.status == dg.DagsterRunStatus.SUCCESS for r in ingested), (
            f"no successful ingest_conversations_job run for {DAY}: "
            f"{[r.status for r in ingested]} {context}"
        )
        assert ingested[0].tags.get("ldp/staging_run") == staged[0].run_id
        assert (lake / "clean" / "conversations_clean" / f"dt={DAY}" / "data.parquet").exists()
        for day in sorted(days - {DAY}):
            runs = _runs(instance, "ingest_conversations_job", day)
            assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS], (
                f"ingest of {day} (the bad files' arrival day): {[r.status for r in runs]} "
                f"{context}"
            )

        # the staging run read each file once: one materialization naming every file and day
        event = instance.get_latest_materialization_event(dg.AssetKey(f"{STREAM}_batches"))
        assert event is not None and event.run_id == staged[0].run_id
        meta = event.asset_materialization.metadata
        assert meta["units_staged"].value == len(GOOD_FILES) + len(BAD_FILES), meta
        assert set(meta["days"].value) == days, meta["days"]

        # memory: the daemon, and every process it started, stayed bounded
        assert family.samples > 10, family.report()
        daemon_peak = family.peak.get(daemon.pid, 0)
        assert 0 < daemon_peak < RSS_LIMIT, family.report()
        over = {pid: rss for pid, rss in family.peak.items() if rss >= RSS_LIMIT}
        assert not over, family.report()
        print(
            f"\ndaemon ingest: {elapsed:.1f} s to raw + quarantine; daemon peak RSS "
            f"{daemon_peak / 1e6:.1f} MB\n{family.report()}"
        )
    finally:
        family.stop()
        _stop_daemon(daemon, family)
        instance.dispose()
    assert not family.alive(), f"processes left running: {family.alive()}"
