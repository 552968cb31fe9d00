"""Every setting of the platform, read from the environment with its default.

Resources are built from these values in `definitions.py`; nothing else reads the environment.
Paths resolve against LDP_HOME (default: the current directory) so that the step subprocesses
Dagster starts, which re-import this module, see the same locations as the parent process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_data_platform.setting_catalog import SETTINGS, Setting

__all__ = ["SETTINGS", "Setting", "Settings", "load_settings"]

Getter = Callable[[str], str]  # a setting's value by name, its default when unset


def _env(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name)
    return default if value is None or value == "" else value


def _resolve(home: Path, value: str) -> str:
    if "://" in value:
        return value
    path = Path(value)
    return str(path if path.is_absolute() else (home / path).resolve())


@dataclass(frozen=True)
class Settings:
    home: str
    lake_root: str
    landing_dir: str
    chroma_path: str
    bm25_dir: str
    retrieval_hybrid: bool
    chroma_host: str
    chroma_port: int
    chroma_collection: str
    s3_endpoint_url: str
    s3_region: str
    embedding_provider: str
    embedding_model: str
    embedding_batch_size: int
    embedding_backend: str
    onnx_dir: str
    openai_base_url: str
    chunk_max_tokens: int
    chunk_overlap_tokens: int
    partitions_start: str
    min_rating: int
    min_quality: float
    validation_fraction: float
    training_token_budget: int
    min_training_examples: int
    training_template: str
    sensor_max_files: int
    sensor_interval_seconds: int
    eval_min_hit_at_5: float
    eval_min_mrr_at_10: float
    eval_max_regression: float
    kafka_bootstrap: str = ""
    kafka_topics: str = ""
    kafka_group: str = "llm-data-platform"
    kafka_max_messages: int = 100_000
    s3_source_uri: str = ""
    gcs_endpoint_url: str = ""
    gcs_project: str = ""
    gcs_retry_seconds: float = 60.0
    kinesis_streams: str = ""
    kinesis_endpoint_url: str = ""
    kinesis_region: str = "us-east-1"
    kinesis_consumer: str = "llm-data-platform"
    kinesis_max_records: int = 100_000
    landing_max_lines: int = 5_000_000
    landing_max_bytes: int = 2 * 1024**3
    executor: str = "in_process"
    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    celery_backend_url: str = ""
    expectations_engine: str = "arrow"
    target_model: str = "gpt-4o-mini-2024-07-18"
    target_encoding: str = ""
    training_max_tokens: int = 0  # 0: the target model's context limit
    training_over_limit: str = "drop"
    training_prices: str = ""
    training_min_quality: float = 0.7
    training_allow_pii: bool = False
    training_require_resolved: bool = True
    training_max_turns: int = 50
    training_max_examples: int = 10_000
    fine_tune: bool = False
    fine_tune_poll_seconds: float = 30.0
    fine_tune_wait_seconds: float = 7200.0
    openai_api_key_set: bool = False  # whether OPENAI_API_KEY is set; the key itself is not kept
    api_token: str = field(default="", repr=False)
    api_docs: bool = False
    api_url: str = ""
    documents_sensor_interval_seconds: int = 5
    api_max_body_bytes: int = 65_536
    drift_history_days: int = 7
    drift_min_history_days: int = 3
    drift_max_dedup_change: float = 0.05
    drift_max_pii_change: float = 0.02
    drift_max_rejection_change: float = 0.05
    drift_max_psi: float = 0.2
    drift_token_sample: int = 5_000
    dedup_across: bool = True
    dedup_min_words: int = 20
    dedup_history_days: int = 14
    near_dup_shingle: int = 2
    near_dup_threshold: float = 0.5
    near_dup_num_perm: int = 128
    near_dup_bands: int = 0
    history_engine: str = "local"
    spark_master: str = "local[2]"
    spark_driver_memory: str = "2g"
    spark_shuffle_partitions: int = 4


def _choice(name: str, value: str, allowed: set[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported: use one of {sorted(allowed)}.")
    return value


def _flag(name: str, value: str) -> bool:
    """A true/false setting; anything else is a mistake worth stopping for."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean: use true or false.")


def _provider(get: Getter) -> str:
    provider = get("LDP_EMBEDDING_PROVIDER").lower()
    if provider not in {"local", "openai"}:
        raise ValueError(
            f"LDP_EMBEDDING_PROVIDER={provider!r} is not supported: use 'local' or 'openai' "
            "(an OpenAI-compatible server is 'openai' plus OPENAI_BASE_URL)."
        )
    return provider


