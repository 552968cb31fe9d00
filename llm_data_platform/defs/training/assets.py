"""Curated zone, training side: the weekly validated batches (the daily examples are in
examples.py) and the factory of the domain's assets."""

import hashlib
import json
import posixpath
import time
from collections import Counter

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.defs.partitions import Partitions, weekly_backfill_policy
from llm_data_platform.defs.rag.evaluation import read_eval_questions
from llm_data_platform.defs.training.examples import EXAMPLES_ASSET, training_examples_asset
from llm_data_platform.defs.training.resources import TrainingSettings
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.lake_commit import PartitionCommit
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.transforms.groups import latest_per_key
from llm_data_platform.transforms.training_format import validate_chat_example
from llm_data_platform.transforms.training_selection import rank_order, select_examples

BATCH_FILES = ("train.jsonl", "validation.jsonl")
MANIFEST = "manifest.json"


def _templates(kept: pa.Table) -> list[str]:
    """The prompt templates the week's examples were built with (several after a change)."""
    if "template" not in kept.column_names:
        return []
    return sorted(t for t in pc.unique(kept["template"]).to_pylist() if t)


def batch_dir(lake: LakeResource, week: str) -> str:
    return lake.partition_path("curated", "training_batches", week, name="week")


def select_within_budget(
    examples: pa.Table, token_budget: int, max_examples: int
) -> tuple[pa.Table, dict[str, str]]:
    """The best examples first (``RANK``: quality, rating, then the earliest) while both the
    token budget and the example count hold; returns (kept in example-id order, the reason of
    each one left out: ``over_budget`` or ``over_count``)."""
    order = rank_order(examples)
    ranked = examples.take(order)
    running = np.cumsum(ranked["n_tokens"].to_numpy(zero_copy_only=False).astype(np.int64))
    within_budget = running <= token_budget
    within_count = np.arange(ranked.num_rows) < max_examples
    keep = within_budget & within_count
    left_out = ranked["example_id"].filter(pa.array(~keep)).to_pylist()
    reasons = np.where(within_budget, "over_count", "over_budget")[~keep].tolist()
    kept = ranked.filter(pa.array(keep)).sort_by([("example_id", "ascending")])
    return kept, dict(zip(left_out, reasons, strict=True))


