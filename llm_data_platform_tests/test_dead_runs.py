"""Dead runs recover by themselves: killed runs fail, their pool slots are freed, the queue moves.

The issue this guards: a run whose process was SIGKILLed stayed STARTED forever; two of them
filled ``max_concurrent_runs: 2`` and the daemon queued everything else until an operator
marked them failed by hand, and a run killed inside ``chunk_embeddings`` kept its
``embedding_model`` pool slot, so reruns stayed "blocked by limit for pool embedding_model".

What notices a dead run depends on how it was started (Dagster 1.13, DefaultRunLauncher):

* a run launched through the queue (daemon, sensors, schedules, the UI, ``dagster job launch``)
  runs in a process the code server started; the code server checks its run processes every
  0.5 s and fails a run whose process is gone. Run monitoring adds nothing here: the
  DefaultRunLauncher has no run worker health check (``supports_check_run_worker_health`` is
  False: only the K8s, ECS and Docker launchers have one).
* a run started in the CLI process itself (``dagster asset materialize``, ``dagster job
  execute``) has no watcher: only run monitoring's ``max_runtime_seconds`` (or a run's
  ``dagster/max_runtime`` tag) fails it, that long after it started.

Then run monitoring frees the pool slots of a finished run ``free_slots_after_run_end_seconds``
after its end (checked every ``poll_interval_seconds``), and the queue starts what was waiting.

Here a real ``dagster-daemon run`` and ``dagster-webserver`` (each in its own session, a temp
DAGSTER_HOME with the project's dagster.yaml, or deploy/dagster.postgres.yaml against a
PostgreSQL server the fixture starts: the test runs on both) serve a test-only code location
written into the temp dir. Two runs fill both run slots (two, on either instance), each with a
step holding a pool: a queued run (``hold_chroma_job``, launched through GraphQL, retried on a
crash with the ingest jobs' retry tags) and a ``dagster asset materialize`` of an asset on pool
``embedding_model``. Four more runs wait in the queue: one per pool, one on no pool, one that
raises. The test SIGKILLs both dead runs' process trees (only processes it started) and
asserts, with no operator action: the queued run is FAILURE within seconds and retried, the CLI
run is FAILURE after the max runtime, each pool slot is freed within the stated bound after its
run's end, and every waiting run then starts (only after what blocked it went away) and
succeeds; the failing run is not retried.

Timing. The shipped dagster.yaml polls every 10 s and frees slots 20 s after a run's last
update: a dead queued run is FAILURE in ~1 s and its slots are free within 0.5 + 5 (the retry
daemon tags it) + 20 + 10 = 35.5 s, asserted ≤ 60 s from the shipped file below (measured twice with
the shipped poll and free numbers: FAILURE after 0.5 s, slot free after 28-29 s, the next run
on that pool started after 31-36 s). ``max_runtime_seconds: 21600`` (6 h) is the backstop for CLI
runs. This test overrides only those three numbers in its temp dagster.yaml (poll 1 s, free
after 4 s, max runtime 40 s) so that it ends in ~60 s; the mechanism is the same.

The test kills a run's whole process tree (a machine or cgroup losing it). If only the run
process dies, its step process keeps running as an orphan (measured); the run is still failed
and its slot freed, so the next step on that pool runs beside the orphan.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from llm_data_platform.defs.ingest.jobs import STAGE_JOBS, ingest_jobs
from llm_data_platform.defs.partitions import build_partitions
from llm_data_platform_tests.daemon import (
    BIN,
    STOP_SECONDS,
    Site,
    _descendants,
    _table,
    prepared_instance,
    site_env,
    workspace_file,
)
from llm_data_platform_tests.postgres import postgres_server

PROJECT = Path(__file__).resolve().parents[1]
LOCATION = "dead_runs"

# test-level overrides of the shipped run_monitoring numbers (see the module docstring)
POLL_SECONDS = 1
FREE_SLOTS_AFTER_SECONDS = 4
MAX_RUNTIME_SECONDS = 40  # > the CLI run's start → kill (~12 s), asserted
CODE_SERVER_TICK = 0.5  # dagster/_grpc/server.py CLEANUP_TICK: the code server's check of its runs
# the run-retry daemon's interval (dagster/_daemon/auto_run_reexecution): tagging a failed run
# with its retry updates the run, and slots are freed that long after the run's last update
RETRY_DAEMON_SECONDS = 5
DEQUEUE_SECONDS = 5  # the run queue's default dequeue interval (the project does not change it)
SLACK = 8  # seconds for a loaded 2-core machine: SQLite writes, process start-up
SHIPPED_BOUND_SECONDS = 60  # dead queued run → FAILURE, pool slots free (dagster.yaml, README)

START_SECONDS = 60  # webserver up, runs started and holding their pools
TOTAL_SECONDS = 150  # the whole test, a hard bound


def crash_retry_tags() -> dict[str, str]:
    """The ingest jobs' retry tags (llm_data_platform/defs/ingest/jobs.py), which the test
    location's jobs carry: a run whose process died is retried; one failed in an asset is not."""
    jobs = ingest_jobs(build_partitions("2026-01-01"))
    tags = [{k: v for k, v in job.tags.items() if "retr" in k} for job in jobs]
    assert tags and all(t == tags[0] for t in tags), tags
    return tags[0]


