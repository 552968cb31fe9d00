"""Every setting of the platform, read from the environment with its default.

Resources are built from these values in `definitions.py`; nothing else reads the environment.
Paths resolve against LDP_HOME (default: the current directory) so that the step subprocesses
Dagster starts, which re-import this module, see the same locations as the parent process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def _env(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


# The table in the README is generated from this list (`ldp settings`), so it cannot drift.
SETTINGS: tuple[Setting, ...] = (
    Setting("LDP_HOME", ".", "Project home; relative paths below resolve against it."),
    Setting("LDP_DATA_DIR", "data", "Local working folder for the lake, landing and Chroma."),
    Setting(
        "LDP_LAKE_ROOT",
        "data/lake",
        "Lake root: a local folder, s3://bucket/prefix (credentials from the AWS chain) or "
        "gs://bucket/prefix (Application Default Credentials).",
    ),
    Setting("LDP_S3_ENDPOINT_URL", "", "S3 endpoint override (MinIO, moto, LocalStack)."),
    Setting("LDP_S3_REGION", "us-east-1", "S3 region of the lake bucket."),
    Setting(
        "LDP_GCS_ENDPOINT_URL",
        "",
        "GCS endpoint override (an emulator; an http:// endpoint is used without credentials).",
    ),
    Setting("LDP_GCS_PROJECT", "", "GCP project of the GCS lake; default: the credentials'."),
    Setting(
        "LDP_GCS_RETRY_SECONDS",
        "60",
        "How long a failing GCS request (5xx, 429, connection) is retried before the step fails.",
    ),
    Setting("LDP_LANDING_DIR", "data/landing", "Landing folder: <dir>/<stream>/**/*.jsonl."),
    Setting("LDP_CHROMA_PATH", "data/chroma", "Chroma persistent folder (embedded default)."),
    Setting(
        "LDP_BM25_DIR",
        "data/bm25",
        "Hybrid retrieval's BM25 index, saved per index version so a process loads, not builds.",
    ),
    Setting("LDP_CHROMA_HOST", "", "Chroma server host; when set, HttpClient replaces the folder."),
    Setting("LDP_CHROMA_PORT", "8000", "Chroma server port."),
    Setting("LDP_CHROMA_COLLECTION", "kb_chunks", "Chroma collection name prefix."),
    Setting("LDP_EMBEDDING_PROVIDER", "local", "local (all-MiniLM-L6-v2, offline) or openai."),
    Setting(
        "LDP_EMBEDDING_MODEL",
        "",
        "Embedding model; default all-MiniLM-L6-v2 (local), text-embedding-3-small (openai).",
    ),
    Setting("LDP_EMBEDDING_BATCH_SIZE", "64", "Texts per embedding call."),
    Setting(
        "LDP_EMBEDDING_BACKEND",
        "onnx-int8",
        "Local model runtime: torch, onnx (same vectors, faster) or onnx-int8 (fastest).",
    ),
    Setting(
        "LDP_ONNX_DIR",
        "",
        "ONNX exports of the packaged model, made offline at first use; default "
        "~/.cache/llm_data_platform/onnx (shared by the projects of a user).",
    ),
    Setting(
        "OPENAI_API_KEY",
        "",
        "OpenAI key (provider openai); also sent to OPENAI_BASE_URL when set.",
    ),
    Setting("OPENAI_BASE_URL", "", "OpenAI-compatible server URL (vLLM, TEI, Ollama)."),
    Setting("LDP_CHUNK_MAX_TOKENS", "200", "Chunk size in the embedding model's word pieces."),
    Setting("LDP_CHUNK_OVERLAP_TOKENS", "30", "Overlap between neighbouring chunks, in tokens."),
    Setting("LDP_PARTITIONS_START", "2026-01-05", "First daily partition (a Monday)."),
    Setting("LDP_MIN_RATING", "4", "Lowest feedback rating that makes a training example."),
    Setting("LDP_MIN_QUALITY", "0.5", "Messages scoring below this quality are dropped."),
    Setting(
        "LDP_DEDUP_ACROSS",
        "true",
        "Drop copies across conversations and days (exact content, near copies, whole "
        "conversations) in conversations_clean; false: only repeats within a turn.",
    ),
    Setting(
        "LDP_DEDUP_MIN_WORDS",
        "20",
        "Fewest words a message (a conversation) needs to be deduplicated across "
        "conversations: shorter turns (thanks, ok, one-line questions) recur by nature.",
    ),
    Setting(
        "LDP_DEDUP_HISTORY_DAYS",
        "14",
        "Earlier days whose kept messages a day is deduplicated against (index memory: ~650 "
        "bytes per kept message of the window).",
    ),
    Setting(
        "LDP_NEAR_DUP_SHINGLE",
        "2",
        "Words per shingle of message near-dup detection (2: a 10% word edit keeps Jaccard "
        "~0.75; 5 would drop it to ~0.48).",
    ),
    Setting(
        "LDP_NEAR_DUP_THRESHOLD",
        "0.5",
        "Exact Jaccard of shingle sets that makes two messages near copies (measured: edits of "
        "3-10% of words >= 0.6, unrelated support chat <= 0.36).",
    ),
    Setting("LDP_NEAR_DUP_NUM_PERM", "128", "MinHash permutations of message near-dup detection."),
    Setting(
        "LDP_NEAR_DUP_BANDS",
        "0",
        "LSH bands; 0: the most selective banding that still finds a pair at the threshold "
        "with probability >= 0.99 (128 permutations, 0.5: 42 bands of 3).",
    ),
    Setting(
        "LDP_HISTORY_ENGINE",
        "local",
        "Engine of the history-wide step conversations_history_duplicates: local (numpy/Arrow "
        "in the step's process) or spark (pyspark over the same Parquet files; local lake).",
    ),
    Setting(
        "LDP_SPARK_MASTER",
        "local[2]",
        "Spark master of LDP_HISTORY_ENGINE=spark: local[N] (N threads in the step's "
        "process), or a cluster (spark://host:7077) whose executors see the lake's paths.",
    ),
    Setting("LDP_SPARK_DRIVER_MEMORY", "2g", "Spark driver memory (local mode: all of Spark)."),
    Setting(
        "LDP_SPARK_SHUFFLE_PARTITIONS",
        "4",
        "spark.sql.shuffle.partitions: 2-4 per core (Spark's default 200 is for clusters).",
    ),
    Setting("LDP_VALIDATION_FRACTION", "0.1", "Share of examples in the validation split."),
    Setting("LDP_TRAINING_TOKEN_BUDGET", "2000000", "Max tokens in one weekly training batch."),
    Setting(
        "LDP_TRAINING_TEMPLATE",
        "python_docs_assistant@1",
        "Prompt template of training examples: <id>@<version> from prompt_templates/.",
    ),
    Setting(
        "LDP_MIN_TRAINING_EXAMPLES",
        "10",
        "Fewest train examples a weekly batch may hold (OpenAI fine-tuning needs 10).",
    ),
    Setting(
        "LDP_TARGET_MODEL",
        "gpt-4o-mini-2024-07-18",
        "Model the batches are for: its tokenizer counts tokens, its context limit applies.",
    ),
    Setting("LDP_TARGET_ENCODING", "", "cl100k_base or o200k_base; default: the model's."),
    Setting(
        "LDP_TRAINING_MAX_TOKENS", "", "Tokens one example may hold; default: the model's limit."
    ),
    Setting(
        "LDP_TRAINING_OVER_LIMIT",
        "drop",
        "An example over the limit: drop, or truncate (oldest turns first).",
    ),
    Setting(
        "LDP_TRAINING_PRICES",
        "gpt-4o-mini-2024-07-18=3.00,gpt-4o-2024-08-06=25.00,gpt-4.1-2025-04-14=25.00,"
        "gpt-4.1-mini-2025-04-14=5.00,gpt-4.1-nano-2025-04-14=1.50,gpt-3.5-turbo-0125=8.00",
        "USD per 1M training tokens by model (cost per epoch in the batch's metadata).",
    ),
    Setting(
        "LDP_TRAINING_MIN_QUALITY", "0.7", "Lowest mean message quality of a training example."
    ),
    Setting(
        "LDP_TRAINING_ALLOW_PII",
        "false",
        "true: conversations that had PII redacted may become examples.",
    ),
    Setting(
        "LDP_TRAINING_REQUIRE_RESOLVED",
        "true",
        "Reject a conversation that ends in an unanswered question.",
    ),
    Setting("LDP_TRAINING_MAX_TURNS", "50", "Most turns of one example (0: no limit)."),
    Setting("LDP_TRAINING_MAX_EXAMPLES", "10000", "Most examples in one weekly batch, best first."),
    Setting(
        "LDP_FINE_TUNE",
        "off",
        "on: fine_tune_job uploads the week's files and starts a fine-tuning job.",
    ),
    Setting("LDP_FINE_TUNE_POLL_SECONDS", "30", "Seconds between polls of a fine-tuning job."),
    Setting(
        "LDP_FINE_TUNE_WAIT_SECONDS",
        "7200",
        "How long fine_tune_job polls before it records the job as still running.",
    ),
    Setting("LDP_SENSOR_MAX_FILES", "200", "Landing files a sensor tick takes at most."),
    Setting(
        "LDP_LANDING_MAX_LINES",
        "5000000",
        "Lines one landing file or S3 object may hold; the rest is quarantined as unread.",
    ),
    Setting(
        "LDP_LANDING_MAX_BYTES",
        "2147483648",
        "Decompressed bytes one landing file or S3 object may hold (stops gzip bombs).",
    ),
    Setting("LDP_SENSOR_INTERVAL_SECONDS", "30", "Seconds between landing-sensor ticks."),
    Setting(
        "LDP_DOCUMENTS_SENSOR_INTERVAL_SECONDS",
        "5",
        "Seconds between documents landing-sensor ticks (an edited page waits for one).",
    ),
    Setting(
        "LDP_EXECUTOR",
        "in_process",
        "How a run executes its steps: in_process (one process, no start-up per step), "
        "multiprocess (a forkserver with the code preloaded; steps in parallel) or celery "
        "(each step a task on Celery workers, dagster-celery; see LDP_CELERY_BROKER_URL).",
    ),
    Setting(
        "LDP_CELERY_BROKER_URL",
        "redis://127.0.0.1:6379/0",
        "Celery broker of LDP_EXECUTOR=celery; runs and workers (celery -A "
        "llm_data_platform.lib.celery_worker worker) must name the same one.",
    ),
    Setting(
        "LDP_CELERY_BACKEND_URL",
        "",
        "Celery result backend (the steps' events back to the run); default: the broker URL.",
    ),
    Setting("LDP_CHAT_MODEL", "gpt-4o-mini", "Chat model of grounded answers (ask --answer)."),
    Setting(
        "LDP_RETRIEVAL_HYBRID",
        "true",
        "true: retrieval fuses vector and BM25 rankings (RRF) unless a call says otherwise "
        "(default by measurement: benchmarks/bench_retrieval_quality.py).",
    ),
    Setting(
        "LDP_API_TOKEN",
        "",
        "Bearer token every request to `ldp serve` must carry; unset: no authentication.",
    ),
    Setting("LDP_API_DOCS", "false", "true: `ldp serve` also serves /docs, /redoc, /openapi.json."),
    Setting(
        "LDP_API_URL",
        "",
        "`ldp ask` asks the `ldp serve` at this URL; empty: the one this project's `ldp serve` "
        "announced, else it searches in process.",
    ),
    Setting(
        "LDP_API_MAX_BODY_BYTES", "65536", "Largest request body `ldp serve` reads (else 413)."
    ),
    Setting("LDP_EVAL_MIN_HIT_AT_5", "0.8", "A new index version needs this hit@5 to go live."),
    Setting("LDP_EVAL_MIN_MRR_AT_10", "0.5", "…and this MRR@10 on the evaluation set."),
    Setting(
        "LDP_EVAL_MAX_REGRESSION",
        "0.02",
        "A new index version may score at most this much below the live one (hit@5, MRR@10).",
    ),
    Setting(
        "LDP_EXPECTATIONS_ENGINE",
        "arrow",
        "Engine of the column expectations check: arrow (milliseconds) or great_expectations.",
    ),
    Setting(
        "LDP_DRIFT_HISTORY_DAYS",
        "7",
        "Drift checks compare a clean day with up to this many days before it (a week of cycles).",
    ),
    Setting(
        "LDP_DRIFT_MIN_HISTORY_DAYS",
        "3",
        "Fewer earlier days than this: drift checks pass with 'no baseline' (one day is noise).",
    ),
    Setting(
        "LDP_DRIFT_MAX_DEDUP_CHANGE",
        "0.05",
        "Dedup-rate drift warns beyond this change in rate (0.05 = 5 points) and the noise.",
    ),
    Setting(
        "LDP_DRIFT_MAX_PII_CHANGE",
        "0.02",
        "PII-hit-rate drift warns beyond this change (PII rates are small: 2 points is a lot).",
    ),
    Setting(
        "LDP_DRIFT_MAX_REJECTION_CHANGE",
        "0.05",
        "Rejection-rate (drops other than copies: empty, low quality) drift warns beyond this.",
    ),
    Setting(
        "LDP_DRIFT_MAX_PSI",
        "0.2",
        "Token-length / quality-score drift warns above this PSI (0.1 minor, >0.25 major).",
    ),
    Setting(
        "LDP_DRIFT_TOKEN_SAMPLE",
        "5000",
        "Messages of a day tokenized for its token-length histogram (an even stride).",
    ),
    Setting("LDP_KAFKA_BOOTSTRAP", "", "Kafka brokers (host:port,…); set it to switch Kafka on."),
    Setting(
        "LDP_KAFKA_TOPICS",
        "conversations=ldp.conversations,documents=ldp.documents",
        "Topic of each stream.",
    ),
    Setting("LDP_KAFKA_GROUP", "llm-data-platform", "Consumer group (offsets committed here)."),
    Setting("LDP_KAFKA_MAX_MESSAGES", "100000", "Messages one Kafka staging run reads at most."),
    Setting(
        "LDP_S3_SOURCE_URI",
        "",
        "s3://bucket/prefix watched for <prefix>/<stream>/*.jsonl[.gz]; set it to switch S3 on.",
    ),
    Setting(
        "LDP_KINESIS_STREAMS",
        "",
        "Kinesis stream of each stream (conversations=NAME,documents=NAME); set it to switch "
        "Kinesis on.",
    ),
    Setting("LDP_KINESIS_ENDPOINT_URL", "", "Kinesis endpoint override (moto, LocalStack)."),
    Setting("LDP_KINESIS_REGION", "us-east-1", "Region of the Kinesis streams."),
    Setting(
        "LDP_KINESIS_CONSUMER",
        "llm-data-platform",
        "Names the per-shard checkpoints in the lake (one reader of each stream).",
    ),
    Setting("LDP_KINESIS_MAX_RECORDS", "100000", "Records one Kinesis staging run reads at most."),
)


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

    provider = get("LDP_EMBEDDING_PROVIDER").lower()
    if provider not in {"local", "openai"}:
        raise ValueError(
            f"LDP_EMBEDDING_PROVIDER={provider!r} is not supported: use 'local' or 'openai' "
            "(an OpenAI-compatible server is 'openai' plus OPENAI_BASE_URL)."
        )
    model = get("LDP_EMBEDDING_MODEL") or (
        "all-MiniLM-L6-v2" if provider == "local" else "text-embedding-3-small"
    )
    return Settings(
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
        embedding_provider=provider,
        embedding_model=model,
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
