"""Gates on the fine-tuning data: every example and every JSONL line in valid chat format."""

import hashlib
import json
import posixpath

import dagster as dg

from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.defs.training.assets import BATCH_FILES, MANIFEST, batch_dir
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.training_format import validate_chat_example


def training_examples_valid_chat_format(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Every example parses and is a valid chat example; read in record batches."""
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
            for example_id, text in zip(
                batch["example_id"].to_pylist(), batch["messages_json"].to_pylist(), strict=True
            ):
                errors = validate_chat_example(json.loads(text))
                if errors:
                    invalid.append(f"{example_id}: {errors[0]}")
    return dg.AssetCheckResult(
        passed=not invalid,
        metadata={"examples": examples, "invalid": len(invalid), "first": invalid[:5]},
    )


def training_batch_files_valid(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Reads the files back: manifest checksums match and every line is a valid chat example."""
    problems: list[str] = []
    lines_checked = 0
    for week in list(context.partition_keys):
        directory = batch_dir(lake, week)
        raw_manifest = lake.read_bytes(posixpath.join(directory, MANIFEST))
        if raw_manifest is None:
            problems.append(f"{week}: no manifest")
            continue
        manifest = json.loads(raw_manifest)
        for name in BATCH_FILES:
            data = lake.read_bytes(posixpath.join(directory, name)) or b""
            expected = manifest["files"][name]
            if hashlib.sha256(data).hexdigest() != expected["sha256"]:
                problems.append(f"{week}/{name}: checksum differs from manifest")
            lines = [ln for ln in data.decode("utf-8").split("\n") if ln]
            if len(lines) != expected["examples"]:
                problems.append(f"{week}/{name}: {len(lines)} lines, manifest says {expected}")
            for number, line in enumerate(lines, start=1):
                lines_checked += 1
                try:
                    errors = validate_chat_example(json.loads(line))
                except json.JSONDecodeError as exc:
                    errors = [f"not JSON: {exc.msg}"]
                if errors:
                    problems.append(f"{week}/{name}:{number}: {errors[0]}")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"lines_checked": lines_checked, "problems": problems[:10] or ["none"]},
    )


def training_checks(partitions: Partitions) -> list[dg.AssetChecksDefinition]:
    """The fine-tuning data's gates, on the daily and weekly partitions."""
    examples = dg.asset_check(
        asset="training_examples", blocking=True, partitions_def=partitions.daily
    )
    batches = dg.asset_check(
        asset="training_batches", blocking=True, partitions_def=partitions.weekly
    )
    return [
        examples(training_examples_valid_chat_format),
        batches(training_batch_files_valid),
    ]
