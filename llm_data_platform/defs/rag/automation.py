"""RAG automation: a nightly safety-net sync and the jobs to sync by hand.

The index follows the documents inside ``ingest_documents_job`` itself (its selection ends
with the index build, the quality gate and the promotion): one run from a landed edit to
users, with no second run to wait for."""

import dagster as dg

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
