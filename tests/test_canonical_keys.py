"""One piece of traffic, one key: a Lambda alias named with or without its region, by name or
by ARN, is the same target, so the one-live-rollout-per-target rule sees the pair."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_rig import ApiRig, auth, spec_data, token_specs
from click.testing import CliRunner
from helpers import lambda_target

from canary.api.app import build_app
from canary.cli import cli
from canary.clock import RealClock
from canary.engine import Engine
from canary.store import MemoryStore
from config.errors import SpecError
from config.settings import Settings
from config.spec import canonical_document, parse_document
from strategies.aws import AwsClients, from_settings
from strategies.memory import MemoryFleet
from strategies.registry import Clients

API = "/api/v1"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:checkout"


def doc(**target: Any) -> Any:
    return parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": "checkout"},
            "spec": {"targets": [lambda_target() | target]},
        }
    )


def problems(**target: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        doc(**target)
    return {p.path: p.message for p in caught.value.problems}


class NoRegionSession:
    """What boto3's session says on a machine with no region anywhere."""

    region_name = None


def clients(region: str | None) -> Clients:
    aws = AwsClients(region=region, session_factory=NoRegionSession)
    return Clients(None, {from_settings: aws})


# ---------------------------------------------------------------- reading the spec


@pytest.mark.parametrize(
    "function",
    [ARN, f"{ARN}:live", "arn:aws-cn:lambda:us-east-1:123456789012:function:checkout"],
)
def test_a_function_arn_is_reduced_to_name_region_and_account(function: str) -> None:
    (target,) = doc(function=function).spec.targets
    assert (target.function, target.region, target.account) == (
        "checkout",
        "us-east-1",
        "123456789012",
    )
    assert target.key() == "lambda-alias/us-east-1/checkout/live"
    assert target.key() == doc(region="us-east-1").spec.targets[0].key()


@pytest.mark.parametrize(
    ("target", "path", "message"),
    [
        (
            {"function": f"{ARN}:7"},
            "spec.targets[0].function",
            "the ARN is qualified with version 7, not an alias; name the alias "
            "(...:function:<name>:<alias>) or leave the qualifier out",
        ),
        (
            {"function": f"{ARN}:beta"},
            "spec.targets[0].alias",
            "'live' differs from the alias in the function ARN ('beta'); set alias: beta, or "
            "drop the ARN's qualifier",
        ),
        (
            {"function": ARN, "region": "eu-west-1"},
            "spec.targets[0].region",
            "'eu-west-1' differs from the function ARN's region 'us-east-1'; remove region or "
            "make them agree",
        ),
        (
            {"function": ARN, "role_arn": "arn:aws:iam::999999999999:role/deployer"},
            "spec.targets[0].role_arn",
            "is in account 999999999999 but the function ARN in account 123456789012; assume a "
            "role in the function's account",
        ),
        (
            {"function": "arn:aws:lambda:us-east-1:123456789012:layer:deps"},
            "spec.targets[0].function",
            "'arn:aws:lambda:us-east-1:123456789012:layer:deps' is not a Lambda function ARN",
        ),
        (
            {"function": "123456789012:function:checkout"},
            "spec.targets[0].function",
            "'123456789012:function:checkout' is not a Lambda function name (1-64 letters, "
            "digits, '-' and '_'); give the name or the full ARN",
        ),
    ],
)
def test_an_arn_that_names_something_else_is_refused_with_the_fix(
    target: dict[str, Any], path: str, message: str
) -> None:
    found = problems(**target)
    assert list(found) == [path]
    assert found[path].startswith(message)


def test_name_and_arn_of_one_alias_in_one_spec_are_the_same_traffic() -> None:
    data = doc().to_data()
    data["spec"]["targets"] = [lambda_target(region="us-east-1"), lambda_target(function=ARN)]
    with pytest.raises(SpecError, match=r"the same traffic as targets\[0\]"):
        parse_document(data)


# ---------------------------------------------------------------- at submit


def test_the_daemons_region_is_filled_in() -> None:
    found = canonical_document(doc(), clients("eu-west-1"))
    assert found.spec.targets[0].region == "eu-west-1"
    assert found.spec.targets[0].key() == "lambda-alias/eu-west-1/checkout/live"
    named = canonical_document(doc(region="us-east-2"), clients("eu-west-1"))
    assert named.spec.targets[0].key() == "lambda-alias/us-east-2/checkout/live"


