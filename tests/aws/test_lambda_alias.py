"""The lambda-alias strategy against moto's server, driven by the real engine.

The engine runs on a virtual clock (a 30-minute plan takes a moment) while every alias
read and write is a real boto3 call over HTTP to moto, through the proxy of motoproxy.py
(which enforces RevisionId, as Lambda does and moto does not). Another boto3 client reads
the alias independently, as a person with the AWS CLI would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from helpers import document, lambda_target
from motohelpers import REGION, Moto

from analysis.base import Measurement, MetricQuery
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.model import Phase, Rollout
from canary.simulate import Scheduled, drive
from canary.store.memory import MemoryStore
from config.errors import SpecError
from config.spec import RolloutDocument
from config.targets import Target
from strategies.aws import AwsClients, from_settings
from strategies.base import PermanentError, Strategy, TemporaryError, TrafficSplit
from strategies.registry import Clients, create_strategy, factory

ALIAS_PATH = r"/functions/checkout/aliases/live"
GATES = {
    "interval": "30s",
    "failure_limit": 0,
    "gates": [{"name": "error-rate", "provider": "cloudwatch", "query": "errors", "max": 0.01}],
}

Seen = list[tuple[str, float | None, tuple[str, dict[str, float]]]]
Hook = Callable[[float], None]


def spec(
    version: str = "2",
    analysis: dict[str, Any] | None = None,
    function: str = "checkout",
    **target: Any,
) -> RolloutDocument:
    return document(targets=[lambda_target(function, version, **target)], analysis=analysis)


def alias_strategy(aws: AwsClients, stable: str | None = "1", **target: Any) -> Strategy:
    """The lambda-alias strategy for checkout:live, canary 2, as the engine builds it."""
    return create_strategy(
        spec(**target).spec.targets[0], stable, Clients(None, {from_settings: aws})
    )


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.001, 1000)


def spike_from(weight: float) -> Callable[[MetricQuery], Measurement]:
    def script(q: MetricQuery) -> Measurement:
        return Measurement(0.05 if q.weight >= weight else 0.001, 1000)

    return script


class Watched:
    """The real strategy; after each write another client reads the alias back.

    ``before_shift`` runs just before a shift reaches the strategy: a person editing the
    alias between canary's last read and its write.
    """

    kind = "lambda-alias"

    def __init__(self, inner: Strategy, moto: Moto, seen: Seen, before_shift: Hook | None) -> None:
        self.inner, self.moto, self.seen, self.before_shift = inner, moto, seen, before_shift

    async def _record(self, what: str, weight: float | None, split: TrafficSplit) -> TrafficSplit:
        self.seen.append((what, weight, await asyncio.to_thread(self.moto.alias)))
        return split

    async def validate(self) -> None:
        await self.inner.validate()

    async def observe(self) -> TrafficSplit:
        return await self.inner.observe()

    async def shift(self, canary_percent: float) -> TrafficSplit:
        if self.before_shift is not None:
            await asyncio.to_thread(self.before_shift, canary_percent)
        return await self._record("shift", canary_percent, await self.inner.shift(canary_percent))

    async def promote(self) -> TrafficSplit:
        return await self._record("promote", None, await self.inner.promote())

    async def rollback(self) -> TrafficSplit:
        return await self._record("rollback", None, await self.inner.rollback())


class Rig:
    def __init__(
        self,
        aws: AwsClients,
        moto: Moto,
        script: Callable[[MetricQuery], Measurement] = healthy,
        before_shift: Hook | None = None,
    ) -> None:
        self.clock = VirtualClock()
        self.store = MemoryStore()
        self.seen: Seen = []
        build = factory(Clients(None, {from_settings: aws}))

        def watched(target: Target, stable: str | None) -> Strategy:
            return Watched(build(target, stable), moto, self.seen, before_shift)

        self.engine = Engine(
            self.store,
            self.clock,
            watched,
            {"cloudwatch": ScriptedProvider(script)},
            options=EngineOptions(step_retry=1.0),
        )

    async def run(self, doc: RolloutDocument, scheduled: list[Scheduled] | None = None) -> Rollout:
        await self.engine.start()
        try:
            r = await self.engine.submit(doc, actor="ci")
            await drive(self.engine, self.clock, scheduled=scheduled)
            return await self.store.get(r.id)
        finally:
            await self.engine.stop()

    async def events(self, r: Rollout) -> list[str]:
        return [e.kind for e in await self.store.events(r.id)]


def shifts(seen: Seen) -> list[tuple[float | None, tuple[str, dict[str, float]]]]:
    return [(weight, alias) for what, weight, alias in seen if what == "shift"]


# ---------------------------------------------------------------- whole rollouts


async def test_each_step_weights_the_canary_and_the_promotion_cleans_up(
    aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    rig = Rig(aws, moto)
    r = await rig.run(spec())
    assert r.phase == Phase.SUCCEEDED, r.reason
    assert rig.seen == [
        ("shift", 10, ("1", {"2": 0.1})),
        ("shift", 25, ("1", {"2": 0.25})),
        ("shift", 50, ("1", {"2": 0.5})),
        ("shift", 100, ("1", {"2": 1.0})),
        ("promote", None, ("2", {})),
    ]
    assert moto.alias() == ("2", {})
    assert r.targets[0].stable == "1", "the stable version was read from the alias at start"


async def test_a_gate_failing_at_25_leaves_the_alias_exactly_as_before(
    aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    lam = moto.client("lambda")

    def state() -> tuple[Any, ...]:
        alias = lam.get_alias(FunctionName="checkout", Name="live")
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return alias["FunctionVersion"], weights, alias.get("Description"), alias["AliasArn"]

    before = state()
    rig = Rig(aws, moto, spike_from(25))
    r = await rig.run(spec(analysis=GATES))
    assert r.phase == Phase.ROLLED_BACK
    assert "error-rate 0.05 > max 0.01" in (r.reason or "")
    assert [w for w, _ in shifts(rig.seen)] == [10, 25], "never went past 25%"
    # Before the rollout the alias had no RoutingConfig at all; after the rollback its
    # AdditionalVersionWeights is empty: the same routing. Description and ARN untouched.
    assert state() == before


async def test_an_alias_changed_by_hand_mid_bake_pauses_the_rollout_as_drift(
    aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    rig = Rig(aws, moto)

    async def hand_edit() -> None:
        await asyncio.to_thread(
            moto.client("lambda").update_alias,
            FunctionName="checkout",
            Name="live",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"3": 0.2}},
        )

    when = rig.clock.now() + timedelta(minutes=2)  # inside the 5-minute bake at 10%
    r = await rig.run(spec(), scheduled=[(when, hand_edit)])
    assert r.phase == Phase.PAUSED
    assert "drift" in (r.paused_reason or "")
    assert "1 + 3 at 20%" in (r.paused_reason or "")
    assert moto.alias() == ("1", {"3": 0.2}), "canary never fights a person's change"
    assert "traffic.drift" in await rig.events(r)


def before_the_25_shift(moto: Moto, **update: Any) -> Hook:
    """Someone else's UpdateAlias between canary's last read and its shift to 25% (once)."""

    def edit(weight: float) -> None:
        if weight == 25 and not moto.proxy.count("PUT", ALIAS_PATH, 412):
            moto.client("lambda").update_alias(FunctionName="checkout", Name="live", **update)

    return edit


async def test_a_write_with_a_stale_revision_is_refused_and_a_foreign_split_is_drift(
    aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    race = before_the_25_shift(
        moto, FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 0.4}}
    )
    rig = Rig(aws, moto, before_shift=race)
    r = await rig.run(spec())
    assert moto.proxy.count("PUT", ALIAS_PATH, 412) == 1, "UpdateAlias carried the old RevisionId"
    assert r.phase == Phase.PAUSED
    assert "canary 40%" in (r.paused_reason or "")
    assert moto.alias() == ("1", {"2": 0.4})


async def test_a_stale_revision_over_our_own_split_is_read_again_and_retried(
    aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    # Ops edit the description only: the revision moves, the split does not.
    rig = Rig(aws, moto, before_shift=before_the_25_shift(moto, Description="touched by ops"))
    r = await rig.run(spec())
    assert moto.proxy.count("PUT", ALIAS_PATH, 412) == 1
    assert r.phase == Phase.SUCCEEDED
    alias = moto.client("lambda").get_alias(FunctionName="checkout", Name="live")
    assert alias["Description"] == "touched by ops", "canary only writes version and weights"


async def test_throttled_updates_are_retried_by_botocore_and_the_rollout_goes_through(
    aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    moto.proxy.fail("PUT", ALIAS_PATH, 429, "TooManyRequestsException", "Rate exceeded", times=2)
    rig = Rig(aws, moto)
    # A short plan: after a throttle, botocore's adaptive mode rate-limits this client for a
    # while (as designed), so every later call of a long plan would wait its turn.
    doc = document(
        targets=[lambda_target("checkout", "2")],
        steps=[{"weight": 10, "bake": "1m"}, {"weight": 50, "bake": "1m"}, {"weight": 100}],
    )
    r = await rig.run(doc)
    assert moto.proxy.count("PUT", ALIAS_PATH, 429) == 2
    assert r.phase == Phase.SUCCEEDED
    assert moto.alias() == ("2", {})


async def test_a_transient_error_botocore_gives_up_on_is_retried_by_the_policy(
    aws: AwsClients, moto: Moto
) -> None:
    # Lambda answers 409 ResourceConflictException while another update of the function
    # is in progress. botocore does not retry it; the tenacity policy (strategies/retry.py)
    # does, as it does any TemporaryError (throttling after botocore's own attempts too).
    moto.function()
    moto.proxy.fail(
        "PUT",
        ALIAS_PATH,
        409,
        "ResourceConflictException",
        "The operation cannot be performed at this time. An update is in progress",
        times=2,
    )
    strategy = alias_strategy(aws)
    assert (await strategy.shift(10)).matches(10)
    assert moto.proxy.count("PUT", ALIAS_PATH, 409) == 2
    assert moto.alias() == ("1", {"2": 0.1})


async def test_a_transient_error_that_outlasts_the_policy_reaches_the_engine_as_temporary(
    aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    moto.proxy.fail("PUT", ALIAS_PATH, 409, "ResourceConflictException", "busy", times=3)
    strategy = alias_strategy(aws)
    with pytest.raises(TemporaryError, match="lambda:UpdateAlias failed, AWS answered"):
        await strategy.shift(10)
    assert moto.proxy.count("PUT", ALIAS_PATH, 409) == 3, "3 attempts, then the engine decides"
    assert moto.alias() == ("1", {})


# ---------------------------------------------------------------- preflight


def _role(moto: Moto) -> None:
    other = moto.client("iam").create_role(RoleName="other", AssumeRolePolicyDocument="{}")
    lam = moto.client("lambda")
    lam.update_function_configuration(FunctionName="checkout", Role=other["Role"]["Arn"])
    lam.publish_version(FunctionName="checkout")  # version 4, with another role


def _dead_letter(moto: Moto) -> None:
    moto.proxy.dead_letter[("checkout", "2")] = "arn:aws:sqs:us-east-1:123456789012:dlq"


def _latest(moto: Moto) -> None:
    moto.client("lambda").update_alias(
        FunctionName="checkout", Name="live", FunctionVersion="$LATEST"
    )


def _third(moto: Moto) -> None:
    moto.client("lambda").update_alias(
        FunctionName="checkout",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"3": 0.1}},
    )


REFUSALS: dict[str, tuple[dict[str, Any], Callable[[Moto], None] | None, str]] = {
    "missing function": (
        {"function": "nope"},
        None,
        "function nope does not exist in us-east-1; check the target's function and region",
    ),
    "missing alias": ({"alias": "blue"}, None, "alias blue of function checkout does not exist"),
    "missing version": (
        {"version": "9"},
        None,
        "the canary version 9 of function checkout does not exist in us-east-1; publish it",
    ),
    "the alias's own version": (
        {"version": "1"},
        None,
        "version 1 is already the version alias live serves (the stable version)",
    ),
    "alias on $LATEST": ({}, _latest, "alias live points at $LATEST"),
    "another account than its ARN": (
        {"function": "arn:aws:lambda:us-east-1:999999999999:function:checkout"},
        None,
        "function checkout in us-east-1 is in account 123456789012, not 999999999999 as its "
        "ARN says",
    ),
    "a third version": ({}, _third, "already routes 10% to version 3, a third version"),
    "another role": (
        {"version": "4"},
        _role,
        "an alias can only split traffic between versions with the same execution role",
    ),
    "another dead-letter queue": (
        {},
        _dead_letter,
        "has dead-letter queue arn:aws:sqs:us-east-1:123456789012:dlq but the stable "
        "version 1 has none",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_preflight_refuses_with_the_fix_and_changes_nothing(
    case: str, aws: AwsClients, moto: Moto
) -> None:
    fields, prepare, expected = REFUSALS[case]
    moto.function()
    if prepare is not None:
        prepare(moto)
    before, writes = moto.alias(), moto.proxy.count("PUT", "/aliases/")
    strategy = alias_strategy(aws, None, **fields)
    with pytest.raises(PermanentError) as refused:
        await strategy.validate()
    assert expected in str(refused.value)
    assert moto.alias() == before
    assert moto.proxy.count("PUT", "/aliases/") == writes, "validate never writes"


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        ("9", "the canary version 9 of function checkout does not exist"),
        ("1", "version 1 is already the version alias live serves"),
    ],
)
async def test_a_rollout_naming_a_bad_version_fails_before_any_change(
    version: str, problem: str, aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    rig = Rig(aws, moto)
    r = await rig.run(spec(version))
    assert r.phase == Phase.FAILED
    assert (r.reason or "").startswith("preflight failed, nothing was changed")
    assert problem in (r.reason or "")
    assert moto.alias() == ("1", {})
    assert moto.proxy.count("PUT", "/aliases/") == 0


def test_latest_as_the_canary_is_refused_by_the_spec_itself() -> None:
    with pytest.raises(SpecError) as refused:
        spec("$LATEST")
    assert "spec.targets[0].version: $LATEST cannot take weighted traffic" in str(refused.value)


# ---------------------------------------------------------------- single calls


async def test_observe_expresses_any_split_of_the_two_versions(aws: AwsClients, moto: Moto) -> None:
    moto.function()
    lam = moto.client("lambda")
    strategy = alias_strategy(aws)

    def alias(version: str, weights: dict[str, float]) -> None:
        lam.update_alias(
            FunctionName="checkout",
            Name="live",
            FunctionVersion=version,
            RoutingConfig={"AdditionalVersionWeights": weights},
        )

    alias("2", {"1": 0.3})  # the canary primary, stable weighted: the canary serves 70%
    assert (await strategy.observe()).canary_weight == pytest.approx(70)
    alias("1", {"3": 0.3})
    seen = await strategy.observe()
    assert seen.canary_weight is None, "a third version is never one of our weights"
    assert seen.detail == "1 + 3 at 30%"
    alias("1", {})
    assert (await strategy.observe()).matches(0)  # the write below carries this revision
    assert (await strategy.shift(12.5)).matches(12.5)
    assert moto.alias() == ("1", {"2": 0.125})
    assert (await strategy.shift(0)).matches(0)
    assert moto.alias() == ("1", {})


async def test_access_denied_is_permanent_and_names_the_iam_action(
    aws: AwsClients, moto: Moto
) -> None:
    moto.function()
    moto.proxy.fail(
        "PUT",
        ALIAS_PATH,
        403,
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: lambda:UpdateAlias",
    )
    strategy = alias_strategy(aws)
    with pytest.raises(PermanentError) as refused:
        await strategy.shift(10)
    assert "not allowed to call lambda:UpdateAlias" in str(refused.value)
    assert "grant lambda:UpdateAlias to the daemon's IAM role" in str(refused.value)
    assert moto.proxy.count("PUT", ALIAS_PATH, 403) == 1, "a refusal is not retried"


async def test_a_targets_role_is_assumed_for_its_calls(moto: Moto) -> None:
    moto.function()
    deployer = moto.client("iam").create_role(
        RoleName="canary-deployer", AssumeRolePolicyDocument="{}"
    )
    assumed: list[str] = []

    def session() -> Any:
        import boto3

        s = boto3.session.Session(region_name=REGION)
        s.events.register(
            "provide-client-params.sts.AssumeRole",
            lambda params, **_: assumed.append(params["RoleArn"]),
        )
        return s

    aws = AwsClients(region=REGION, endpoint_url=moto.url, session_factory=session)
    try:
        strategy = alias_strategy(aws, None, role_arn=deployer["Role"]["Arn"])
        assert (await strategy.observe()).matches(0)
        assert (await strategy.shift(10)).matches(10)
    finally:
        aws.close()
    assert assumed == [deployer["Role"]["Arn"]], "assumed once, the credentials reused"
