"""Column contracts of the lake tables.

Every table the platform writes has its Arrow schema here, so transforms, assets, checks and
tests agree on names and types without importing each other.
"""

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

# Landing JSONL (conversations stream), one event per line:
#   {"event_id", "type": "message", "conversation_id", "turn", "role", "content", "user_id",
#    "timestamp"}
#   {"event_id", "type": "feedback", "conversation_id", "rating": 1..5, "user_id", "timestamp"}
RAW_CONVERSATIONS = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),  # "message" | "feedback"
        ("conversation_id", pa.string()),
        ("turn_index", pa.int32()),  # null for feedback
        ("role", pa.string()),  # system | user | assistant; null for feedback
        ("content", pa.string()),  # null for feedback
        ("rating", pa.int8()),  # 1..5; null for messages
        ("user_id", pa.string()),
        ("event_time", TS),
        ("source_file", pa.string()),
        ("source_line", pa.int32()),  # 1-based line number in source_file
        ("arrived_at", TS),  # when the source file landed (its modification time)
    ]
)

# Landing JSONL (documents stream):
#   {"event_id", "doc_id", "op": "upsert", "format": "html"|"markdown"|"text", "title",
#    "content", "source_uri", "updated_at"}
#   {"event_id", "doc_id", "op": "delete", "updated_at"}
RAW_DOCUMENTS = pa.schema(
    [
        ("event_id", pa.string()),
        ("doc_id", pa.string()),
        ("op", pa.string()),  # "upsert" | "delete"
        ("format", pa.string()),  # html | markdown | text; null for delete
        ("title", pa.string()),
        ("content", pa.string()),  # null for delete
        ("source_uri", pa.string()),
        ("version", pa.string()),  # content hash; null for delete
        ("updated_at", TS),
        ("source_file", pa.string()),
        ("source_line", pa.int32()),
        ("arrived_at", TS),
    ]
)

# Rejected records, beside every table that rejects them.
QUARANTINE = pa.schema(
    [
        ("source_file", pa.string()),
        ("source_line", pa.int32()),
        ("record", pa.string()),  # the original line / row as JSON text
        ("reason", pa.string()),
        ("arrived_at", TS),
    ]
)

CONVERSATIONS_CLEAN = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("conversation_id", pa.string()),
        ("turn_index", pa.int32()),
        ("role", pa.string()),
        ("content", pa.string()),  # normalised and PII-redacted
        ("rating", pa.int8()),
        ("user_id", pa.string()),
        ("event_time", TS),
        ("language", pa.string()),  # ISO 639-1, "und" when unknown / too short
        ("quality_score", pa.float32()),  # 0..1
        ("pii_redactions", pa.int32()),  # number of PII spans replaced in this message
        ("content_hash", pa.string()),
        ("source_file", pa.string()),
        ("source_line", pa.int32()),
    ]
)

DOCUMENTS_CLEAN = pa.schema(
    [
        ("doc_id", pa.string()),
        ("version", pa.string()),
        ("is_deleted", pa.bool_()),
        ("title", pa.string()),
        ("text", pa.string()),  # extracted clean text; markdown-style "#" headings kept
        ("format", pa.string()),
        ("source_uri", pa.string()),
        ("updated_at", TS),
        ("event_id", pa.string()),
    ]
)

TRAINING_EXAMPLES = pa.schema(
    [
        ("example_id", pa.string()),  # the conversation id
        ("conversation_id", pa.string()),
        ("messages_json", pa.string()),  # {"messages": [...]} as one JSON line
        ("n_turns", pa.int32()),
        ("n_tokens", pa.int32()),
        ("rating", pa.int8()),
        ("split", pa.string()),  # "train" | "validation"
        ("event_time", TS),  # time of the conversation's first message
        ("template", pa.string()),  # the prompt template, <id>@<version>
    ]
)

DOCUMENT_CHUNKS = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("version", pa.string()),
        ("chunk_index", pa.int32()),
        ("heading_path", pa.string()),  # "Top > Section > Subsection"
        ("text", pa.string()),
        ("char_start", pa.int32()),
        ("char_end", pa.int32()),
        ("n_tokens", pa.int32()),
        ("content_hash", pa.string()),
        ("title", pa.string()),
        ("source_uri", pa.string()),
        ("updated_at", TS),
    ]
)
