"""The engine of the history-wide steps: in process (default) or Apache Spark.

A thin resource of our own rather than dagster-pyspark's ``PySparkResource``: that one imports
pyspark (and starts a JVM) when the resource is set up, for every run of the code location;
this one imports pyspark and creates the session only when a step asks for it with
``LDP_HISTORY_ENGINE=spark``. The session is one per process (``getOrCreate``): a session the
process had already (a test module's) is used and left running; one this resource created is
stopped when the step ends.

Local mode by default (``LDP_SPARK_MASTER=local[2]``: the driver runs the executors as
threads, UI off, bound to loopback); a cluster is ``spark://host:7077`` or ``yarn``, where the
executors must be able to read the lake's paths (see ``transforms/history_duplicates_spark``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENGINES = ("local", "spark")


def spark_conf(
    master: str, driver_memory: str, shuffle_partitions: int, app_name: str
) -> dict[str, str]:
    """The session's settings: few shuffle partitions (one machine's cores, small tables),
    no UI, partition folders read as strings (``dt=2026-01-05``, not a date); in local mode
    bound to loopback only (a cluster's executors must reach the driver on its address)."""
    loopback = (
        {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
        if master.startswith("local")
        else {}
    )
    return {
        **loopback,
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.driver.memory": driver_memory,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.default.parallelism": str(shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }


def spark_session(conf: dict[str, str]) -> SparkSession:
    """The process's SparkSession, created with ``conf`` if there is none yet (the JVM's
    own address on loopback too: ``SPARK_LOCAL_IP``, unless the environment chooses)."""
    import os
    import warnings

    from pyspark.sql import SparkSession

    if conf.get("spark.driver.bindAddress") == "127.0.0.1":
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # pyspark 4.3 warns on pandas 3 whenever it converts; this code converts Arrow only
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


class HistoryEngineResource(dg.ConfigurableResource):
    """Which engine runs the history-wide steps, and the Spark session when it is Spark."""

    engine: str = "local"  # LDP_HISTORY_ENGINE
    spark_master: str = "local[2]"  # LDP_SPARK_MASTER
    spark_driver_memory: str = "2g"  # LDP_SPARK_DRIVER_MEMORY
    spark_shuffle_partitions: int = 4  # LDP_SPARK_SHUFFLE_PARTITIONS
    app_name: str = "llm_data_platform"

    _session: Any = PrivateAttr(default=None)
    _created: bool = PrivateAttr(default=False)

    def session(self) -> SparkSession:
        """The SparkSession (created on first use; pyspark is imported only here)."""
        if self.engine != "spark":
            raise ValueError(f"the history engine is {self.engine!r}, not 'spark'")
        if self._session is None:
            from pyspark.sql import SparkSession

            existed = SparkSession.getActiveSession() is not None
            conf = spark_conf(
                self.spark_master,
                self.spark_driver_memory,
                self.spark_shuffle_partitions,
                self.app_name,
            )
            self._session = spark_session(conf)
            self._created = not existed
        return self._session

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._session is not None and self._created:
            self._session.stop()
        self._session, self._created = None, False
