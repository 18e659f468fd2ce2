"""What the AWS tests share: the region, dummy credentials, and the ``Moto`` handle.

Kept out of conftest.py so that test modules import it by a name of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from motoproxy import AwsProxy

from canary.demo import create_function
from strategies.retry import RetryPolicy

REGION = "us-east-1"
DUMMY = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
FAST_RETRY = RetryPolicy(attempts=3, initial=0.05, maximum=0.2)


@dataclass
class Moto:
    """The endpoint (the proxy in front of moto) and test-side clients that go through it."""

    url: str
    proxy: AwsProxy
    moto_url: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **DUMMY)

    def alias(self, function: str = "checkout", name: str = "live") -> tuple[str, dict[str, float]]:
        """(primary version, additional weights) as another client reads them now."""
        found = self.client("lambda").get_alias(FunctionName=function, Name=name)
        weights = (found.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return str(found["FunctionVersion"]), dict(weights)

    def function(self, name: str = "checkout", versions: int = 3) -> str:
        """A function with versions 1..n and alias live on 1; returns its role's ARN."""
        return create_function(self.client("lambda"), self.client("iam"), name, versions)
