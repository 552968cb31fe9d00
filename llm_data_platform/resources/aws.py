"""AWS clients (S3, Kinesis), configured with the fields of dagster-aws's S3Resource.

Why not dagster-aws itself: importing any part of it runs its package ``__init__``, which
loads every component it ships and Dagster's test utilities. Measured on 2 cores:
``import dagster, dagster_aws.s3`` 2.97 s against ``import dagster, boto3`` 1.50 s, paid by
every process of the platform (the CLI, each step process, each run the daemon launches) even
with S3 and Kinesis off. Here boto3 itself is imported only when a client is made.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field


class Boto3Resource(dg.ConfigurableResource):
    """A boto3 session's settings; credentials default to boto3's usual chain (environment,
    profile, instance role), so no key needs to be written into configuration."""

    region_name: str | None = Field(default=None, description="Region of the client.")
    max_attempts: int = Field(
        default=5, description="Attempts per call in boto3's standard retry mode."
    )
    profile_name: str | None = Field(default=None, description="Profile of the session.")
    use_ssl: bool = True
    endpoint_url: str | None = Field(
        default=None, description="Another endpoint (moto, LocalStack, MinIO)."
    )
    verify: bool | None = True
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None

    def session(self) -> Any:
        import boto3

        return boto3.session.Session(profile_name=self.profile_name)

    def client(self, service: str, **config: Any) -> Any:
        from botocore.config import Config

        retries = {"max_attempts": self.max_attempts, "mode": "standard"}
        return self.session().client(
            service,
            region_name=self.region_name,
            use_ssl=self.use_ssl,
            verify=self.verify,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=Config(retries=retries, **config),
        )


class S3Resource(Boto3Resource):
    """boto3's S3 client (the lake on S3, the S3 source prefix, batch export)."""

    use_unsigned_session: bool = Field(
        default=False, description="Anonymous requests (public buckets)."
    )

    def get_client(self) -> Any:
        if not self.use_unsigned_session:
            return self.client("s3")
        from botocore import UNSIGNED

        return self.client("s3", signature_version=UNSIGNED)


class KinesisResource(Boto3Resource):
    """boto3's Kinesis client; ``endpoint_url`` points it at moto or LocalStack."""

    def get_client(self) -> Any:
        return self.client("kinesis")
