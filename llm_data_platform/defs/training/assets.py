"""Curated zone, training side: chat fine-tuning examples by day, validated batches by week."""

import hashlib
import json
import posixpath
import time
from collections import Counter

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform import schemas
from llm_data_platform.defs.partitions import (
    Partitions,
    daily_backfill_policy,
    weekly_backfill_policy,
)
from llm_data_platform.defs.rag.evaluation import read_eval_questions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.transforms.groups import latest_per_key
from llm_data_platform.transforms.prompt_templates import load_template
from llm_data_platform.transforms.training_examples import COLUMNS as CONVERSATION_COLUMNS
from llm_data_platform.transforms.training_examples import (
    TrainingConfig,
    build_training_examples,
    whole_conversations,
)
from llm_data_platform.transforms.training_format import validate_chat_example
from llm_data_platform.transforms.training_selection import select_examples

BATCH_FILES = ("train.jsonl", "validation.jsonl")
MANIFEST = "manifest.json"


def training_config(settings: PipelineSettings) -> TrainingConfig:
    # "und" (a short "thanks!") does not disqualify a conversation that is otherwise English.
    template = load_template(settings.training_template)
    return TrainingConfig(
        system_prompt=template.system,
        template=template.name,
        few_shot=template.few_shot,
        min_rating=settings.min_rating,
        validation_fraction=settings.validation_fraction,
        allow_undetermined_language=True,
    )


CHUNK_ROWS = 100_000  # rows of conversations_clean held at once (whole conversations)


def training_examples(
    context: dg.AssetExecutionContext, lake: LakeResource, pipeline: PipelineSettings
) -> dict[str, pa.Table]:
    """The day's best conversations in chat fine-tuning format, system prompt applied; no
    near-duplicates and nothing that overlaps the retrieval-evaluation questions.

    A day is read in chunks of whole conversations (the clean table is sorted by
    conversation), so memory holds one chunk and the day's candidate examples, not the day."""
    config = training_config(pipeline)
    eval_questions = read_eval_questions(lake)
    if not eval_questions:
        context.log.warning(
            "No retrieval_eval_set materialized: training examples are not decontaminated."
        )
    out: dict[str, pa.Table] = {}
    for key in context.partition_keys:
        started = time.perf_counter()
        out[key], counts = _examples_of_day(lake, key, config, eval_questions)
        counts["build_seconds"] = round(time.perf_counter() - started, 3)
        context.add_asset_metadata(counts, partition_key=key)
    context.add_asset_metadata(
        {
            "decontaminated_against_questions": len(eval_questions),
            "template": config.template,
            "system_prompt": dg.MetadataValue.text(config.system_prompt),
            "few_shot_turns": len(config.few_shot),
            "min_rating": config.min_rating,
        }
    )
    return out


def _examples_of_day(
    lake: LakeResource, day: str, config: TrainingConfig, eval_questions: list[str]
) -> tuple[pa.Table, dict[str, int]]:
    try:
        batches = lake.iter_partition_batches(
            "clean", "conversations_clean", day, CHUNK_ROWS, columns=list(CONVERSATION_COLUMNS)
        )
        totals: Counter[str] = Counter()
        parts = []
        for chunk in whole_conversations(batches):
            result = build_training_examples(chunk, config)
            parts.append(result.examples)
            totals.update(result.rejected)
            totals.update({f"info_{k}": v for k, v in result.info.items()})
    except FileNotFoundError:
        raise dg.Failure(
            f"conversations_clean has no data for {day}. Materialize it first: `dagster asset "
            f"materialize -m llm_data_platform --select conversations_clean,"
            f"conversations_clean_dropped --partition {day}`."
        ) from None
    candidates = pa.concat_tables(parts) if parts else schemas.TRAINING_EXAMPLES.empty_table()
    selection = select_examples(candidates, eval_questions)
    totals["kept"] -= candidates.num_rows - selection.kept.num_rows
    totals.update(selection.counts)
    totals["examples"] = selection.kept.num_rows
    totals["tokens"] = int(pc.sum(selection.kept["n_tokens"]).as_py() or 0)
    totals["chunks"] = len(parts)
    return selection.kept, {k: int(v) for k, v in sorted(totals.items())}


def _templates(kept: pa.Table) -> list[str]:
    """The prompt templates the week's examples were built with (several after a change)."""
    if "template" not in kept.column_names:
        return []
    return sorted(t for t in pc.unique(kept["template"]).to_pylist() if t)


def batch_dir(lake: LakeResource, week: str) -> str:
    return lake.partition_path("curated", "training_batches", week, name="week")


def select_within_budget(examples: pa.Table, token_budget: int) -> tuple[pa.Table, int]:
    """Deterministic order (example id), cut at the token budget; returns (kept, over_budget)."""
    examples = examples.sort_by([("example_id", "ascending")])
    running = pc.cumulative_sum(examples["n_tokens"].cast(pa.int64()))
    keep = pc.less_equal(running, token_budget)
    kept = examples.filter(keep)
    return kept, examples.num_rows - kept.num_rows