CODE = """
import os
import time
from pathlib import Path

import dagster as dg

MARKS = Path(os.environ["DEAD_RUNS_MARKS"])


def _mark(context, name):
    (MARKS / f"{{context.run_id}}.{{name}}").write_text(str(os.getpid()))


def _hold(context, name):
    _mark(context, name)
    if context.run.parent_run_id is None:  # the first attempt holds its pool until killed
        time.sleep(600)


@dg.asset(pool="embedding_model")
def hold_embedding_model(context):
    _hold(context, "hold_embedding_model")


@dg.asset(pool="chroma")
def hold_chroma(context):
    _hold(context, "hold_chroma")


@dg.asset(pool="embedding_model")
def embed(context):
    _mark(context, "embed")


@dg.asset(pool="chroma")
def index(context):
    _mark(context, "index")


@dg.asset
def plain(context):
    _mark(context, "plain")


@dg.asset
def broken(context):
    raise ValueError("a data error: a retry would fail the same way")


defs = dg.Definitions(
    assets=[hold_embedding_model, hold_chroma, embed, index, plain, broken],
    jobs=[
        dg.define_asset_job("hold_chroma_job", [hold_chroma], tags={retry_tags!r}),
        dg.define_asset_job("broken_job", [broken], tags={retry_tags!r}),
        dg.define_asset_job("embed_job", [embed]),
        dg.define_asset_job("index_job", [index]),
        dg.define_asset_job("plain_job", [plain]),
    ],
)
"""

# ---- settings -------------------------------------------------------------------------------


def shipped_settings() -> dict:
    return yaml.safe_load((PROJECT / "dagster.yaml").read_text())


def slot_bound(monitoring: dict) -> float:
    """Worst case, dead queued run → its pool slots free: the code server's check, the retry
    daemon's tag on the run, then ``free_slots_after_run_end_seconds`` and one monitoring poll."""
    return (
        CODE_SERVER_TICK
        + RETRY_DAEMON_SECONDS
        + monitoring["free_slots_after_run_end_seconds"]
        + monitoring["poll_interval_seconds"]
    )


def test_shipped_run_monitoring_frees_a_dead_run_within_the_stated_bound():
    """The numbers the README and dagster.yaml state, checked against the shipped file."""
    settings = shipped_settings()
    monitoring = settings["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["max_resume_run_attempts"] == 0  # the DefaultRunLauncher cannot resume
    assert slot_bound(monitoring) <= SHIPPED_BOUND_SECONDS, monitoring
    # the backstop for runs nothing watches (CLI runs), longer than any run measured here
    assert 3600 <= monitoring["max_runtime_seconds"] <= 24 * 3600, monitoring
    assert settings["run_retries"]["enabled"] is True
    assert settings["concurrency"]["pools"]["default_limit"] == 1
    # retries are opt-in per job: ingest jobs retry a dead run only, staging jobs any failure
    assert settings["run_retries"]["max_retries"] == 0
    tags = crash_retry_tags()
    assert (
        int(tags["dagster/max_retries"]) >= 1
        and tags["dagster/retry_on_asset_or_op_failure"] == "false"
    ), tags
    assert all(int(job.tags["dagster/max_retries"]) >= 1 for job in STAGE_JOBS.values())


# ---- the instance ---------------------------------------------------------------------------


def _run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id
    return run


def _record(instance: dg.DagsterInstance, run_id: str):
    return instance.get_run_record_by_id(run_id)


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid the code server's run process reports ("Started process for run (pid: N).")."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if entry.message.startswith("Started process for run"):
            return int(entry.dagster_event.engine_event_data.metadata["pid"].value)
    return None


def _claimed(instance: dg.DagsterInstance, pool: str) -> set[str]:
    return instance.event_log_storage.get_concurrency_info(pool).active_run_ids


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.message for e in instance.all_logs(run_id) if e.is_dagster_event][-8:]


