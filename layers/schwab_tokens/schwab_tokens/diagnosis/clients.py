"""The AWS clients doctor asks, typed, all in one region (``--region``, else the
environment's ``AWS_REGION``/``AWS_DEFAULT_REGION``, else the profile's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import aws

if TYPE_CHECKING:  # type stubs, a development dependency only
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient


@dataclass(frozen=True)
class Clients:
    """doctor's boto3 clients, typed, all in ``region`` (None: boto3's own chain).

    Each method returns the shared client of ``aws.client``; making one raises
    ``ConfigurationError`` when boto3 cannot (no region, a bad profile).
    """

    region: str | None = None

    @property
    def region_name(self) -> str:
        """The region the clients ask, as boto3 resolved it (for the commands printed)."""
        return str(self.cloudformation().meta.region_name)

    def cloudformation(self) -> CloudFormationClient:
        """The CloudFormation client."""
        client: CloudFormationClient = aws.client("cloudformation", self.region)
        return client

    def cloudwatch(self) -> CloudWatchClient:
        """The CloudWatch client."""
        client: CloudWatchClient = aws.client("cloudwatch", self.region)
        return client

    def events(self) -> EventBridgeClient:
        """The EventBridge client."""
        client: EventBridgeClient = aws.client("events", self.region)
        return client

    def iam(self) -> IAMClient:
        """The IAM client."""
        client: IAMClient = aws.client("iam", self.region)
        return client

    def lambda_(self) -> LambdaClient:
        """The Lambda client."""
        client: LambdaClient = aws.client("lambda", self.region)
        return client

    def s3(self) -> S3Client:
        """The S3 client."""
        client: S3Client = aws.client("s3", self.region)
        return client

    def secretsmanager(self) -> SecretsManagerClient:
        """The Secrets Manager client."""
        client: SecretsManagerClient = aws.client("secretsmanager", self.region)
        return client

    def sns(self) -> SNSClient:
        """The SNS client."""
        client: SNSClient = aws.client("sns", self.region)
        return client