def _storage(get: Getter, data_path: Callable[[str, str], str], home: Path) -> dict[str, Any]:
    """Where data lives: the project home, lake, landing, index and their services."""
    return dict(
        home=str(home),
        lake_root=data_path("LDP_LAKE_ROOT", "lake"),
        landing_dir=data_path("LDP_LANDING_DIR", "landing"),
        chroma_path=data_path("LDP_CHROMA_PATH", "chroma"),
        bm25_dir=data_path("LDP_BM25_DIR", "bm25"),
        retrieval_hybrid=_flag("LDP_RETRIEVAL_HYBRID", get("LDP_RETRIEVAL_HYBRID")),
        chroma_host=get("LDP_CHROMA_HOST"),
        chroma_port=int(get("LDP_CHROMA_PORT")),
        chroma_collection=get("LDP_CHROMA_COLLECTION"),
        s3_endpoint_url=get("LDP_S3_ENDPOINT_URL"),
        s3_region=get("LDP_S3_REGION"),
    )


def _embedding(get: Getter, environ: Mapping[str, str], home: Path) -> dict[str, Any]:
    """The embedding model and where its exported ONNX weights are kept."""
    provider = _provider(get)
    default_model = "all-MiniLM-L6-v2" if provider == "local" else "text-embedding-3-small"
    return dict(
        embedding_provider=provider,
        embedding_model=get("LDP_EMBEDDING_MODEL") or default_model,
        embedding_batch_size=int(get("LDP_EMBEDDING_BATCH_SIZE")),
        embedding_backend=get("LDP_EMBEDDING_BACKEND").strip().lower(),
        onnx_dir=_resolve(home, environ["LDP_ONNX_DIR"])
        if environ.get("LDP_ONNX_DIR")
        else os.path.join(
            environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
            "llm_data_platform",
            "onnx",
        ),
        openai_base_url=get("OPENAI_BASE_URL"),
    )


def _curation(get: Getter) -> dict[str, Any]:
    """Chunking, partitions, and what becomes training data."""
    return dict(
        chunk_max_tokens=int(get("LDP_CHUNK_MAX_TOKENS")),
        chunk_overlap_tokens=int(get("LDP_CHUNK_OVERLAP_TOKENS")),
        partitions_start=get("LDP_PARTITIONS_START"),
        min_rating=int(get("LDP_MIN_RATING")),
        min_quality=float(get("LDP_MIN_QUALITY")),
        validation_fraction=float(get("LDP_VALIDATION_FRACTION")),
        training_token_budget=int(get("LDP_TRAINING_TOKEN_BUDGET")),
        min_training_examples=int(get("LDP_MIN_TRAINING_EXAMPLES")),
        training_template=get("LDP_TRAINING_TEMPLATE"),
        target_model=get("LDP_TARGET_MODEL"),
        target_encoding=get("LDP_TARGET_ENCODING"),
        training_max_tokens=int(get("LDP_TRAINING_MAX_TOKENS") or 0),
        training_over_limit=_choice(
            "LDP_TRAINING_OVER_LIMIT", get("LDP_TRAINING_OVER_LIMIT"), {"drop", "truncate"}
        ),
        training_prices=get("LDP_TRAINING_PRICES"),
        training_min_quality=float(get("LDP_TRAINING_MIN_QUALITY")),
        training_allow_pii=_flag("LDP_TRAINING_ALLOW_PII", get("LDP_TRAINING_ALLOW_PII")),
        training_require_resolved=_flag(
            "LDP_TRAINING_REQUIRE_RESOLVED", get("LDP_TRAINING_REQUIRE_RESOLVED")
        ),
        training_max_turns=int(get("LDP_TRAINING_MAX_TURNS")),
        training_max_examples=int(get("LDP_TRAINING_MAX_EXAMPLES")),
        fine_tune=_flag("LDP_FINE_TUNE", get("LDP_FINE_TUNE")),
        fine_tune_poll_seconds=float(get("LDP_FINE_TUNE_POLL_SECONDS")),
        fine_tune_wait_seconds=float(get("LDP_FINE_TUNE_WAIT_SECONDS")),
    )


