"""The catalogue of settings: every environment variable the platform reads, its default and
what it does (`ldp settings` prints it; the README's settings table is generated from it).
``settings.load_settings`` turns these into typed values."""

from __future__ import annotations

from dataclasses import dataclass


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
        "Earlier days whose kept messages a day is deduplicated against (index memory: ~500 "
        "bytes per kept message of the window: 464 of signature and band keys, plus its id).",
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
        "1",
        "Least seconds between documents landing-sensor ticks. The daemon evaluates sensors "
        "every 5 s; at 5 a tick landing just under it waits for the next loop (~10 s apart): "
        "1 ticks on every loop, so an edited page waits 5 s at most (a listing per tick).",
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
