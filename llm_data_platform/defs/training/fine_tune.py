"""``fine_tune_job``: the week's validated batch uploaded and tuned through the OpenAI API.

Off by default (``LDP_FINE_TUNE=off``): the step then succeeds without a materialization and
says why, as it does when no key is set (``OPENAI_API_KEY``; a keyless OpenAI-compatible
server at ``OPENAI_BASE_URL`` needs none). On, it reads the week's manifest, checks the files
against it, uploads them (``files``, purpose ``fine-tune``), starts a job on
``LDP_TARGET_MODEL`` (``fine_tuning.jobs``), and polls it with its events until it succeeds,
fails, or ``LDP_FINE_TUNE_WAIT_SECONDS`` pass. The job's record (ids, status, model) is kept
in the lake beside the batch, so a re-run for an unchanged batch polls the same job instead of
paying for a second one; a changed batch, or a job that failed, starts a new one.

Every API error surfaces as a ``dg.Failure`` that names the cause and the fix: a rate limit
(after the client's retries), an exhausted quota (not retried), a rejected key, an invalid
file, an unreachable server.
"""

import hashlib
import json
import posixpath
import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from llm_data_platform.defs.partitions import Partitions, weekly_backfill_policy
from llm_data_platform.defs.training.assets import BATCH_FILES, MANIFEST, batch_dir
from llm_data_platform.defs.training.resources import TrainingSettings
from llm_data_platform.lib.openai_client import (
    explain_openai_error,
    is_insufficient_quota,
    make_openai_client,
    redact,
)
from llm_data_platform.resources.lake import LakeResource

JOB_RECORD = "job.json"
FINISHED = ("succeeded", "failed", "cancelled")
TIMEOUT_SECONDS = 120.0  # per request (an upload of a large file included)
MAX_RETRIES = 4  # rate limits and 5xx, with the client's backoff


def skip_reason(training: TrainingSettings) -> str | None:
    """Why the fine-tune step does nothing, or None when it runs."""
    if not training.fine_tune:
        return (
            "Fine-tuning is off (LDP_FINE_TUNE=off): the week's batch was not uploaded. Set "
            "LDP_FINE_TUNE=on and OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)."
        )
    if not training.openai_api_key and not training.openai_base_url:
        return (
            "LDP_FINE_TUNE is on but OPENAI_API_KEY is not set: the week's batch was not "
            "uploaded. Set OPENAI_API_KEY (or OPENAI_BASE_URL for a keyless compatible server)."
        )
    return None


def _failure(exc: Exception, training: TrainingSettings, doing: str) -> dg.Failure:
    """The API error as a clear failure: what was being done, why it failed, what fixes it."""
    import openai

    key, url = training.openai_api_key, training.openai_base_url or None
    body = getattr(exc, "body", None)
    said = body.get("message") if isinstance(body, dict) and body.get("message") else str(exc)
    said = redact(str(said), key)[:400]
    if is_insufficient_quota(exc):
        why = f"the account's quota is exhausted ({said}). Add credit or raise the limit."
    elif isinstance(exc, openai.RateLimitError):
        why = f"rate limited after {MAX_RETRIES} retries ({said}). Re-run it later."
    elif isinstance(exc, openai.BadRequestError):
        why = f"the request was rejected as invalid ({said}). Check the batch: ldp export-batch."
    else:
        why = explain_openai_error(exc, url, key) or f"{type(exc).__name__}: {said}"
    return dg.Failure(f"Fine-tuning: {doing} failed: {why}")


def _call(training: TrainingSettings, doing: str, fn: Callable[[], Any]) -> Any:
    import openai

    try:
        return fn()
    except openai.OpenAIError as exc:
        raise _failure(exc, training, doing) from exc


def _batch(lake: LakeResource, week: str) -> tuple[dict, dict[str, bytes], str]:
    """(manifest, file bytes, the manifest's sha256) of the week, checked like an export."""
    directory = batch_dir(lake, week)
    raw = lake.read_bytes(posixpath.join(directory, MANIFEST))
    if raw is None:
        raise dg.Failure(
            f"No training batch for the week {week}. Build it first: `dagster asset materialize "
            f"-m llm_data_platform --select training_batches --partition {week}`."
        )
    manifest = json.loads(raw)
    files = {}
    for name in BATCH_FILES:
        data = lake.read_bytes(posixpath.join(directory, name)) or b""
        if hashlib.sha256(data).hexdigest() != manifest["files"][name]["sha256"]:
            raise dg.Failure(f"{week}/{name} does not match its manifest: rebuild the week.")
        files[name] = data
    return manifest, files, hashlib.sha256(raw).hexdigest()