def _week_selection(
    lake: LakeResource,
    training_examples: dict[str, pa.Table],
    days: list[str],
    budget: int,
    max_examples: int,
) -> tuple[pa.Table, int, dict[str, int], dict[str, str]]:
    """The week's examples after the cross-day checks a single day cannot make; returns
    (kept, duplicates, cross-day selection counts, the reason of every example left out)."""
    if training_examples:
        combined = pa.concat_tables([training_examples[d] for d in days], promote_options="default")
    else:
        combined = pa.table({"example_id": pa.array([], pa.string())})
    if not combined.num_rows:
        return combined, 0, {}, {}
    # a conversation seen on two days, a late replay, counts once: its latest event_time
    combined, duplicates = latest_per_key(combined, "example_id", "event_time")
    # A near-copy of a conversation from another day of the week is caught here.
    selection = select_examples(combined, read_eval_questions(lake))
    kept, left_out = select_within_budget(selection.kept, budget, max_examples)
    return kept, duplicates, selection.counts, {**selection.removed, **left_out}


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
    commit: PartitionCommit, directory: str, lines: dict[str, list[str]], tokens: Counter[str]
) -> dict[str, dict]:
    """Stages each batch file in the week's commit and describes it (with its sha256) for the
    manifest."""
    files = {}
    for name in BATCH_FILES:
        data = ("\n".join(lines[name]) + "\n" if lines[name] else "").encode("utf-8")
        commit.add_bytes(posixpath.join(directory, name), data)
        files[name] = {
            "examples": len(lines[name]),
            "tokens": tokens[name],
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    return files


def _at_least_one_validation(
    lines: dict[str, list[str]],
    ids: dict[str, list[str]],
    tokens: Counter[str],
    kept: pa.Table,
    min_train: int,
) -> None:
    """A small week whose hash split gave no validation example (10% of 11 is often 0) moves
    one train example there — the one with the smallest sha256 of its id, so a rebuild moves
    the same one — when more than ``min_train`` (LDP_MIN_TRAINING_EXAMPLES) stay to train on."""
    train, validation = "train.jsonl", "validation.jsonl"
    if lines[validation] or len(lines[train]) <= max(min_train, 1):
        return
    i = min(range(len(ids[train])), key=lambda j: hashlib.sha256(ids[train][j].encode()).digest())
    example_id = ids[train].pop(i)
    lines[validation].append(lines[train].pop(i))
    ids[validation].append(example_id)
    row = kept.filter(pc.equal(kept["example_id"], example_id))
    moved = int(row["n_tokens"][0].as_py() or 0)
    tokens[train] -= moved
    tokens[validation] += moved


def _line_shape(line: str) -> dict:
    """A train line as the UI may show it: roles, the system prompt (the template's, not a
    user's), and the length of every other turn. What users wrote never enters the event
    log, which cannot be purged by user (``ldp forget``)."""
    shown = []
    for m in json.loads(line)["messages"]:
        text = m["content"] if m["role"] == "system" else f"‹{len(m['content'])} chars›"
        shown.append({"role": m["role"], "content": text})
    return {"messages": shown}


def _estimate(training: TrainingSettings, files: dict[str, dict]) -> dict:
    """What one epoch over the train file costs: OpenAI bills the training file's tokens
    once per epoch (the validation file is not billed)."""
    model = training.model()
    tokens = files["train.jsonl"]["tokens"]
    price = training.price_per_million()
    return {
        "target_model": model.name,
        "encoding": model.encoding,
        "context_limit": model.context_tokens,
        "train_tokens_per_epoch": tokens,
        "validation_tokens": files["validation.jsonl"]["tokens"],
        "usd_per_million_training_tokens": price,
        "usd_per_epoch": None if price is None else round(tokens * price / 1e6, 4),
    }


def training_batches(
    context: dg.AssetExecutionContext,
    training_examples: dict[str, pa.Table],
    lake: LakeResource,
    pipeline: PipelineSettings,
    training: TrainingSettings,
) -> dg.MaterializeResult:
    """The week's validated train/validation JSONL files and their manifest.

    The files and the manifest (with each file's sha256) are one lake commit: a run killed
    while writing leaves the previous week whole, never new files beside an old manifest.
    """
    started = time.perf_counter()
    week = context.partition_key
    budget = pipeline.training_token_budget
    days = sorted(training_examples)
    kept, duplicates, cross_day, left_out = _week_selection(
        lake, training_examples, days, budget, training.max_examples
    )
    lines, tokens, invalid, example_ids = _batch_lines(context, kept)
    _at_least_one_validation(lines, example_ids, tokens, kept, pipeline.min_training_examples)
    directory = batch_dir(lake, week)
    commit = lake.commit()
    files = _write_batch_files(commit, directory, lines, tokens)
    reasons = Counter(r.split(":", 1)[0] for r in left_out.values())
    estimate = _estimate(training, files)
    manifest = {
        "week": week,
        "days_with_data": days,
        "token_budget": budget,
        "max_examples": training.max_examples,
        "files": files,
        "duplicates_removed": duplicates,
        "near_duplicates_across_days": cross_day.get("near_duplicate", 0),
        "contaminated_removed": cross_day.get("contaminated", 0),
        "over_budget": reasons["over_budget"],
        "over_count": reasons["over_count"],
        "invalid_excluded": invalid,
        "format": "openai-chat-jsonl",
        "templates": _templates(kept),
        "estimate": estimate,
        "example_ids": example_ids,  # per file, in line order: lineage and overlap checks
        "not_selected": dict(sorted(left_out.items())),  # example id -> why the week left it
    }
    commit.add_bytes(
        posixpath.join(directory, MANIFEST), json.dumps(manifest, indent=2).encode("utf-8")
    )
    commit.apply()
    return dg.MaterializeResult(
        metadata={
            "train_examples": files["train.jsonl"]["examples"],
            "validation_examples": files["validation.jsonl"]["examples"],
            "train_tokens": files["train.jsonl"]["tokens"],
            "validation_tokens": files["validation.jsonl"]["tokens"],
            "estimated_training_tokens_per_epoch": estimate["train_tokens_per_epoch"],
            "estimated_usd_per_epoch": estimate["usd_per_epoch"],
            "target_model": estimate["target_model"],
            "days_with_data": len(days),
            "duplicates_removed": duplicates,
            "near_duplicates_across_days": cross_day.get("near_duplicate", 0),
            "over_budget": reasons["over_budget"],
            "over_count": reasons["over_count"],
            "invalid_excluded": invalid,
            "directory": dg.MetadataValue.path(lake.uri(directory)),
            "manifest": dg.MetadataValue.json(
                {k: v for k, v in manifest.items() if k not in ("example_ids", "not_selected")}
            ),
            "sample_train_line": dg.MetadataValue.json(
                _line_shape(lines["train.jsonl"][0]) if lines["train.jsonl"] else {}
            ),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
    )


def training_assets(
    partitions: Partitions, training: TrainingSettings
) -> list[dg.AssetsDefinition]:
    """Daily examples (and their selection log) and weekly batches, on the code location's
    partitions. The template's digest and the rules' are the examples' code version: a
    changed template shows their partitions (and the weeks built on them) as changed."""
    return [
        training_examples_asset(partitions, training),
        dg.asset(
            partitions_def=partitions.weekly,
            backfill_policy=weekly_backfill_policy,
            group_name="curated",
            kinds={"json", "openai"},
            ins={
                EXAMPLES_ASSET: dg.AssetIn(
                    partition_mapping=dg.TimeWindowPartitionMapping(),
                    metadata={"allow_missing_partitions": True},
                )
            },
            resource_defs={"training": training},
        )(training_batches),
    ]