def test_one_region_and_the_other_targets_of_a_spec_are_compared_canonically() -> None:
    data = doc().to_data()
    data["spec"]["targets"] = [lambda_target(), lambda_target(region="eu-west-1")]
    with pytest.raises(SpecError) as caught:
        canonical_document(parse_document(data), clients("eu-west-1"))
    assert [str(p) for p in caught.value.problems] == [
        "spec.targets[1]: the same traffic as targets[0] "
        "(lambda-alias/eu-west-1/checkout/live); remove one"
    ]


def test_no_region_anywhere_is_refused_saying_to_set_one() -> None:
    with pytest.raises(SpecError) as caught:
        canonical_document(doc(), clients(None))
    assert [str(p) for p in caught.value.problems] == [
        "spec.targets[0].region: names no region and the daemon has none; set region here "
        "(e.g. us-east-1), or CANARY_AWS_REGION (or AWS_REGION) for the daemon"
    ]


async def test_concurrent_starts_of_one_alias_named_two_ways_get_one_rollout() -> None:
    """Region named vs omitted, and name vs ARN: the second of each pair is 409."""
    variants = [
        (lambda_target(), lambda_target(region="us-east-1")),
        (lambda_target(), lambda_target(function=ARN)),
        (lambda_target(function=f"{ARN}:live"), lambda_target(region="us-east-1")),
    ]
    for first, second in variants:
        async with ApiRig() as rig:
            bodies = []
            for target in (first, second):
                body = spec_data(steps=[{"weight": 10, "bake": "1h"}, {"weight": 100}])
                body["spec"]["targets"] = [target]
                bodies.append(body)
            answers = await asyncio.gather(
                *(rig.client.post(f"{API}/rollouts", json=b, headers=auth("ci")) for b in bodies)
            )
            assert sorted(a.status for a in answers) == [201, 409], (first, second)
            busy = next(a for a in answers if a.status == 409)
            assert (await busy.json())["target"] == "lambda-alias/us-east-1/checkout/live"
            live = await rig.store.live()
            assert len(live) == 1
            assert live[0].spec.targets[0].region == "us-east-1", "stored in canonical form"


async def test_a_retry_naming_the_region_is_the_same_rollout() -> None:
    """The idempotency comparison sees canonical specs: a retry is a retry (200)."""
    async with ApiRig() as rig:
        first = spec_data(build="b-1")
        second = spec_data(build="b-1")
        second["spec"]["targets"] = [lambda_target(region="us-east-1")]
        one = await rig.client.post(f"{API}/rollouts", json=first, headers=auth("ci"))
        two = await rig.client.post(f"{API}/rollouts", json=second, headers=auth("ci"))
        assert (one.status, two.status) == (201, 200)
        assert (await one.json())["id"] == (await two.json())["id"]


async def test_a_start_without_any_region_is_422_saying_to_set_one() -> None:
    engine = Engine(MemoryStore(), RealClock(), MemoryFleet().factory, {})
    settings = Settings(tokens=token_specs())
    app = build_app(engine, settings, canonical=lambda d: canonical_document(d, clients(None)))
    async with TestClient(TestServer(app)) as client:
        response = await client.post(f"{API}/rollouts", json=spec_data(), headers=auth("ci"))
        assert response.status == 422
        body = await response.json()
        assert body["errors"][0]["path"] == "spec.targets[0].region"
        assert "set region here" in body["errors"][0]["message"]
        assert await engine.store.live() == []


# ---------------------------------------------------------------- canary validate


SPEC = """\
apiVersion: canary/v1
kind: Rollout
metadata: {name: checkout}
spec:
  targets:
    - {kind: lambda-alias, function: checkout, alias: live, version: "2"}
"""


def test_validate_prints_the_canonical_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(SPEC)
    monkeypatch.setenv("CANARY_AWS_REGION", "eu-west-1")
    run = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert run.exit_code == 0, run.output
    assert "ok: checkout: lambda-alias/eu-west-1/checkout/live;" in run.output


def test_validate_without_a_region_says_the_key_is_not_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(SPEC)
    for name in ("CANARY_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    run = CliRunner().invoke(cli, ["validate", "-f", str(path), "--output", "json"])
    assert run.exit_code == 0, run.output
    assert '"targets": ["lambda-alias/default-region/checkout/live"]' in run.output
    assert "names no region and the daemon has none" in run.output
