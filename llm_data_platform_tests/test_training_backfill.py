"""A backfill of weeks of training batches from the CLI, run by the real daemon and read
through the real webserver's GraphQL (the machinery of test_ui_backfill.py).

``training_batches`` has ``BackfillPolicy.multi_run(1)``: a backfill over a range of weeks runs
one run per week, tagged with its week, and its page in the UI loads. The demo has data in
the first week only: that week's batch is built and passes its check; the second week's run
fails on the blocking batch check (no examples), which is the check doing its job.
"""

from __future__ import annotations

import json
import time

from llm_data_platform.defs.partitions import weekly_backfill_policy
from llm_data_platform_tests.conftest import DAYS, WEEK, make_platform
from llm_data_platform_tests.test_ui_backfill import (
    BACKFILL_PAGE,
    BACKFILL_SECONDS,
    BIN,
    LOCATION,
    backfill_args,
    site,
    stage,
    start_webserver,
    stop_instigators,
    tags,
)

JOB = "weekly_training_job"
WEEKS = [WEEK, "2026-01-12"]
DAILY = (
    "raw_conversations,raw_conversations_quarantine,conversations_clean,"
    "conversations_clean_dropped,training_examples,training_selection_log"
)


def test_a_backfill_of_weeks_runs_one_run_per_week_and_opens_in_the_ui(tmp_path):
    from llm_data_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.get(_key("training_batches")).backfill_policy == weekly_backfill_policy
    platform = make_platform(tmp_path)
    with site(tmp_path, platform.env) as s:
        stage(s)
        s.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", LOCATION, "--select", DAILY,
             "--partition-range", f"{DAYS[0]}...{DAYS[-1]}"]
        )  # fmt: skip
        start_webserver(s)
        stop_instigators(s)
        launched = json.loads(s.run(backfill_args(JOB, WEEKS)).stdout)
        assert launched["partitions"] == WEEKS, launched
        daemon = s.start([str(BIN / "dagster-daemon"), "run", "-m", LOCATION], "daemon")
        deadline = time.monotonic() + BACKFILL_SECONDS
        while True:
            page = s.ok(BACKFILL_PAGE, {"backfillId": launched["backfill_id"]})
            page = page["partitionBackfillOrError"]
            assert page["__typename"] == "PartitionBackfill", page
            done = len(page["runs"]) == len(WEEKS) and not page["cancelableRuns"]
            if page["status"] != "REQUESTED" and done:
                break
            assert daemon.poll() is None, s.log("daemon")
            assert time.monotonic() < deadline, json.dumps(page)[:2000] + s.log("daemon")
            time.sleep(2)
        assert page["error"] is None and page["partitionNames"] == WEEKS
        by_week = {tags(run)["dagster/partition"]: run for run in page["runs"]}
        assert sorted(by_week) == WEEKS  # one run per week
        assert by_week[WEEK]["status"] == "SUCCESS", s.log("daemon")
        assert by_week[WEEKS[1]]["status"] == "FAILURE"  # no examples: the check blocks it
        statuses = {
            p["partitionName"]: p["runStatus"] for p in page["partitionStatuses"]["results"]
        }
        assert statuses == {WEEK: "SUCCESS", WEEKS[1]: "FAILURE"}
    manifest = tmp_path / "data/lake/curated/training_batches" / f"week={WEEK}/manifest.json"
    assert json.loads(manifest.read_text())["files"]["train.jsonl"]["examples"] >= 10


def _key(name: str):
    import dagster as dg

    return dg.AssetKey(name)
