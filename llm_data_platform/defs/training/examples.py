"""Daily training examples and, beside them, what became of every conversation and why.

``training_examples`` and ``training_selection_log`` are one step (one result, written
together): the log holds one row per conversation of the day with its outcome — ``kept``, or
the rule that rejected it (``transforms/training_examples.REJECTION_REASONS``), or
``contaminated`` / ``near_duplicate`` (with the example it duplicates) from the day's final
selection. The step is subsettable so a job that names only ``training_examples`` still
resolves; the log is then computed and not written.
"""

import hashlib
import json
import time
from collections import Counter

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.defs.partitions import Partitions, daily_backfill_policy
from llm_data_platform.defs.rag.evaluation import read_eval_questions
from llm_data_platform.defs.training.resources import TrainingSettings
from llm_data_platform.lib.metadata import commit_partition_tables
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.prompt_templates import load_template
from llm_data_platform.transforms.training_examples import COLUMNS as CONVERSATION_COLUMNS
from llm_data_platform.transforms.training_examples import (
    EXAMPLES,
    SELECTION_LOG,
    TrainingConfig,
    build_training_examples,
    whole_conversations,
)
from llm_data_platform.transforms.training_selection import select_examples

CHUNK_ROWS = 100_000  # rows of conversations_clean held at once (whole conversations)
EXAMPLES_ASSET = "training_examples"
LOG_ASSET = "training_selection_log"


def examples_code_version(training: TrainingSettings) -> str:
    """The template's version and digest, and a digest of the rules and target model: a
    change of either marks exactly the days built otherwise as changed."""
    config = training.config()
    rules = {k: v for k, v in vars(config).items() if k not in {"system_prompt", "few_shot"}}
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True, default=str).encode()).hexdigest()
    return f"{load_template(training.template).code_version}|rules:{digest[:12]}"


def _with_final_outcomes(log: pa.Table, removed: dict[str, str]) -> pa.Table:
    """The day's log with the final selection's removals (contaminated, near duplicates)."""
    if not removed:
        return log
    ids = pa.array(list(removed), pa.string())
    reasons = pa.array(list(removed.values()), pa.string())
    where = pc.index_in(log["conversation_id"], value_set=ids)
    hit = pc.is_valid(where)
    reason = reasons.take(pc.fill_null(where, 0))
    outcome = pc.if_else(hit, pc.replace_substring_regex(reason, ":.*$", ""), log["outcome"])
    detail = pc.if_else(
        pc.and_(hit, pc.match_substring(reason, ":")), reason, log["detail"]
    )  # e.g. near_duplicate_of:<example id>
    log = log.set_column(log.schema.get_field_index("outcome"), "outcome", outcome)
    return log.set_column(log.schema.get_field_index("detail"), "detail", detail)


