"""A run executed inside the CLI's own process and killed there is failed by dead_runs_sensor
(Dagster itself leaves it STARTED: it would hold the run queue and its pools for 6 h)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from llm_data_platform.defs.operations.dead_runs import dead_runs_sensor, process_alive

SLOW_ASSET = textwrap.dedent(
    """
    import time
    import dagster as dg

    @dg.asset
    def slow_asset() -> None:
        time.sleep(120)  # killed by the test long before
    """
)


def _started_run(instance: dg.DagsterInstance, deadline: float) -> dg.DagsterRun:
    while time.monotonic() < deadline:
        runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        if runs:
            start = instance.get_records_for_run(
                runs[0].run_id, of_type=dg.DagsterEventType.RUN_START
            ).records
            if start:
                return runs[0]
        time.sleep(0.2)
    raise AssertionError("the CLI run never started")


def test_a_killed_cli_run_is_failed_and_a_live_one_is_left(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    code = tmp_path / "slow.py"
    code.write_text(SLOW_ASSET)
    dagster = Path(sys.executable).with_name("dagster")
    cli = subprocess.Popen(
        [str(dagster), "asset", "materialize", "-f", str(code), "--select", "slow_asset"],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        run = _started_run(instance, time.monotonic() + 90)

        # alive: the sensor leaves it alone
        dead_runs_sensor(dg.build_sensor_context(instance=instance))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

        cli.send_signal(signal.SIGKILL)  # the process this test started
        cli.wait(timeout=30)
        # Dagster itself does not notice
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

        result = dead_runs_sensor(dg.build_sensor_context(instance=instance))
        assert "failed 1 dead run(s)" in str(result.skip_message)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        failures = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        message = failures[0].event_log_entry.dagster_event.message
        assert f"(pid {cli.pid}) is gone" in message and "Re-run it" in message
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(timeout=30)


def test_a_reused_pid_is_not_the_run_process():
    now = time.time()
    assert process_alive(os.getpid(), started_before=now)
    # this process started after a run that began an hour ago: not that run's process
    assert not process_alive(os.getpid(), started_before=now - 3600)
