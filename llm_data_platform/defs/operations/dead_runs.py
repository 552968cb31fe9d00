"""Runs whose process died while nothing watched it: failed, so they stop holding the queue.

A run launched through the queue is watched by the code server that started it (it fails a
run whose process is gone within a second). A run executed inside the CLI's own process
(`dagster asset materialize`, `ldp demo`) has no such watcher in Dagster 1.13 with the
default run launcher — killed, it stays STARTED, counts against `max_concurrent_runs` and
keeps its pool slots until `max_runtime_seconds` (6 h). Every Dagster event records the pid
of the process that emitted it, and RUN_START comes from the process executing the run; this
sensor checks that process and fails the run when it is gone. Run monitoring then frees the
slots as for any dead run.

Only on a SQLite instance: every run then ran on this machine, so a pid means a process
here. On a shared instance (PostgreSQL) runs come from other hosts, and the launchers used
there (Kubernetes, ECS, Docker) have run-worker health checks of their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

CHECK_EVERY_SECONDS = 15
MAX_RUNS_PER_TICK = 100


@dataclass(frozen=True)
class RunProcess:
    run_id: str
    pid: int
    started: float  # the run's start, epoch seconds


def run_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that executes the run: the one that emitted RUN_START (the
    CLI's own process, or the run worker a code server started)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
    ).records
    event = records[0].event_log_entry.dagster_event if records else None
    return int(event.pid) if event is not None and event.pid is not None else None


def process_alive(pid: int, started_before: float) -> bool:
    """Whether ``pid`` is a live process that already existed at ``started_before`` (a pid
    reused by a newer process is not the run's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    started = _process_start(pid)
    return started is None or started <= started_before + 1.0


def _process_start(pid: int) -> float | None:
    """Start time of ``pid`` in epoch seconds, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def started_runs(instance: dg.DagsterInstance) -> list[RunProcess]:
    """STARTED runs with a recorded process id."""
    records = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=MAX_RUNS_PER_TICK
    )
    found = []
    for record in records:
        pid = run_pid(instance, record.dagster_run.run_id)
        if pid is not None and record.start_time is not None:
            found.append(RunProcess(record.dagster_run.run_id, pid, record.start_time))
    return found


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail every STARTED run whose process is gone; their ids."""
    failed = []
    for run in started_runs(instance):
        if process_alive(run.pid, run.started):
            continue
        dagster_run = instance.get_run_by_id(run.run_id)
        if dagster_run is None or dagster_run.status != dg.DagsterRunStatus.STARTED:
            continue  # finished meanwhile
        instance.report_run_failed(
            dagster_run,
            f"The process of this run (pid {run.pid}) is gone: it was killed or crashed "
            "with nothing watching it (a run executed inside the CLI). Marked failed by "
            "dead_runs_sensor; its pool slots are freed by run monitoring. Re-run it.",
        )
        failed.append(run.run_id)
    return failed


@dg.sensor(
    name="dead_runs_sensor",
    minimum_interval_seconds=CHECK_EVERY_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails STARTED runs whose process is gone (CLI runs nothing else watches).",
)
def dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    if not isinstance(context.instance.run_storage, SqliteRunStorage):
        return dg.SkipReason(
            "Not a SQLite instance: runs may come from other hosts, whose pids mean nothing "
            "here; their launcher's health checks watch them."
        )
    failed = fail_dead_runs(context.instance)
    if failed:
        context.log.warning(f"failed {len(failed)} dead run(s): {', '.join(failed)}")
        return dg.SkipReason(f"failed {len(failed)} dead run(s): {', '.join(failed)}")
    return dg.SkipReason("every started run's process is alive")
