"""The appconfig-flag strategy against real AWS AppConfig: only when asked, never by default.

The local AppConfig (canary/appconfig_local.py) follows the documented contract; this
checks the real service: that a deployment of a hosted version with the variant's split
rule completes and reads back, and that the rollback leaves the document that was live
before, equal after parsing. It runs when both hold:

* AWS credentials are available to boto3 (environment, profile, or instance role), and
* ``CANARY_IT_APPCONFIG=application/environment/profile`` names a feature-flag profile
  (names or ids) deployed to that environment, whose flag ``canary-test`` has a variant
  ``on`` above its default variant (other names: ``application/environment/profile/flag/
  variant``). Use an environment nobody else deploys to meanwhile.
  ``AWS_REGION`` (or the profile's region) says where.

Each step deploys with canary's own all-at-once strategy (created once if missing). The
test shifts to 10% and 20% and rolls back, so the environment ends serving the document it
served at the start (as a new deployment of the same version). Otherwise it is skipped:
a credentials skip, allowed under CANARY_REQUIRE_SERVICES=1 (CI never holds AWS
credentials).
"""

from __future__ import annotations

import json
import os

import pytest

from strategies.appconfig import AppConfigFlagStrategy, AppConfigFlagTarget
from strategies.aws import AwsClients, from_settings
from strategies.base import TrafficSplit
from strategies.registry import Clients, create_strategy

NAMED = os.environ.get("CANARY_IT_APPCONFIG", "")
PARTS = [*NAMED.split("/"), "canary-test", "on"][:5] if NAMED.count("/") in (2, 3, 4) else []


def _credentials() -> bool:
    import boto3

    return boto3.session.Session().get_credentials() is not None


pytestmark = pytest.mark.skipif(
    not PARTS or not _credentials(),
    reason="real AWS test: set CANARY_IT_APPCONFIG=application/environment/profile, with AWS "
    "credentials, to run it (a credentials skip, allowed under CANARY_REQUIRE_SERVICES=1)",
)


async def test_a_real_flag_is_split_deployed_and_rolled_back_to_the_same_document() -> None:
    application, environment, profile, flag, variant = PARTS
    target = AppConfigFlagTarget(
        kind="appconfig-flag",
        application=application,
        environment=environment,
        profile=profile,
        flag=flag,
        variant=variant,
    )
    aws = AwsClients()
    try:
        built = create_strategy(target, None, Clients(None, {from_settings: aws}))
        assert isinstance(built, AppConfigFlagStrategy)
        ours = built
        await ours.validate()
        start = await ours.observe()
        assert start.matches(0), f"the test flag must not serve the variant: {start.describe()}"
        assert start.stable is not None
        before = json.dumps(await ours._document(start.stable), sort_keys=True)
        try:
            for weight in (10, 20):
                split = await _until_settled(ours, weight)
                assert split.matches(weight), split.describe()
        finally:
            restored = await _until_settled(ours, None)
            assert restored.matches(0), restored.describe()
        live, _ = await ours._latest()
        assert live is not None
        after = await ours._document(str(live["ConfigurationVersion"]))
        assert json.dumps(after, sort_keys=True) == before
    finally:
        aws.close()


async def _until_settled(s: AppConfigFlagStrategy, weight: float | None) -> TrafficSplit:
    """A shift (or, for None, the rollback), called again while the deployment runs."""
    import asyncio

    from strategies.base import ConflictError, TemporaryError

    for _ in range(60):
        try:
            return await (s.rollback() if weight is None else s.shift(weight))
        except (ConflictError, TemporaryError):  # still deploying
            await asyncio.sleep(5)
    raise AssertionError("the deployment did not complete within 5 minutes")
