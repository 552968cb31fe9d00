"""RAG automation: the index follows the documents, with a nightly safety-net sync."""

import dagster as dg

from llm_data_platform.defs.ingest.jobs import ingest_job_name, ingest_jobs
from llm_data_platform.defs.partitions import Partitions

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


def rag_index_after_documents_sensor(partitions: Partitions) -> dg.SensorDefinition:
    """Each successful document ingest → an index sync. Only that job's runs are read (the
    storage filters by job name), so other jobs' runs never use up a tick."""
    (documents_job,) = [
        j for j in ingest_jobs(partitions) if j.name == ingest_job_name("documents")
    ]

    @dg.run_status_sensor(
        name="rag_index_after_documents_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[documents_job],
        request_job=rag_index_job,
        # 5 s, not the default 30: an edited page waits for this tick on its way to users;
        # a tick reads only the documents job's finished runs (cheap)
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Keeps the index in sync: each successful document ingest triggers a sync.",
    )
    def _sensor(context: dg.RunStatusSensorContext):
        return dg.RunRequest(run_key=f"rag_index_after:{context.dagster_run.run_id}")

    return _sensor
