"""Gates on the fine-tuning data: every example and every JSONL line in valid chat format."""

import hashlib
import json
import posixpath
import re

import dagster as dg
import numpy as np
import pyarrow as pa

from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.defs.rag.evaluation import read_eval_questions
from llm_data_platform.defs.training.assets import BATCH_FILES, MANIFEST, batch_dir
from llm_data_platform.defs.training.resources import TrainingSettings
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.pipeline import PipelineSettings
from llm_data_platform.transforms.decontamination import contaminated_mask
from llm_data_platform.transforms.pii import redact_pii
from llm_data_platform.transforms.target_tokenizer import PER_EXAMPLE, PER_MESSAGE, count_tokens
from llm_data_platform.transforms.training_format import invalid_lines, validate_chat_example
from llm_data_platform.transforms.training_selection import example_text


def training_examples_valid_chat_format(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Every example parses and is a valid chat example; read in record batches and checked
    by Arrow over each batch (only a failing line is parsed alone, to name its problem)."""
    keys = list(context.partition_keys)
    examples = lake.count_rows("curated", "training_examples", keys)
    if examples is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "partition missing"})
    invalid = []
    for key in keys:
        if lake.count_rows("curated", "training_examples", [key]) is None:
            continue  # a day with nothing yet
        for batch in lake.iter_partition_batches(
            "curated", "training_examples", key, 50_000, columns=["example_id", "messages_json"]
        ):
            for row, error in invalid_lines(batch["messages_json"]):
                invalid.append(f"{batch['example_id'][row].as_py()}: {error}")
    return dg.AssetCheckResult(
        passed=not invalid,
        metadata={"examples": examples, "invalid": len(invalid), "first": invalid[:5]},
    )


def training_batch_files_valid(
    context: dg.AssetCheckExecutionContext,
    lake: LakeResource,
    pipeline: PipelineSettings,
    training: TrainingSettings,
) -> dg.AssetCheckResult:
    """Reads the files back before anything leaves: manifest checksums match; every line is a
    valid chat example (parses, known keys and roles, string content, an assistant turn last)
    without special tokens or PII and within the target model's context limit; no
    conversation in both train and validation; nothing overlapping the evaluation questions;
    enough examples to tune on."""
    model = training.model()
    problems: list[str] = []
    lines_checked = 0
    for week in list(context.partition_keys):
        directory = batch_dir(lake, week)
        raw_manifest = lake.read_bytes(posixpath.join(directory, MANIFEST))
        if raw_manifest is None:
            problems.append(f"{week}: no manifest")
            continue
        manifest = json.loads(raw_manifest)
        texts: dict[str, list[str]] = {}
        for name in BATCH_FILES:
            data = lake.read_bytes(posixpath.join(directory, name)) or b""
            problems += _file_problems(f"{week}/{name}", data, manifest["files"][name])
            problems += _token_problems(
                f"{week}/{name}", data, model.encoding, model.context_tokens
            )
            texts[name] = [ln for ln in data.decode("utf-8").split("\n") if ln]
            lines_checked += len(texts[name])
        problems += _week_problems(week, manifest, texts, lake, pipeline.min_training_examples)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"lines_checked": lines_checked, "problems": problems[:10] or ["none"]},
    )


def _turns(line: str) -> str | None:
    """The user and assistant turns of a line (None when it does not parse: reported above)."""
    try:
        return example_text(line)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# Control tokens of chat templates: text holding one could break out of its turn when the
# provider renders the example (``<|endoftext|>``, ``<|im_start|>``, ``<|eot_id|>``, …).
SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_]{2,40}\|>|\[/?INST\]|<</?SYS>>")


def _file_problems(where: str, data: bytes, expected: dict) -> list[str]:
    problems = []
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        problems.append(f"{where}: checksum differs from manifest")
    lines = [ln for ln in data.decode("utf-8").split("\n") if ln]
    if len(lines) != expected["examples"]:
        problems.append(f"{where}: {len(lines)} lines, manifest says {expected['examples']}")
    for number, line in enumerate(lines, start=1):
        try:
            errors = validate_chat_example(json.loads(line))
        except json.JSONDecodeError as exc:
            errors = [f"not JSON: {exc.msg}"]
        token = SPECIAL_TOKEN.search(line)
        if token:
            errors.append(f"special token {token.group(0)!r} in a message")
        if errors:
            problems.append(f"{where}:{number}: {errors[0]}")
    return problems


def _token_problems(where: str, data: bytes, encoding: str, limit: int) -> list[str]:
    """Lines over the target model's context limit (counted as the job will: chat format)."""
    contents, roles, owner = [], [], []
    for number, line in enumerate(ln for ln in data.decode("utf-8").split("\n") if ln):
        try:
            messages = json.loads(line)["messages"]
            for m in messages:
                contents.append(str(m["content"]))
                roles.append(str(m["role"]))
                owner.append(number)
        except (ValueError, KeyError, TypeError):
            continue  # reported by _file_problems
    if not contents:
        return []
    per_message = count_tokens(contents + roles, encoding)
    cost = per_message[: len(contents)] + per_message[len(contents) :] + PER_MESSAGE
    totals = np.bincount(np.asarray(owner), weights=cost) + PER_EXAMPLE
    over = np.flatnonzero((totals > limit) & (np.bincount(np.asarray(owner)) > 0))
    return [f"{where}:{i + 1}: {int(totals[i])} tokens, over the limit of {limit}" for i in over]


def _week_problems(
    week: str, manifest: dict, texts: dict[str, list[str]], lake: LakeResource, minimum: int
) -> list[str]:
    problems = []
    ids = manifest.get("example_ids", {})
    both = set(ids.get("train.jsonl", [])) & set(ids.get("validation.jsonl", []))
    if both:
        problems.append(f"{week}: {len(both)} conversation(s) in train and validation")
    if len(texts["train.jsonl"]) < minimum:
        problems.append(
            f"{week}: {len(texts['train.jsonl'])} train examples, fewer than the "
            f"{minimum} a fine-tuning job needs (LDP_MIN_TRAINING_EXAMPLES)"
        )
    # what the model is tuned on: the user and assistant turns (JSON syntax and the shared
    # system prompt would only add look-alikes)
    every = pa.array([_turns(t) for name in BATCH_FILES for t in texts[name]], pa.string())
    if len(every):
        pii = redact_pii(every)
        found = {kind: n for kind, n in pii.counts.items() if n}
        if found:
            problems.append(f"{week}: PII patterns in the batch: {found}")
        questions = read_eval_questions(lake)
        if questions and any(contaminated_mask(every, questions)):
            problems.append(f"{week}: examples overlap the evaluation questions")
    return problems


def training_checks(
    partitions: Partitions, training: TrainingSettings
) -> list[dg.AssetChecksDefinition]:
    """The fine-tuning data's gates, on the daily and weekly partitions."""
    examples = dg.asset_check(
        asset="training_examples", blocking=True, partitions_def=partitions.daily
    )
    batches = dg.asset_check(
        asset="training_batches",
        blocking=True,
        partitions_def=partitions.weekly,
        resource_defs={"training": training},
    )
    return [
        examples(training_examples_valid_chat_format),
        batches(training_batch_files_valid),
    ]
