"""A Kinesis client resource, configured like dagster-aws's S3Resource (region, endpoint,
retries, credentials from the usual boto3 chain): dagster-aws has no Kinesis resource."""

from typing import Any

import boto3
from dagster_aws.utils import ResourceWithBoto3Configuration, construct_boto_client_retry_config


class KinesisResource(ResourceWithBoto3Configuration):
    """boto3's Kinesis client; ``endpoint_url`` points it at moto or LocalStack."""

    def get_client(self) -> Any:
        session = boto3.session.Session(profile_name=self.profile_name)
        return session.client(
            "kinesis",
            region_name=self.region_name,
            use_ssl=self.use_ssl,
            verify=self.verify,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=construct_boto_client_retry_config(self.max_attempts),
        )
