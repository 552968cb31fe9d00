"""Privacy domain: deletion requests, the purge, and the sensor that applies new requests."""

import hashlib
import os

import dagster as dg

from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.defs.privacy.assets import (
    deletion_audit,
    deletion_requests,
    forget_job,
)
from llm_data_platform.privacy.requests import REQUESTS_STREAM
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.settings import Settings


def _fingerprint(folder: str) -> str:
    """Names, sizes and mtimes of the request files: any new or changed file changes it."""
    entries = []
    for dirpath, _, filenames in os.walk(folder):
        for name in sorted(f for f in filenames if f.endswith(".jsonl") and f[0] != "."):
            stat = os.stat(os.path.join(dirpath, name))
            entries.append(f"{os.path.join(dirpath, name)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:24]


@dg.sensor(
    name="deletion_requests_sensor",
    job=forget_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A new file in the landing folder's deletion_requests/ → a purge run.",
)
def deletion_requests_sensor(context: dg.SensorEvaluationContext, landing: LandingFolderResource):
    folder = os.path.join(landing.path, REQUESTS_STREAM)
    if not os.path.isdir(folder):
        return dg.SkipReason(f"no {folder} yet (`ldp forget --user ID` makes a request)")
    fingerprint = _fingerprint(folder)
    if fingerprint == context.cursor:
        return dg.SkipReason("no new deletion request")
    context.update_cursor(fingerprint)
    return dg.RunRequest(run_key=f"forget:{fingerprint}")


def build_defs(settings: Settings, partitions: Partitions) -> dg.Definitions:
    return dg.Definitions(
        assets=[deletion_requests, deletion_audit],
        jobs=[forget_job],
        sensors=[deletion_requests_sensor],
    )
