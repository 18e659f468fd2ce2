"""The lambda-alias strategy against real AWS Lambda: only when asked, never by default.

moto cannot show what matters most about a real alias: that a stale RevisionId is refused
(the proxy in motoproxy.py imitates that contract; this checks the real thing), and that
the weights read back as written. The test runs when both hold:

* AWS credentials are available to boto3 (environment, profile, or instance role), and
* ``REAL_AWS_TEST_FUNCTION`` names a function prepared for it: an alias
  (``REAL_AWS_TEST_ALIAS``, default ``canary-test``) on one published version, and another
  published version ``REAL_AWS_TEST_VERSION`` with the same role and dead-letter config.
  ``REAL_AWS_TEST_REGION`` (default: boto3's region) says where. (Not ``CANARY_*`` names:
  the daemon's settings refuse ``CANARY_*`` variables they do not know.)

It shifts the alias to 10% and 20%, provokes a 412 with a stale revision, and rolls back,
so the alias ends where it started. Otherwise it is skipped. That skip is allowed even
under ``CANARY_REQUIRE_SERVICES=1``: it is a missing credential, not a missing server
binary, and CI never holds AWS credentials.
"""

from __future__ import annotations

import os

import pytest

from strategies.aws import AwsClients, from_settings
from strategies.base import ConflictError
from strategies.lambda_alias import LambdaAliasTarget
from strategies.registry import Clients, create_strategy

FUNCTION = os.environ.get("REAL_AWS_TEST_FUNCTION")
ALIAS = os.environ.get("REAL_AWS_TEST_ALIAS", "canary-test")
VERSION = os.environ.get("REAL_AWS_TEST_VERSION", "")
REGION = os.environ.get("REAL_AWS_TEST_REGION")


def _credentials() -> bool:
    import boto3

    return boto3.session.Session().get_credentials() is not None


pytestmark = pytest.mark.skipif(
    not FUNCTION or not VERSION or not _credentials(),
    reason="real AWS test: set REAL_AWS_TEST_FUNCTION and REAL_AWS_TEST_VERSION, with AWS "
    "credentials, to run it (a credentials skip, allowed under CANARY_REQUIRE_SERVICES=1)",
)


async def test_a_real_alias_is_weighted_refuses_a_stale_revision_and_rolls_back() -> None:
    assert FUNCTION is not None
    target = LambdaAliasTarget(kind="lambda-alias", function=FUNCTION, alias=ALIAS, version=VERSION)
    aws = AwsClients(region=REGION)
    try:
        ours = create_strategy(target, None, Clients(None, {from_settings: aws}))
        await ours.validate()
        start = await ours.observe()
        assert start.matches(0), (
            f"the test alias must serve one version only, not {start.describe()}"
        )
        theirs = create_strategy(target, start.stable, Clients(None, {from_settings: aws}))
        await theirs.observe()  # reads the current RevisionId
        try:
            assert (await ours.shift(10)).matches(10)
            assert (await ours.shift(20)).matches(20)
            with pytest.raises(ConflictError):
                await theirs.shift(30)  # its RevisionId is two writes old
            assert (await ours.observe()).matches(20)
        finally:
            assert (await ours.rollback()).matches(0)
    finally:
        aws.close()
