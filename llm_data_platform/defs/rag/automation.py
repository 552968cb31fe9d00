"""RAG automation: the index follows the documents, with a nightly safety-net sync."""

import dagster as dg

from llm_data_platform.defs.ingest.jobs import ingest_job_name

rag_index_job = dg.define_asset_job(
    "rag_index_job",
    selection=["retrieval_eval_set", "rag_index", "rag_index_live"],
    description="Refresh the evaluation set, build the next index version (upserts and "
    "deletes), evaluate it against the thresholds and the live version, promote it.",
)

retrieval_eval_set_job = dg.define_asset_job(
    "retrieval_eval_set_job",
    selection=["retrieval_eval_set"],
    description="Reload the retrieval-evaluation questions (decontamination, index quality).",
)

rag_index_schedule = dg.ScheduleDefinition(
    name="rag_index_schedule",
    job=rag_index_job,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.run_status_sensor(
    name="rag_index_after_documents_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=rag_index_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the index in sync: each successful document ingest triggers a sync.",
)
def rag_index_after_documents_sensor(context: dg.RunStatusSensorContext):
    # every job of this code location is watched; only document ingests set off a sync
    if context.dagster_run.job_name != ingest_job_name("documents"):
        return dg.SkipReason(f"{context.dagster_run.job_name} does not change documents")
    return dg.RunRequest(run_key=f"rag_index_after:{context.dagster_run.run_id}")