def examples_of_day(
    lake: LakeResource, day: str, config: TrainingConfig, eval_questions: list[str]
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """(examples, selection log, counts) of one day, read a chunk of whole conversations at
    a time (the clean table is sorted by conversation): memory holds one chunk and the day's
    candidate examples, not the day."""
    totals: Counter[str] = Counter()
    parts, logs = [], []
    try:
        batches = lake.iter_partition_batches(
            "clean", "conversations_clean", day, CHUNK_ROWS, columns=list(CONVERSATION_COLUMNS)
        )
        for chunk in whole_conversations(batches):
            result = build_training_examples(chunk, config)
            parts.append(result.examples)
            logs.append(result.log)
            totals.update(result.rejected)
            totals.update({f"info_{k}": v for k, v in result.info.items()})
    except FileNotFoundError:
        raise dg.Failure(
            f"conversations_clean has no data for {day}. Materialize it first: `dagster asset "
            f"materialize -m llm_data_platform --select conversations_clean,"
            f"conversations_clean_dropped --partition {day}`."
        ) from None
    candidates = pa.concat_tables(parts) if parts else EXAMPLES.empty_table()
    selection = select_examples(candidates, eval_questions)
    totals["kept"] -= candidates.num_rows - selection.kept.num_rows
    totals.update(selection.counts)
    totals["examples"] = selection.kept.num_rows
    totals["tokens"] = int(pc.sum(selection.kept["n_tokens"]).as_py() or 0)
    totals["chunks"] = len(parts)
    log = pa.concat_tables(logs) if logs else SELECTION_LOG.empty_table()
    log = _with_final_outcomes(log, selection.removed)
    return selection.kept, log, {k: int(v) for k, v in sorted(totals.items())}


def training_examples_asset(partitions: Partitions, training: TrainingSettings):
    """The daily step: ``training_examples`` and ``training_selection_log``."""
    version = examples_code_version(training)

    @dg.multi_asset(
        name="build_training_examples",
        outs={
            EXAMPLES_ASSET: dg.AssetOut(
                description="The day's best conversations in chat fine-tuning format, the "
                "prompt template applied, target-model tokens counted.",
                group_name="curated",
                kinds={"parquet", "openai"},
                code_version=version,
                metadata={"lake_zone": "curated", "lake_sort_by": ["example_id"]},
                is_required=False,
            ),
            LOG_ASSET: dg.AssetOut(
                description="Every conversation of the day with what became of it: kept, or "
                "the rule that rejected it.",
                group_name="curated",
                kinds={"parquet"},
                code_version=version,
                metadata={"lake_zone": "curated", "lake_sort_by": ["conversation_id"]},
                is_required=False,
            ),
        },
        deps=["retrieval_eval_set", "conversations_clean"],
        partitions_def=partitions.daily,
        backfill_policy=daily_backfill_policy,
        can_subset=True,
        resource_defs={"training": training},
    )
    def build(context: dg.AssetExecutionContext, lake: LakeResource, training: TrainingSettings):
        config = training.config()
        eval_questions = read_eval_questions(lake)
        if not eval_questions:
            context.log.warning(
                "No retrieval_eval_set materialized: training examples are not decontaminated."
            )
        selected = {k.path[-1] for k in context.selected_asset_keys}
        for key in context.partition_keys:
            started = time.perf_counter()
            examples, log, counts = examples_of_day(lake, key, config, eval_questions)
            counts["build_seconds"] = round(time.perf_counter() - started, 3)
            # the examples and their log are one result: one lake commit per day
            tables = {
                EXAMPLES_ASSET: ("curated", examples, ["example_id"]),
                LOG_ASSET: ("curated", log, ["conversation_id"]),
            }
            commit_partition_tables(
                context, lake, key, {a: t for a, t in tables.items() if a in selected}
            )
            if EXAMPLES_ASSET in selected:
                context.add_asset_metadata(counts, asset_key=EXAMPLES_ASSET, partition_key=key)
            if LOG_ASSET in selected:
                outcomes = pc.value_counts(log["outcome"]).to_pylist()
                meta = {f"outcome_{o['values']}": o["counts"] for o in outcomes}
                meta = dict(sorted(meta.items()))
                context.add_asset_metadata(meta, asset_key=LOG_ASSET, partition_key=key)
        if EXAMPLES_ASSET in selected:
            context.add_asset_metadata(
                {
                    "decontaminated_against_questions": len(eval_questions),
                    "template": config.template,
                    "system_prompt": dg.MetadataValue.text(config.system_prompt),
                    "few_shot_turns": len(config.few_shot),
                    "target_encoding": config.encoding,
                    "context_limit": config.max_tokens or 0,
                    "over_limit": config.over_limit,
                },
                asset_key=EXAMPLES_ASSET,
            )
            yield dg.Output(None, output_name=EXAMPLES_ASSET)  # None: committed above
        if LOG_ASSET in selected:
            yield dg.Output(None, output_name=LOG_ASSET)

    return build