# ---- the test -------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def instance_settings(request) -> Iterator[tuple[dict, dict[str, str]]]:
    """(dagster.yaml, environment) of each shipped instance: the default on SQLite, and
    deploy/dagster.postgres.yaml against a real PostgreSQL server started for the test."""
    if request.param == "sqlite":
        yield shipped_settings(), {}
        return
    with postgres_server() as pg:
        yield yaml.safe_load((PROJECT / "deploy" / "dagster.postgres.yaml").read_text()), pg.env


def test_dead_runs_are_failed_their_slots_freed_and_the_queue_moves(
    tmp_path, instance_settings, monkeypatch
):
    began = time.monotonic()
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings, storage_env = instance_settings
    settings["run_monitoring"].update(
        poll_interval_seconds=POLL_SECONDS,
        free_slots_after_run_end_seconds=FREE_SLOTS_AFTER_SECONDS,
        max_runtime_seconds=MAX_RUNTIME_SECONDS,
    )
    # the scenario fills two run slots with dead runs (Postgres ships more)
    settings["concurrency"]["runs"]["max_concurrent_runs"] = 2
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    marks = tmp_path / "marks"
    marks.mkdir()
    code = tmp_path / "dead_runs_location.py"
    code.write_text(CODE.format(retry_tags=crash_retry_tags()))
    workspace = workspace_file(tmp_path, code, LOCATION)
    env = site_env(home, {**storage_env, "DEAD_RUNS_MARKS": str(marks)})
    for key, value in storage_env.items():  # this process's instance reads them too
        monkeypatch.setenv(key, value)
    instance = prepared_instance(home)

    def mark(run_id: str, name: str) -> int | None:
        path = marks / f"{run_id}.{name}"
        return int(path.read_text()) if path.exists() and path.read_text() else None

    s = Site(tmp_path, env, location=LOCATION)
    try:
        daemon = s.start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], "daemon")
        # the measured command: a CLI run, in the CLI's own process, on pool embedding_model
        cli = s.start(
            [str(BIN / "dagster"), "asset", "materialize", "-f", str(code)]
            + ["--select", "hold_embedding_model"],
            "materialize",
        )
        deadline = time.monotonic() + START_SECONDS
        s.start_webserver(workspace)
        queued_hold = s.launch("hold_chroma_job")

        # both runs started and their steps hold their pools (the slot is claimed before the
        # step starts); nothing else can start: the two run slots are taken
        cli_run = step_pids = worker = None
        while True:
            assert daemon.poll() is None, s.log("daemon")
            assert cli.poll() is None, s.log("materialize")
            found = [p.name.split(".")[0] for p in marks.glob("*.hold_embedding_model")]
            cli_run = found[0] if found else None
            worker = _run_worker_pid(instance, queued_hold)
            step_pids = (
                mark(cli_run, "hold_embedding_model") if cli_run else None,
                mark(queued_hold, "hold_chroma"),
            )
            if worker and all(step_pids):
                break
            assert time.monotonic() < deadline, (
                f"runs not holding their pools in {START_SECONDS} s: "
                f"{_run(instance, queued_hold).status}\n{s.log('daemon')}\n{s.log('materialize')}"
            )
            time.sleep(0.25)
        assert _claimed(instance, "embedding_model") == {cli_run}
        assert _claimed(instance, "chroma") == {queued_hold}
        # plain_job first in the queue: it needs only a run slot, so it takes the one the dead
        # queued run frees at the queue's next tick. Behind index_job (whose chroma slot frees a
        # few seconds later) it raced that tick: on Postgres the slot frees within one dequeue
        # interval of the run's end, and index_job, earlier in the queue, could win it.
        waiting = {job: s.launch(job) for job in ("plain_job", "index_job", "embed_job")}
        broken = s.launch("broken_job")

        # the CLI run's process is the run worker: its session is ours
        assert cli.pid in s.ours() and worker in s.ours()
        assert step_pids[0] in _descendants(cli.pid, _table())
        assert step_pids[1] in _descendants(worker, _table())
        cli_started = _record(instance, cli_run).start_time
        assert _run(instance, cli_run).status == dg.DagsterRunStatus.STARTED
        assert time.time() - cli_started < MAX_RUNTIME_SECONDS - SLACK, "too slow a start"
        killed_at = time.time()
        killed = s.kill_tree(worker) + s.kill_tree(cli.pid)
        cli.wait(timeout=STOP_SECONDS)

        # ---- no operator action from here on: wait for every run to settle ----
        freed_at: dict[str, float] = {}
        runs = [queued_hold, cli_run, *waiting.values(), broken]
        retry = None
        deadline = time.monotonic() + max(5.0, TOTAL_SECONDS - (time.monotonic() - began))
        while True:
            assert daemon.poll() is None, s.log("daemon")
            now = time.time()
            for pool in ("chroma", "embedding_model"):
                if pool not in freed_at and not _claimed(instance, pool) & {queued_hold, cli_run}:
                    freed_at[pool] = now
            retry = _run(instance, queued_hold).tags.get("dagster/auto_retry_run_id")
            every = runs + ([retry] if retry else [])
            if retry and all(_run(instance, r).is_finished for r in every):
                break
            statuses = {r: _run(instance, r).status.value for r in every}
            assert time.monotonic() < deadline, (
                f"not settled {time.monotonic() - began:.0f} s into the test: {statuses}\n"
                f"freed {freed_at}\n{s.log('daemon')}"
            )
            time.sleep(0.25)
        elapsed = time.monotonic() - began

        def ended(run_id: str) -> float:
            return _record(instance, run_id).end_time - killed_at

        def started(run_id: str) -> float:
            return _record(instance, run_id).start_time - killed_at

        report = (
            f"killed {killed}; queued hold FAILURE after {ended(queued_hold):.1f} s, "
            f"CLI run after {ended(cli_run):.1f} s; slots freed "
            f"{ {k: round(v - killed_at, 1) for k, v in freed_at.items()} }; starts "
            f"{ {j: round(started(r), 1) for j, r in waiting.items()} }"
        )
        context = f"{report}\n{s.log('daemon')}"

        # the dead queued run: failed by its code server within a second or so
        hold = _run(instance, queued_hold)
        assert hold.status == dg.DagsterRunStatus.FAILURE, context
        assert ended(queued_hold) <= CODE_SERVER_TICK + SLACK, context
        assert any("terminated by signal 9" in m for m in _messages(instance, queued_hold)), (
            _messages(instance, queued_hold)
        )
        # …its chroma slot freed within the bound, and the run retried (it died: not a data
        # error), the retry succeeding once the slot was free
        chroma_free = freed_at["chroma"] - killed_at
        assert chroma_free <= slot_bound(settings["run_monitoring"]) + SLACK, context
        assert chroma_free >= FREE_SLOTS_AFTER_SECONDS - 1, context
        assert hold.tags.get("dagster/will_retry") == "true", hold.tags
        assert _run(instance, retry).status == dg.DagsterRunStatus.SUCCESS, context
        assert started(retry) >= chroma_free - 1, context

        # the dead CLI run: nothing watched it; failed at its max runtime, then its slot freed
        cli_record = _record(instance, cli_run)
        assert cli_record.dagster_run.status == dg.DagsterRunStatus.FAILURE, context
        runtime = cli_record.end_time - cli_record.start_time
        assert MAX_RUNTIME_SECONDS <= runtime <= MAX_RUNTIME_SECONDS + POLL_SECONDS + SLACK, context
        assert any("maximum runtime" in m for m in _messages(instance, cli_run)), _messages(
            instance, cli_run
        )
        embedding_free = freed_at["embedding_model"] - cli_record.end_time
        assert embedding_free >= FREE_SLOTS_AFTER_SECONDS - 1, context
        assert embedding_free <= FREE_SLOTS_AFTER_SECONDS + POLL_SECONDS + SLACK, context

        # every waiting run started once what blocked it was gone, and succeeded
        for job, run_id in waiting.items():
            assert _run(instance, run_id).status == dg.DagsterRunStatus.SUCCESS, (job, context)
        assert started(waiting["plain_job"]) >= ended(queued_hold) - 1, context  # a run slot
        assert started(waiting["index_job"]) >= chroma_free - 1, context  # the chroma slot
        assert started(waiting["embed_job"]) >= freed_at["embedding_model"] - killed_at - 1
        assert started(waiting["plain_job"]) <= ended(queued_hold) + DEQUEUE_SECONDS + SLACK, (
            context
        )
        for job, pool in (("index_job", "index"), ("embed_job", "embed")):
            assert mark(waiting[job], pool), f"{job}'s step did not run"

        # a run that failed in its asset is not retried: the same data would fail again
        broke = _run(instance, broken)
        assert broke.status == dg.DagsterRunStatus.FAILURE
        assert broke.tags.get("dagster/will_retry") == "false", broke.tags
        assert "dagster/auto_retry_run_id" not in broke.tags
        assert not _claimed(instance, "chroma") and not _claimed(instance, "embedding_model")
        print(f"\ndead runs: {report}; whole test {elapsed:.1f} s")
    finally:
        s.stop()
        instance.dispose()
    assert not s.alive(), f"processes left running: {s.alive()}"
