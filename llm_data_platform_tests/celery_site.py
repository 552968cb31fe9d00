"""A Redis broker and Celery step workers on loopback, for the tests and the scale-out benchmark.

``redis-server`` (Debian's package; ``.ci/run`` installs it) on a free port, nothing saved to
disk; workers run ``celery -A llm_data_platform.lib.celery_worker worker``, the command the
README gives. Both are started through ``daemon.Site``: their own sessions, stopped by pid.
What each step ran on is read back from the instance: dagster-celery's engine event
"Executing steps ... in celery worker" names the worker, and every step event carries the
pid of the process that executed it.
"""

from __future__ import annotations

import shutil
import socket
import time
from dataclasses import dataclass

import dagster as dg

from llm_data_platform_tests.daemon import BIN, Site

ENDS = (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
START_SECONDS = 90  # a worker imports the code location before it reports ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(s: Site) -> str:
    """A Redis server of the test's own on 127.0.0.1; its URL once it answers PING."""
    import redis

    binary = shutil.which("redis-server")
    assert binary, "redis-server not found: `apt-get install -y redis-server` (.ci/run does it)"
    port = free_port()
    proc = s.start(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        "redis",
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=2)
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, s.log("redis")
        try:
            if client.ping():
                client.close()
                return url
        except redis.exceptions.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"redis not up:\n{s.log('redis')}"
        time.sleep(0.1)


def worker_args(name: str, concurrency: int = 1, extra: tuple[str, ...] = ()) -> list[str]:
    """The README's worker command, named ``name`` and with ``concurrency`` pool processes."""
    return [
        str(BIN / "celery"),
        "-A",
        "llm_data_platform.lib.celery_worker",
        "worker",
        "-Q",
        "dagster",
        "-c",
        str(concurrency),
        "-n",
        f"{name}@ldp",
        "-l",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        *extra,
    ]


def start_workers(s: Site, names: list[str], concurrency: int = 1, extra=()) -> None:
    """Start one Celery worker per name and wait until each says it is ready."""
    procs = {n: s.start(worker_args(n, concurrency, tuple(extra)), f"worker-{n}") for n in names}
    deadline = time.monotonic() + START_SECONDS
    waiting = set(names)
    while waiting:
        for name in list(waiting):
            assert procs[name].poll() is None, s.log(f"worker-{name}")
            if f"{name}@ldp ready." in s.log(f"worker-{name}", 100_000):
                waiting.discard(name)
        assert time.monotonic() < deadline, {n: s.log(f"worker-{n}") for n in waiting}
        time.sleep(0.25)


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    partition: str | None
    step: str
    worker: str  # the Celery worker's name ("" when the step did not go through Celery)
    pid: int  # the process that executed the step
    start: float
    end: float
    ok: bool


def step_records(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[StepRecord]:
    """Each executed step of ``run``: where (worker, pid) and when (start, end)."""
    workers: dict[str, str] = {}
    starts: dict[str, tuple[float, int]] = {}
    ends: dict[str, tuple[float, bool]] = {}
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            meta = event.engine_event_data.metadata if event.engine_event_data else {}
            if "Celery worker" in meta:
                workers[entry.step_key] = str(meta["Celery worker"].value)
        elif event.event_type == dg.DagsterEventType.STEP_START:
            starts[entry.step_key] = (entry.timestamp, event.pid)
        elif event.event_type in ENDS:
            ends[entry.step_key] = (entry.timestamp, event.event_type == ENDS[0])
    partition = run.tags.get("dagster/partition")
    return [
        StepRecord(run.run_id, partition, key, workers.get(key, ""), pid, start, *ends[key])
        for key, (start, pid) in starts.items()
        if key in ends
    ]


def overlapping(spans: list[StepRecord]) -> list[tuple[StepRecord, StepRecord]]:
    """Pairs of steps that ran at the same time."""
    ordered = sorted(spans, key=lambda r: r.start)
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :] if b.start < a.end]
