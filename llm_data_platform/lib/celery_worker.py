"""The Celery app of a step worker: ``celery -A llm_data_platform.lib.celery_worker worker``.

Built from the same settings (LDP_CELERY_*) as the runs' executor, so both use one broker.
Start each worker with the run's LDP_* and DAGSTER_HOME (or DAGSTER_PG_*) environment: its
steps read the lake and write events to the instance exactly as the run process would.
"""

from __future__ import annotations

from llm_data_platform.lib.celery_executor import worker_app
from llm_data_platform.settings import load_settings

app = worker_app(load_settings())
