"""Steps on Celery workers (dagster-celery over a Redis broker), the scale-out executor.

The run process keeps orchestrating (and claiming pool slots, see below); each step becomes a
Celery task that a worker process executes against the same Dagster instance and lake. The
executor a run uses and the app its workers run are both built from the same settings here,
so they meet on one broker and one queue. dagster_celery is imported only on this path: the
in-process default never pays for Celery.

Pools hold on Celery: dagster-celery's execution loop (``core_celery_execution_loop``) wraps
the plan in Dagster's ``InstanceConcurrencyContext``, so the run process claims a step's pool
slot in the instance before it submits the task and frees it only when the task's result
(the step's events) has come back — a "chroma" or "embedding_model" step never overlaps
another one, across runs and workers (llm_data_platform_tests/test_celery_executor.py).

A worker (``celery -A llm_data_platform.lib.celery_worker worker``) imports the code location
once when it starts (``include``) and forks its pool processes from that warm parent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

    from llm_data_platform.settings import Settings

QUEUE = "dagster"  # dagster-celery's one queue (make_app routes every task to it)
CODE_LOCATION = "llm_data_platform.definitions"
VISIBILITY_SECONDS = 21_600


def celery_config(settings: Settings) -> dict[str, Any]:
    """The ``celery_executor`` config from settings (also the workers' app arguments)."""
    return {
        "broker": settings.celery_broker_url,
        "backend": settings.celery_backend_url or settings.celery_broker_url,
        "include": [CODE_LOCATION],
        "config_source": {
            # A worker takes a task only when it has a free process, and acknowledges it when
            # the step is done: a long step never holds a second one back from an idle worker.
            "worker_prefetch_multiplier": 1,
            "task_acks_late": True,
            # Redis hands an unacknowledged task to another worker after this: longer than any
            # step may run (dagster.yaml's run_monitoring max_runtime_seconds, 6 h), or a long
            # step would run twice. The rest: dagster-celery's own broker retries.
            "broker_transport_options": {
                "visibility_timeout": VISIBILITY_SECONDS,
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
            "broker_connection_retry_on_startup": True,
            # results are read within seconds by the run process; a day covers any queue wait
            "result_expires": 86_400,
        },
    }


def build_celery_executor(settings: Settings) -> dg.ExecutorDefinition:
    """dagster-celery's executor, configured from settings (imported here, lazily)."""
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(settings), name="celery")


def worker_app(settings: Settings) -> Any:
    """The Celery app a worker runs: dagster-celery's step task on the executor's broker."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    config = celery_config(settings)
    app = make_app(CeleryExecutor.for_cli(**config).app_args())
    create_task(app)
    return app