def _week_selection(
    lake: LakeResource, training_examples: dict[str, pa.Table], days: list[str], budget: int
) -> tuple[pa.Table, int, int, dict[str, int]]:
    """The week's examples after the cross-day checks a single day cannot make; returns
    (kept, duplicates, over_budget, cross-day selection counts)."""
    if training_examples:
        combined = pa.concat_tables([training_examples[d] for d in days])
    else:
        combined = pa.table({"example_id": pa.array([], pa.string())})
    if not combined.num_rows:
        return combined, 0, 0, {}
    # a conversation seen on two days, a late replay, counts once: its latest event_time
    combined, duplicates = latest_per_key(combined, "example_id", "event_time")
    # A near-copy of a conversation from another day of the week is caught here.
    selection = select_examples(combined, read_eval_questions(lake))
    kept, over_budget = select_within_budget(selection.kept, budget)
    return kept, duplicates, over_budget, selection.counts


def _batch_lines(
    context: dg.AssetExecutionContext, kept: pa.Table
) -> tuple[dict[str, list[str]], Counter[str], int, dict[str, list[str]]]:
    """JSONL lines, tokens and example ids per batch file, re-validating every example so a
    bad one never reaches a fine-tuning job; returns (lines, tokens, invalid excluded, ids)."""
    lines: dict[str, list[str]] = {name: [] for name in BATCH_FILES}
    ids: dict[str, list[str]] = {name: [] for name in BATCH_FILES}
    invalid = 0
    tokens: Counter[str] = Counter()
    for row in kept.to_pylist():
        errors = validate_chat_example(json.loads(row["messages_json"]))
        if errors:
            invalid += 1
            context.log.warning(f"example {row['example_id']} excluded: {errors}")
            continue
        name = "validation.jsonl" if row["split"] == "validation" else "train.jsonl"
        lines[name].append(row["messages_json"])
        ids[name].append(row["example_id"])
        tokens[name] += row["n_tokens"]
    return lines, tokens, invalid, ids


def _write_batch_files(
    lake: LakeResource, directory: str, lines: dict[str, list[str]], tokens: Counter[str]
) -> dict[str, dict]:
    """Writes each batch file and describes it (with its sha256) for the manifest."""
    files = {}
    for name in BATCH_FILES:
        data = ("\n".join(lines[name]) + "\n" if lines[name] else "").encode("utf-8")
        lake.write_bytes(posixpath.join(directory, name), data)
        files[name] = {
            "examples": len(lines[name]),
            "tokens": tokens[name],
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    return files


def training_batches(
    context: dg.AssetExecutionContext,
    training_examples: dict[str, pa.Table],
    lake: LakeResource,
    pipeline: PipelineSettings,
) -> dg.MaterializeResult:
    """The week's validated train/validation JSONL files and their manifest.

    Files are written first and the manifest last: the manifest (with each file's sha256) is
    the commit, so a reader never trusts a half-written batch.
    """
    started = time.perf_counter()
    week = context.partition_key
    budget = pipeline.training_token_budget
    days = sorted(training_examples)
    kept, duplicates, over_budget, cross_day = _week_selection(
        lake, training_examples, days, budget
    )
    lines, tokens, invalid, example_ids = _batch_lines(context, kept)
    directory = batch_dir(lake, week)
    files = _write_batch_files(lake, directory, lines, tokens)
    manifest = {
        "week": week,
        "days_with_data": days,
        "token_budget": budget,
        "files": files,
        "duplicates_removed": duplicates,
        "near_duplicates_across_days": cross_day.get("near_duplicate", 0),
        "contaminated_removed": cross_day.get("contaminated", 0),
        "over_budget": over_budget,
        "invalid_excluded": invalid,
        "format": "openai-chat-jsonl",
        "templates": _templates(kept),
        "example_ids": example_ids,  # per file, in line order: lineage and overlap checks
    }
    lake.write_bytes(
        posixpath.join(directory, MANIFEST), json.dumps(manifest, indent=2).encode("utf-8")
    )
    return dg.MaterializeResult(
        metadata={
            "train_examples": files["train.jsonl"]["examples"],
            "validation_examples": files["validation.jsonl"]["examples"],
            "train_tokens": files["train.jsonl"]["tokens"],
            "days_with_data": len(days),
            "duplicates_removed": duplicates,
            "near_duplicates_across_days": cross_day.get("near_duplicate", 0),
            "over_budget": over_budget,
            "invalid_excluded": invalid,
            "directory": dg.MetadataValue.path(lake.uri(directory)),
            "manifest": dg.MetadataValue.json(manifest),
            "sample_train_line": dg.MetadataValue.json(
                json.loads(lines["train.jsonl"][0]) if lines["train.jsonl"] else {}
            ),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
    )


def training_assets(partitions: Partitions, template: str) -> list[dg.AssetsDefinition]:
    """Daily examples and weekly batches, on the code location's partitions. The prompt
    template's digest is the examples' code version: a changed template shows their
    partitions (and the weeks built on them) as changed, to rebuild with a backfill."""
    return [
        dg.asset(
            code_version=load_template(template).code_version,
            partitions_def=partitions.daily,
            backfill_policy=daily_backfill_policy,
            group_name="curated",
            kinds={"parquet", "openai"},
            metadata={"lake_zone": "curated", "lake_sort_by": ["example_id"]},
            deps=["retrieval_eval_set", "conversations_clean"],
        )(training_examples),
        dg.asset(
            partitions_def=partitions.weekly,
            backfill_policy=weekly_backfill_policy,
            group_name="curated",
            kinds={"json", "openai"},
            ins={
                "training_examples": dg.AssetIn(
                    partition_mapping=dg.TimeWindowPartitionMapping(),
                    metadata={"allow_missing_partitions": True},
                )
            },
        )(training_batches),
    ]