def _start(client, training: TrainingSettings, week: str, files: dict[str, bytes]) -> dict:
    """Upload the files and create the job; the record of what was started."""
    uploaded = {}
    for name, data in files.items():
        if not data:
            continue  # an empty validation file is not sent
        stored = _call(
            training,
            f"uploading {name}",
            lambda n=name, d=data: client.files.create(
                file=(f"ldp-{week}-{n}", d), purpose="fine-tune"
            ),
        )
        uploaded[name] = stored.id
    job = _call(
        training,
        "creating the fine-tuning job",
        lambda: client.fine_tuning.jobs.create(
            model=training.target_model,
            training_file=uploaded["train.jsonl"],
            validation_file=uploaded.get("validation.jsonl"),
            suffix=f"ldp-{week}",
        ),
    )
    return {"job_id": job.id, "files": uploaded, "status": job.status, "model": job.model}


def _poll(
    context: dg.AssetExecutionContext, client, training: TrainingSettings, record: dict
) -> Any:
    """Retrieve the job until it finishes or the wait is over, logging its new events."""
    deadline = time.monotonic() + training.wait_seconds
    seen: set[str] = set()
    while True:
        job = _call(
            training, "polling the job", lambda: client.fine_tuning.jobs.retrieve(record["job_id"])
        )
        events = _call(
            training,
            "reading the job's events",
            lambda: client.fine_tuning.jobs.list_events(record["job_id"], limit=50),
        )
        for event in reversed(list(events.data)):  # listed newest first
            if event.id not in seen:
                seen.add(event.id)
                context.log.info(f"{record['job_id']}: {event.message}")
        if job.status in FINISHED or time.monotonic() >= deadline:
            return job
        time.sleep(training.poll_seconds)


def fine_tune_job(
    context: dg.AssetExecutionContext, lake: LakeResource, training: TrainingSettings
):
    """The week's fine-tuning job: started once per batch, polled to completion."""
    reason = skip_reason(training)
    if reason:
        context.log.warning(reason)
        return  # no materialization: the step is skipped, not failed
    week = context.partition_key
    manifest, files, manifest_sha = _batch(lake, week)
    client = make_openai_client(
        training.openai_api_key, training.openai_base_url or None, TIMEOUT_SECONDS, MAX_RETRIES
    )
    record_path = posixpath.join(batch_dir(lake, week), "fine_tune", JOB_RECORD)
    previous = json.loads(lake.read_bytes(record_path) or b"{}")
    if previous.get("manifest_sha256") == manifest_sha and previous.get("status") not in (
        "failed",
        "cancelled",
    ):
        record = previous
        context.log.info(f"Resuming {record['job_id']} (the batch is unchanged).")
    else:
        record = {"week": week, "manifest_sha256": manifest_sha}
        record.update(_start(client, training, week, files))
        lake.write_bytes(record_path, json.dumps(record, indent=2).encode())
    job = _poll(context, client, training, record)
    error = job.error.message if getattr(job, "error", None) else None
    record.update(
        status=job.status,
        fine_tuned_model=job.fine_tuned_model,
        trained_tokens=job.trained_tokens,
        error=error,
    )
    lake.write_bytes(record_path, json.dumps(record, indent=2).encode())
    if job.status in ("failed", "cancelled"):
        raise dg.Failure(
            f"Fine-tuning job {record['job_id']} {job.status}: {error or 'no reason given'}. "
            "Fix the batch and re-run: a new job is started for it.",
            metadata={"job_id": record["job_id"], "status": job.status},
        )
    if job.status != "succeeded":
        context.log.warning(
            f"{record['job_id']} is still {job.status} after {training.wait_seconds:.0f} s "
            "(LDP_FINE_TUNE_WAIT_SECONDS); re-run this partition to keep polling it."
        )
    yield dg.MaterializeResult(
        metadata={
            "job_id": record["job_id"],
            "status": job.status,
            "fine_tuned_model": job.fine_tuned_model or "",
            "trained_tokens": job.trained_tokens or 0,
            "base_model": training.target_model,
            "training_file": record["files"].get("train.jsonl", ""),
            "validation_file": record["files"].get("validation.jsonl", ""),
            "train_examples": manifest["files"]["train.jsonl"]["examples"],
            "estimated_usd_per_epoch": (manifest.get("estimate") or {}).get("usd_per_epoch"),
            "server": training.openai_base_url or "https://api.openai.com/v1",
        }
    )


def fine_tune_asset(partitions: Partitions, training: TrainingSettings) -> dg.AssetsDefinition:
    return dg.asset(
        name="fine_tune_job",
        partitions_def=partitions.weekly,
        backfill_policy=weekly_backfill_policy,
        group_name="curated",
        kinds={"openai"},
        deps=["training_batches"],
        output_required=False,
        description="The week's fine-tuning job (off by default: LDP_FINE_TUNE).",
        resource_defs={"training": training},
    )(fine_tune_job)
