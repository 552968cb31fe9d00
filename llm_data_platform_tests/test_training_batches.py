"""The weekly batch: rebuilt byte for byte, exported with its manifest, and blocked by its
check when a file is corrupted in any of the ways a fine-tuning job would choke on or a
reviewer would reject."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from llm_data_platform.defs.training.checks import training_batch_files_valid
from llm_data_platform.defs.training.export import export_batch
from llm_data_platform.defs.training.resources import training_settings
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform_tests.conftest import WEEK, materialize_one

FILES = ("train.jsonl", "validation.jsonl", "manifest.json")


def _week_dir(platform) -> Path:
    return Path(platform.settings.lake_root) / "curated" / "training_batches" / f"week={WEEK}"


def test_rebuilding_a_week_is_byte_identical(built):
    platform, _ = built
    before = {name: (_week_dir(platform) / name).read_bytes() for name in FILES}
    assert materialize_one(platform, "training_batches", WEEK).success
    after = {name: (_week_dir(platform) / name).read_bytes() for name in FILES}
    assert after == before
    manifest = json.loads(before["manifest.json"])
    assert (
        len(manifest["example_ids"]["train.jsonl"]) == manifest["files"]["train.jsonl"]["examples"]
    )


def test_export_to_a_folder_and_to_s3(built, tmp_path, moto_endpoint):
    platform, _ = built
    lake = platform.resources["lake"]
    manifest = export_batch(lake, WEEK, LakeResource(root=str(tmp_path / "out")))
    for name in ("train.jsonl", "validation.jsonl"):
        data = (tmp_path / "out" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest["files"][name]["sha256"]
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket="exports"
    )
    s3 = S3Resource(endpoint_url=moto_endpoint, region_name="us-east-1")
    dest = LakeResource(root="s3://exports/week", s3=s3)
    export_batch(lake, WEEK, dest)
    assert json.loads(dest.read_bytes(dest.path("manifest.json"))) == manifest
    with pytest.raises(SystemExit, match="No training batch"):
        export_batch(lake, "2020-01-06", dest)


def _rewrite(directory: Path, name: str, lines: list[str]) -> None:
    """Replace a batch file and fix its manifest entry: only the content is wrong."""
    data = ("\n".join(lines) + "\n").encode()
    (directory / name).write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name].update(
        examples=len(lines), bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _with_user_text(line: str, text: str) -> str:
    example = json.loads(line)
    example["messages"][1]["content"] += text
    return json.dumps(example)


def _check(platform, lake_root: Path) -> dg.AssetCheckResult:
    """The batch check's own body on the week (Dagster 1.13 cannot run a partitioned check
    without its asset, which would rebuild the files; the graph's runs exercise the wiring)."""
    context = SimpleNamespace(partition_keys=[WEEK])
    lake = LakeResource(root=str(lake_root))
    training = training_settings(platform.settings)
    return training_batch_files_valid(context, lake, platform.resources["pipeline"], training)


def test_the_unchanged_copy_passes(built, tmp_path):
    platform, _ = built
    shutil.copytree(Path(platform.settings.lake_root), tmp_path / "lake")
    assert _check(platform, tmp_path / "lake").passed


CORRUPTIONS = {
    "special token": lambda lines: [_with_user_text(lines[0], " <|im_start|>system")] + lines[1:],
    "PII": lambda lines: (
        [_with_user_text(lines[0], " mail me at jane.doe@example.com")] + lines[1:]
    ),
    "too few": lambda lines: lines[:3],
    "not JSON": lambda lines: ['{"messages": ['] + lines[1:],
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_the_batch_check_blocks_a_corrupted_batch(built, tmp_path, corruption):
    platform, _ = built
    lake_root = tmp_path / "lake"
    shutil.copytree(Path(platform.settings.lake_root), lake_root)
    directory = lake_root / "curated" / "training_batches" / f"week={WEEK}"
    lines = (directory / "train.jsonl").read_text().splitlines()
    _rewrite(directory, "train.jsonl", CORRUPTIONS[corruption](lines))
    evaluation = _check(platform, lake_root)
    assert not evaluation.passed, corruption
    problems = " ".join(evaluation.metadata["problems"].value)
    expected = {
        "special token": "special token",
        "PII": "PII",
        "too few": "fewer than",
        "not JSON": "not JSON",
    }[corruption]
    assert expected in problems, problems


def test_a_conversation_in_train_and_validation_is_blocked(built, tmp_path):
    platform, _ = built
    lake_root = tmp_path / "lake"
    shutil.copytree(Path(platform.settings.lake_root), lake_root)
    directory = lake_root / "curated" / "training_batches" / f"week={WEEK}"
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["example_ids"]["validation.jsonl"].append(manifest["example_ids"]["train.jsonl"][0])
    (directory / "manifest.json").write_text(json.dumps(manifest))
    evaluation = _check(platform, lake_root)
    assert not evaluation.passed
    assert "in train and validation" in " ".join(evaluation.metadata["problems"].value)


def test_a_small_week_keeps_one_validation_example_when_enough_train_remain():
    """10% of a dozen examples is often none by hash: one moves to validation (the same one
    on every rebuild) while more than LDP_MIN_TRAINING_EXAMPLES stay to train on."""
    from collections import Counter

    import pyarrow as pa

    from llm_data_platform.defs.training.assets import _at_least_one_validation

    def week(n: int):
        ids = {"train.jsonl": [f"ex-{i}" for i in range(n)], "validation.jsonl": []}
        lines = {"train.jsonl": [f"line {i}" for i in range(n)], "validation.jsonl": []}
        kept = pa.table({"example_id": ids["train.jsonl"], "n_tokens": [10 + i for i in range(n)]})
        return lines, ids, Counter({"train.jsonl": sum(range(10, 10 + n))}), kept

    lines, ids, tokens, kept = week(12)
    _at_least_one_validation(lines, ids, tokens, kept, min_train=10)
    assert len(ids["validation.jsonl"]) == 1 and len(ids["train.jsonl"]) == 11
    moved = ids["validation.jsonl"][0]
    assert lines["validation.jsonl"] == [f"line {moved.split('-')[1]}"]
    assert tokens["train.jsonl"] + tokens["validation.jsonl"] == sum(range(10, 22))
    again = week(12)
    _at_least_one_validation(*again, min_train=10)
    assert again[1]["validation.jsonl"] == [moved]  # a rebuild moves the same one

    lines, ids, tokens, kept = week(10)  # exactly the minimum: nothing moves
    _at_least_one_validation(lines, ids, tokens, kept, min_train=10)
    assert ids["validation.jsonl"] == [] and len(ids["train.jsonl"]) == 10
