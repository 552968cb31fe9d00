"""The fine-tune job against a local OpenAI-speaking server on 127.0.0.1 (fake_openai.py):
off by default and without a key it is skipped with a clear message; on, it uploads the
week's files, starts a job on the target model, polls it with its events to completion, and
records it; each API error (rate limit, quota, invalid file, bad key) surfaces clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from llm_data_platform.definitions import build_resources
from llm_data_platform_tests.conftest import WEEK, graph_for, platform_env, settings_for
from llm_data_platform_tests.fake_openai import (
    BAD_KEY,
    INVALID_FILE,
    QUOTA,
    RATE_LIMIT,
    FakeOpenAI,
    serving,
)

KEY = "sk-test-FINETUNE42"


@pytest.fixture
def server():
    with serving(FakeOpenAI()) as fake:
        yield fake


@pytest.fixture
def lake_copy(built, tmp_path) -> Path:
    """The built platform's lake, copied: a test's job records stay its own."""
    platform, _ = built
    shutil.copytree(Path(platform.settings.lake_root), tmp_path / "data" / "lake")
    return tmp_path


def _run(root: Path, monkeypatch, **env: str) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """fine_tune_job for the week, in a process whose environment is ``env``."""
    full = {**platform_env(root), "LDP_FINE_TUNE_POLL_SECONDS": "0.01", **env}
    Path(full["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    if "OPENAI_API_KEY" in env:
        monkeypatch.setenv("OPENAI_API_KEY", env["OPENAI_API_KEY"])
    else:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = settings_for(full)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets("fine_tune_job"),
        resources=build_resources(settings),
        partition_key=WEEK,
        instance=instance,
        raise_on_error=False,
    )
    messages = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
    return result, messages


def _materialized(result: dg.ExecuteInProcessResult) -> dict:
    events = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("fine_tune_job")
    ]
    return {k: v.value for k, v in events[0].metadata.items()} if events else {}


def _failure(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = result.get_step_failure_events()
    return failure.step_failure_data.error.message


def _on(server: FakeOpenAI) -> dict[str, str]:
    return {"LDP_FINE_TUNE": "on", "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY}


def test_off_by_default_and_without_a_key_it_is_skipped_not_failed(lake_copy, monkeypatch):
    result, logs = _run(lake_copy, monkeypatch)
    assert result.success and not _materialized(result)
    assert any("LDP_FINE_TUNE=off" in m for m in logs)
    result, logs = _run(lake_copy, monkeypatch, LDP_FINE_TUNE="on")
    assert result.success and not _materialized(result)
    assert any("OPENAI_API_KEY is not set" in m for m in logs)


def test_uploads_the_week_starts_a_job_and_polls_it_to_completion(lake_copy, server, monkeypatch):
    server.required_key = KEY
    result, logs = _run(lake_copy, monkeypatch, **_on(server))
    assert result.success, _failure(result)
    meta = _materialized(result)
    week_dir = lake_copy / "data" / "lake" / "curated" / "training_batches" / f"week={WEEK}"
    uploaded = {f["filename"]: f["data"] for f in server.files.values()}
    assert uploaded == {
        f"ldp-{WEEK}-{name}": (week_dir / name).read_bytes()
        for name in ("train.jsonl", "validation.jsonl")
        if (week_dir / name).read_bytes()
    }
    (job,) = server.jobs.values()
    assert job["model"] == "gpt-4o-mini-2024-07-18" and job["suffix"] == f"ldp-{WEEK}"
    assert meta["status"] == "succeeded" and meta["job_id"] == job["id"]
    assert meta["fine_tuned_model"].startswith("ft:gpt-4o-mini-2024-07-18")
    assert any("successfully completed" in m for m in logs)  # the job's events, logged
    record = json.loads((week_dir / "fine_tune" / "job.json").read_text())
    assert record["job_id"] == job["id"] and record["status"] == "succeeded"
    # an unchanged batch is not tuned twice: the same job is read again
    again, _ = _run(lake_copy, monkeypatch, **_on(server))
    assert again.success and len(server.jobs) == 1 and len(server.files) == len(uploaded)
    assert set(server.authorizations) == {f"Bearer {KEY}"}


def test_a_rate_limit_is_retried_then_succeeds(lake_copy, server, monkeypatch):
    server.fail_on["/v1/fine_tuning/jobs"] = [RATE_LIMIT, RATE_LIMIT]
    result, _ = _run(lake_copy, monkeypatch, **_on(server))
    assert result.success and _materialized(result)["status"] == "succeeded"
    creates = [p for p, _ in server.requests if p == "/v1/fine_tuning/jobs"]
    assert len(creates) == 3


@pytest.mark.parametrize(
    "path, errors, expected, requests",
    [
        ("/v1/fine_tuning/jobs", [RATE_LIMIT] * 10, "rate limited after 4 retries", 5),
        ("/v1/files", [QUOTA] * 10, "quota is exhausted", 1),
        ("/v1/files", [BAD_KEY], "OPENAI_API_KEY", 1),
    ],
)
def test_each_api_error_surfaces_clearly(
    lake_copy, server, monkeypatch, path, errors, expected, requests
):
    server.fail_on[path] = list(errors)
    result, _ = _run(lake_copy, monkeypatch, **_on(server))
    assert not result.success
    message = _failure(result)
    assert expected in message and "Fine-tuning:" in message, message
    assert KEY not in message
    assert len([p for p, _ in server.requests if p == path]) == requests


def test_an_invalid_file_fails_the_job_with_its_reason_and_a_rerun_starts_anew(
    lake_copy, server, monkeypatch
):
    server.job_error = INVALID_FILE
    result, logs = _run(lake_copy, monkeypatch, **_on(server))
    assert not result.success
    assert "failed: The job failed due to an invalid training file" in _failure(result)
    assert any("invalid training file" in m for m in logs)
    server.job_error = None
    result, _ = _run(lake_copy, monkeypatch, **_on(server))
    assert result.success and len(server.jobs) == 2


def test_a_file_the_server_rejects_is_a_clear_failure(lake_copy, server, monkeypatch):
    week_dir = lake_copy / "data" / "lake" / "curated" / "training_batches" / f"week={WEEK}"
    # the server's own validation refuses the upload (the batch check would have, earlier)
    server.fail_on["/v1/files"] = [
        (400, {"message": "Invalid file format: line 1", "code": "invalid_file_format"})
    ]
    result, _ = _run(lake_copy, monkeypatch, **_on(server))
    assert not result.success and (week_dir / "train.jsonl").exists()
    assert "rejected as invalid (Invalid file format: line 1)" in _failure(result)