def _automation(get: Getter) -> dict[str, Any]:
    """Sensors, the retrieval gate, and the stream sources."""
    return dict(
        sensor_max_files=int(get("LDP_SENSOR_MAX_FILES")),
        sensor_interval_seconds=int(get("LDP_SENSOR_INTERVAL_SECONDS")),
        documents_sensor_interval_seconds=int(get("LDP_DOCUMENTS_SENSOR_INTERVAL_SECONDS")),
        eval_min_hit_at_5=float(get("LDP_EVAL_MIN_HIT_AT_5")),
        eval_min_mrr_at_10=float(get("LDP_EVAL_MIN_MRR_AT_10")),
        eval_max_regression=float(get("LDP_EVAL_MAX_REGRESSION")),
        kafka_bootstrap=get("LDP_KAFKA_BOOTSTRAP"),
        kafka_topics=get("LDP_KAFKA_TOPICS"),
        kafka_group=get("LDP_KAFKA_GROUP"),
        kafka_max_messages=int(get("LDP_KAFKA_MAX_MESSAGES")),
        s3_source_uri=get("LDP_S3_SOURCE_URI"),
        gcs_endpoint_url=get("LDP_GCS_ENDPOINT_URL"),
        gcs_project=get("LDP_GCS_PROJECT"),
        gcs_retry_seconds=float(get("LDP_GCS_RETRY_SECONDS")),
        kinesis_streams=get("LDP_KINESIS_STREAMS"),
        kinesis_endpoint_url=get("LDP_KINESIS_ENDPOINT_URL"),
        kinesis_region=get("LDP_KINESIS_REGION"),
        kinesis_consumer=get("LDP_KINESIS_CONSUMER"),
        kinesis_max_records=int(get("LDP_KINESIS_MAX_RECORDS")),
        landing_max_lines=int(get("LDP_LANDING_MAX_LINES")),
        landing_max_bytes=int(get("LDP_LANDING_MAX_BYTES")),
    )


def _runtime(get: Getter, environ: Mapping[str, str]) -> dict[str, Any]:
    """Execution, the API, drift checks, dedup and the history engine."""
    return dict(
        executor=_choice(
            "LDP_EXECUTOR", get("LDP_EXECUTOR"), {"in_process", "multiprocess", "celery"}
        ),
        celery_broker_url=get("LDP_CELERY_BROKER_URL"),
        celery_backend_url=get("LDP_CELERY_BACKEND_URL"),
        expectations_engine=_choice(
            "LDP_EXPECTATIONS_ENGINE",
            get("LDP_EXPECTATIONS_ENGINE"),
            {"arrow", "great_expectations"},
        ),
        openai_api_key_set=bool(environ.get("OPENAI_API_KEY")),
        api_token=get("LDP_API_TOKEN"),
        api_docs=_flag("LDP_API_DOCS", get("LDP_API_DOCS")),
        api_url=get("LDP_API_URL"),
        api_max_body_bytes=int(get("LDP_API_MAX_BODY_BYTES")),
        drift_history_days=int(get("LDP_DRIFT_HISTORY_DAYS")),
        drift_min_history_days=int(get("LDP_DRIFT_MIN_HISTORY_DAYS")),
        drift_max_dedup_change=float(get("LDP_DRIFT_MAX_DEDUP_CHANGE")),
        drift_max_pii_change=float(get("LDP_DRIFT_MAX_PII_CHANGE")),
        drift_max_rejection_change=float(get("LDP_DRIFT_MAX_REJECTION_CHANGE")),
        drift_max_psi=float(get("LDP_DRIFT_MAX_PSI")),
        drift_token_sample=int(get("LDP_DRIFT_TOKEN_SAMPLE")),
        dedup_across=_flag("LDP_DEDUP_ACROSS", get("LDP_DEDUP_ACROSS")),
        dedup_min_words=int(get("LDP_DEDUP_MIN_WORDS")),
        dedup_history_days=int(get("LDP_DEDUP_HISTORY_DAYS")),
        near_dup_shingle=int(get("LDP_NEAR_DUP_SHINGLE")),
        near_dup_threshold=float(get("LDP_NEAR_DUP_THRESHOLD")),
        near_dup_num_perm=int(get("LDP_NEAR_DUP_NUM_PERM")),
        near_dup_bands=int(get("LDP_NEAR_DUP_BANDS")),
        history_engine=_choice("LDP_HISTORY_ENGINE", get("LDP_HISTORY_ENGINE"), {"local", "spark"}),
        spark_master=get("LDP_SPARK_MASTER"),
        spark_driver_memory=get("LDP_SPARK_DRIVER_MEMORY"),
        spark_shuffle_partitions=int(get("LDP_SPARK_SHUFFLE_PARTITIONS")),
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``environ`` (default: this process's environment); a test passes the
    environment of the process it stands for instead of patching its own."""
    environ = os.environ if environ is None else environ
    defaults = {s.name: s.default for s in SETTINGS}

    def get(name: str) -> str:
        return _env(environ, name, defaults[name])

    home = Path(get("LDP_HOME")).resolve()
    data_dir = Path(_resolve(home, get("LDP_DATA_DIR")))

    def data_path(name: str, sub: str) -> str:
        value = environ.get(name)
        if value:
            return _resolve(home, value)
        return str(data_dir / sub)

    return Settings(
        **_storage(get, data_path, home),
        **_embedding(get, environ, home),
        **_curation(get),
        **_automation(get),
        **_runtime(get, environ),
    )
