"""``ldp export-batch WEEK DEST``: a week's validated batch copied to a folder or an S3 URI.

The files are checked against the manifest's sha256 before they leave, and the manifest is
written last, as when the batch is built: a reader at DEST never trusts a half-copied batch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the commands: `ldp`'s parser stays light (no Dagster import)
    from llm_data_platform.resources.lake import LakeResource


def export_batch(lake: LakeResource, week: str, dest: LakeResource) -> dict:
    """Copy the week's files to ``dest``'s root; returns the manifest."""
    from llm_data_platform.defs.training.assets import BATCH_FILES, MANIFEST, batch_dir

    directory = batch_dir(lake, week)
    raw_manifest = lake.read_bytes(posixpath.join(directory, MANIFEST))
    if raw_manifest is None:
        raise SystemExit(
            f"No training batch for the week {week}. Build it first: `dagster asset materialize "
            f"-m llm_data_platform --select training_batches --partition {week}`."
        )
    manifest = json.loads(raw_manifest)
    files = {}
    for name in BATCH_FILES:
        data = lake.read_bytes(posixpath.join(directory, name)) or b""
        if hashlib.sha256(data).hexdigest() != manifest["files"][name]["sha256"]:
            raise SystemExit(f"{week}/{name} does not match its manifest: rebuild the week.")
        files[name] = data
    for name, data in files.items():
        dest.write_bytes(dest.path(name), data)
    dest.write_bytes(dest.path(MANIFEST), raw_manifest)
    return manifest


def cmd_export_batch(args: argparse.Namespace) -> int:
    from dagster_aws.s3 import S3Resource

    from llm_data_platform.definitions import build_resources
    from llm_data_platform.defs.training.assets import MANIFEST
    from llm_data_platform.resources.lake import LakeResource
    from llm_data_platform.settings import load_settings

    settings = load_settings()
    lake = build_resources(settings)["lake"]
    if args.dest.startswith("s3://"):
        s3 = S3Resource(
            region_name=settings.s3_region, endpoint_url=settings.s3_endpoint_url or None
        )
        dest = LakeResource(root=args.dest.rstrip("/"), s3=s3)
    elif args.dest.startswith("gs://"):
        from llm_data_platform.resources.lake_gcs import GcsResource

        gcs = GcsResource(
            project=settings.gcs_project or None,
            endpoint_url=settings.gcs_endpoint_url or None,
            retry_seconds=settings.gcs_retry_seconds,
        )
        dest = LakeResource(root=args.dest.rstrip("/"), gcs=gcs)
    else:
        dest = LakeResource(root=os.path.abspath(args.dest))
    manifest = export_batch(lake, args.week, dest)
    summary = {k: v for k, v in manifest.items() if k not in ("example_ids", "not_selected")}
    print(json.dumps(summary, indent=2))
    print(f"exported to {dest.uri(dest.path(MANIFEST)).rsplit('/', 1)[0]}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export-batch", help="copy a week's training batch to a folder, s3:// or gs://"
    )
    p.add_argument("week", help="the week's partition key (its Monday, YYYY-MM-DD)")
    p.add_argument("dest", help="a folder, s3://bucket/prefix or gs://bucket/prefix")
    p.set_defaults(func=cmd_export_batch)
