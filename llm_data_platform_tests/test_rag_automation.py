"""The index follows the documents: every successful document ingest asks for one sync, however
many other jobs' runs finished around it (the soak found a sensor that read one run a tick)."""

from __future__ import annotations

import dagster as dg

from llm_data_platform.definitions import build_definitions
from llm_data_platform_tests.conftest import settings_for


def _finished_run(instance: dg.DagsterInstance, job_name: str) -> str:
    """A successful run recorded under ``job_name`` (a trivial job of that name)."""

    @dg.op
    def noop() -> None:
        return None

    @dg.job(name=job_name)
    def job():
        noop()

    return job.execute_in_process(instance=instance).run_id


def test_each_document_ingest_asks_for_one_sync_among_many_other_runs(tmp_path):
    defs = build_definitions(settings_for({"LDP_HOME": str(tmp_path)}))
    sensor = defs.get_sensor_def("rag_index_after_documents_sensor")
    instance = dg.DagsterInstance.ephemeral()
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    cursor = first.cursor  # the sensor starts from now
    for _ in range(8):  # more than Dagster handles in one tick (5)
        _finished_run(instance, "stage_conversations_job")
    wanted = [_finished_run(instance, "ingest_documents_job") for _ in range(2)]
    _finished_run(instance, "ingest_conversations_job")
    requested = []
    for _ in range(3):  # the next ticks
        tick = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor)
        )
        requested += [r.run_key for r in tick.run_requests]
        cursor = tick.cursor
    assert requested[: len(wanted)] == [f"rag_index_after:{run_id}" for run_id in wanted]
    assert len(requested) == len(wanted)
