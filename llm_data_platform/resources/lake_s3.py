"""The S3 side of the lake: pyarrow's S3 client built from dagster-aws's settings, and what an
S3 error means for the user (the cause, the path, the fix)."""

from __future__ import annotations

import re
from typing import Any

import dagster as dg
import pyarrow.fs as pafs
from dagster_aws.s3 import S3Resource

DOING = {"read": "reading", "write": "writing", "delete": "deleting"}

# pyarrow: "When <doing> key 'k' in bucket 'b': AWS Error <CODE> [(HTTP status N)] during
# <Operation> operation: <detail>"
_AWS_ERROR = re.compile(
    r"AWS Error (?P<code>[A-Z_]+)(?: \(HTTP status (?P<status>\d+)\))? during "
    r"(?P<op>\w+) operation: (?P<detail>.*)",
    re.S,
)
_S3_STATUS = {
    "SLOW_DOWN": (503, "SlowDown"),
    "SERVICE_UNAVAILABLE": (503, "ServiceUnavailable"),
    "THROTTLING": (503, "Throttling"),
    "INTERNAL_FAILURE": (500, "InternalError"),
    "ACCESS_DENIED": (403, "AccessDenied"),
    "NO_SUCH_BUCKET": (404, "NoSuchBucket"),
    "INVALID_ACCESS_KEY_ID": (403, "InvalidAccessKeyId"),
    "SIGNATURE_DOES_NOT_MATCH": (403, "SignatureDoesNotMatch"),
    "REQUEST_TIME_TOO_SKEWED": (403, "RequestTimeTooSkewed"),
}


def explain_s3(exc: OSError, action: str, uri: str, s3: dict[str, Any]) -> str:
    """What an S3 error from pyarrow means, for ``uri``, with the fix."""
    match = _AWS_ERROR.search(str(exc))
    if match is None:
        return f"S3 failed {DOING[action]} {uri}: {exc}"
    code, op = match["code"], match["op"]
    detail = " ".join(match["detail"].split())[:300]
    status, name = _S3_STATUS.get(code, (int(match["status"] or 0), code))
    attempts, endpoint = s3["attempts"], s3["endpoint"]
    tried = f"after {attempts} attempts ({op})"
    if code == "NETWORK_CONNECTION":
        if "curlCode: 28" in detail and "Connection timed out" not in detail:
            return (
                f"S3 at {endpoint} did not answer within {s3['request_timeout']:g} s for {uri} "
                f"{tried}: the network or the endpoint is stalled. Check the connection to "
                "it (LDP_S3_ENDPOINT_URL), or raise LakeResource.s3_request_timeout_seconds "
                "for a slow link, then re-run the step."
            )
        return (
            f"Could not connect to S3 at {endpoint} for {uri} {tried}: {detail}. Is the "
            "endpoint right (LDP_S3_ENDPOINT_URL, LDP_S3_REGION) and reachable from here?"
        )
    if status == 503 or code in {"THROTTLING", "REQUEST_LIMIT_EXCEEDED"}:
        return (
            f"S3 returned {status or 503} {name} for {uri} {tried}: the bucket is throttling "
            "requests. Re-run the step in a few minutes; if it persists, run fewer "
            "lake-writing runs at once or raise LakeResource.s3_max_attempts."
        )
    if status >= 500:
        return (
            f"S3 returned {status} {name} for {uri} {tried}: an error on the S3 side "
            f"({endpoint}). Re-run the step; if it persists, check the service's health."
        )
    if code in {"INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "REQUEST_TIME_TOO_SKEWED"}:
        return (
            f"S3 rejected the AWS credentials for {uri} ({status} {name}, {op}). Check "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the clock."
        )
    if status == 403:
        return (
            f"S3 denied access to {uri} (403 {name}, {op}): the AWS credentials in use may not "
            f"{'read' if action == 'read' else 'write'} there. Grant them s3:GetObject, "
            "s3:PutObject, s3:DeleteObject and s3:ListBucket on the lake's prefix, or use "
            "other credentials (AWS_PROFILE)."
        )
    if code == "NO_SUCH_BUCKET":
        return (
            f"The lake's bucket for {uri} does not exist at {endpoint}: create it, or fix "
            "LDP_LAKE_ROOT."
        )
    return f"S3 returned {status or ''} {name} for {uri} {tried}: {detail}".replace("  ", " ")


def s3_filesystem(
    s3: S3Resource, max_attempts: int, connect_timeout: float, request_timeout: float
) -> pafs.S3FileSystem:
    """pyarrow's S3 client with dagster-aws's settings. ``request_timeout`` bounds a stalled
    request (measured on Linux: a server that stops answering fails the attempt after it);
    throttling, 5xx and timeouts are retried ``max_attempts`` times in all."""
    import boto3

    session = boto3.session.Session(
        profile_name=s3.profile_name,
        aws_access_key_id=s3.aws_access_key_id,
        aws_secret_access_key=s3.aws_secret_access_key,
        aws_session_token=s3.aws_session_token,
        region_name=s3.region_name,
    )
    creds = session.get_credentials()
    if creds is None:
        raise dg.Failure(
            "The lake root is on S3 but no AWS credentials were found. Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or point LDP_LAKE_ROOT at a local folder."
        )
    frozen = creds.get_frozen_credentials()
    kwargs: dict[str, Any] = dict(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token,
        region=s3.region_name or session.region_name or "us-east-1",
    )
    if s3.endpoint_url:
        scheme, _, host = s3.endpoint_url.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(
        **kwargs,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts),
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
    )
