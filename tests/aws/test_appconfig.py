"""The appconfig-flag kind through the real boto3 client, over HTTP, against a local AppConfig.

moto's server holds applications, profiles and hosted configuration versions; the local
AppConfig in front of it (canary/appconfig_local.py) adds environments, deployment
strategies and deployments on the test's virtual clock, and the Agent's endpoint. Every
request is checked against botocore's model: ``appconfig`` fails a test that sent a
malformed one.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from appconfig_rig import (
    BASELINE,
    FLAG,
    Flag,
    Now,
    Rig,
    failing_from,
    in_thread,
    make_flag,
    spec,
)
from motohelpers import DUMMY, FAST_RETRY, REGION, Moto

import strategies.appconfig as kind
from canary.appconfig_local import LocalAppConfig, bucket, evaluate_flag
from canary.clock import VirtualClock
from canary.model import Phase
from strategies.appconfig import AppConfigFlagStrategy, split_rule, with_rule
from strategies.aws import AwsClients
from strategies.base import ConflictError, PermanentError
from strategies.registry import Clients, create_strategy


@pytest.fixture(scope="module")
def local_server(moto_url: str) -> Iterator[LocalAppConfig]:
    server = LocalAppConfig(moto_url, latency=0.0).start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def local(
    local_server: LocalAppConfig, moto: Moto, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalAppConfig]:
    local_server.reset()
    local_server.now = Now(clock)
    local_server.latency = 0.0
    local_server.agent_poll = 0.0
    monkeypatch.setattr(kind, "WAIT_IN_CALL", 0.3)
    monkeypatch.setattr(kind, "LOOK_EVERY", 0.05)
    yield local_server
    assert local_server.malformed == [], "a call did not match botocore's model of AppConfig"


@pytest.fixture
async def aws(local: LocalAppConfig) -> AsyncIterator[AwsClients]:
    clients = AwsClients(region=REGION, endpoint_url=local.url, retry=FAST_RETRY)
    yield clients
    clients.close()


@pytest.fixture
def flag(local: LocalAppConfig) -> Flag:
    return make_flag(local)


def strategy(aws: AwsClients, stable: str | None = "1", **update: Any) -> AppConfigFlagStrategy:
    built = create_strategy(
        spec(**update).spec.targets[0], stable, Clients(None, {kind.from_settings: aws})
    )
    assert isinstance(built, AppConfigFlagStrategy)
    return built


def rule_of(document: dict[str, Any], variant: str = "v2") -> str | None:
    for entry in document["values"][FLAG]["_variants"]:
        if entry["name"] == variant:
            return entry.get("rule")
    raise AssertionError(f"no variant {variant}")


# ---------------------------------------------------------------- whole rollouts


async def test_every_step_deploys_only_the_variants_rule_and_the_promotion_makes_it_default(
    aws: AwsClients, flag: Flag, clock: VirtualClock
) -> None:
    r = await Rig(aws, clock).run(spec())
    assert r.phase == Phase.SUCCEEDED, r.reason
    assert r.targets[0].stable == "1", "the live configuration version at the start"
    versions = [d for d in reversed(flag.deployments()) if d["DeploymentNumber"] > 1]
    rules = [rule_of(flag.version(d["ConfigurationVersion"])) for d in versions[:-1]]
    assert rules == [split_rule("userId", w) for w in (10, 25, 50, 100)]
    for d in versions[:-1]:  # nothing but the rule changed, compared after parsing
        document = flag.version(d["ConfigurationVersion"])
        assert document == with_rule(BASELINE, FLAG, "v2", rule_of(document))
    assert all(d["State"] == "COMPLETE" for d in versions)
    promoted = flag.live()
    names = [v["name"] for v in promoted["values"][FLAG]["_variants"]]
    assert names == ["beta-testers", "v2"], "v2 is the default now, the old default gone"
    assert "rule" not in promoted["values"][FLAG]["_variants"][-1]
    assert promoted["values"]["banner"] == BASELINE["values"]["banner"]


async def test_a_gate_failing_at_50_restores_the_exact_document_live_before(
    aws: AwsClients, flag: Flag, clock: VirtualClock
) -> None:
    before = flag.live()
    r = await Rig(aws, clock, failing_from(50)).run(spec())
    assert r.phase == Phase.ROLLED_BACK
    deployed = [d["ConfigurationVersion"] for d in reversed(flag.deployments())]
    assert deployed[-1] == "1", "the rollback redeploys the version live before the rollout"
    assert [rule_of(flag.version(v)) for v in deployed[1:-1]] == [
        split_rule("userId", w) for w in (10, 25, 50)
    ]
    assert flag.live() == before == BASELINE


@pytest.mark.parametrize("step", [10, 25, 50])
async def test_a_rollback_at_each_step_leaves_the_previous_document_served(
    aws: AwsClients, flag: Flag, clock: VirtualClock, step: int
) -> None:
    r = await Rig(aws, clock, failing_from(step)).run(spec())
    assert r.phase == Phase.ROLLED_BACK
    assert flag.live() == BASELINE
    assert flag.deployments()[0]["ConfigurationVersion"] == "1"


async def test_the_bake_starts_after_the_clients_poll_interval(
    aws: AwsClients, flag: Flag, clock: VirtualClock
) -> None:
    rig = Rig(aws, clock)
    r = await rig.run(spec(client_poll="45s"))
    assert r.phase == Phase.SUCCEEDED
    bakes = [e for e in await rig.events(r) if e.kind == "bake.started"]
    assert bakes[0].data["settle"] == 45.0
    assert bakes[0].data["remaining"] == 5 * 60 + 45
    assert "45s of it for clients to poll the change" in bakes[0].message


async def test_a_named_slow_deployment_strategy_is_waited_for_however_long_it_takes(
    aws: AwsClients, flag: Flag, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kind, "WAIT_IN_CALL", 0.02)
    rig = Rig(aws, clock)
    # 20% of hosts every 6 minutes, then a 30-minute bake: an hour per step, far past the
    # 5-minute retry budget of a failing shift.
    r = await rig.run(spec(deployment_strategy="AppConfig.Linear20PercentEvery6Minutes"))
    assert r.phase == Phase.SUCCEEDED, r.reason
    waits = [e for e in await rig.events(r) if e.kind == "traffic.shift_failed"]
    assert waits
    assert all(e.data["error"]["kind"] == "conflict" for e in waits)
    assert any("still DEPLOYING 20%" in e.message for e in waits)
    assert any("still BAKING 100%" in e.message for e in waits)
    done = [d for d in flag.deployments() if d["DeploymentNumber"] > 1]
    assert all(d["DeploymentDurationInMinutes"] == 30 for d in done)
    assert r.updated_at - r.created_at > timedelta(hours=4)


# ---------------------------------------------------------------- others' deployments


async def test_a_foreign_deployment_in_progress_is_a_conflict_waited_out_never_a_rollback(
    aws: AwsClients, flag: Flag, clock: VirtualClock, local: LocalAppConfig
) -> None:
    c = flag.client
    other = c.create_configuration_profile(
        ApplicationId=flag.app, Name="settings", LocationUri="hosted", Type="AWS.Freeform"
    )["Id"]
    version = c.create_hosted_configuration_version(
        ApplicationId=flag.app,
        ConfigurationProfileId=other,
        Content=b'{"timeout": 3}',
        ContentType="application/json",
    )["VersionNumber"]

    async def someone_deploys() -> None:  # 20 minutes of someone else's canary deployment
        await in_thread(
            c.start_deployment,
            ApplicationId=flag.app,
            EnvironmentId=flag.env,
            DeploymentStrategyId="AppConfig.Canary10Percent20Minutes",
            ConfigurationProfileId=other,
            ConfigurationVersion=str(version),
        )

    rig = Rig(aws, clock)
    when = clock.now() + timedelta(minutes=2)  # during the 10% bake
    r = await rig.run(spec(), scheduled=[(when, someone_deploys)])
    assert r.phase == Phase.SUCCEEDED, r.reason
    events = await rig.events(r)
    waits = [e for e in events if e.kind == "traffic.shift_failed"]
    assert waits, "each wait for the environment is recorded"
    assert all(e.data["error"]["kind"] == "conflict" for e in waits)
    assert "one deployment per environment" in waits[0].message
    assert not [e for e in events if e.kind == "rollback.started"]


async def test_a_deployment_by_someone_else_during_a_bake_is_drift_and_stays(
    aws: AwsClients, flag: Flag, clock: VirtualClock
) -> None:
    changed = json.loads(json.dumps(BASELINE))
    changed["values"]["banner"]["enabled"] = False

    async def someone_deploys() -> None:
        await in_thread(flag.deploy, await in_thread(flag.put, changed))

    rig = Rig(aws, clock)
    when = clock.now() + timedelta(minutes=2)
    r = await rig.run(spec(), scheduled=[(when, someone_deploys)])
    assert r.phase == Phase.PAUSED
    assert "drift" in (r.paused_reason or "")
    assert "not canary's document" in (r.paused_reason or "")
    assert flag.live() == changed, "canary never fights a person's deployment"


async def test_a_deployment_the_service_rolls_back_on_an_alarm_rolls_the_rollout_back(
    local: LocalAppConfig, moto: Moto, clock: VirtualClock
) -> None:
    cw = moto.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="pricing-errors",
        MetricName="Errors",
        Namespace="Storefront",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    arn = cw.describe_alarms(AlarmNames=["pricing-errors"])["MetricAlarms"][0]["AlarmArn"]
    flag = make_flag(local, monitors=[{"AlarmArn": arn}])
    local.latency = 30.0  # every deployment takes 30 s: the alarm fires during the 25% one
    aws = AwsClients(region=REGION, endpoint_url=local.url, retry=FAST_RETRY)
    fired = False

    async def alarm() -> None:
        nonlocal fired
        fired = True
        await in_thread(
            cw.set_alarm_state, AlarmName="pricing-errors", StateValue="ALARM", StateReason="t"
        )

    class Hook(Rig):
        pass

    rig = Hook(aws, clock)
    try:
        # 10%: deployed at ~30 s, bake 5 min from then (+30 s poll): the 25% deployment
        # starts at ~6 min; the alarm fires in it.
        when = clock.now() + timedelta(minutes=6, seconds=10)

        async def clear_later() -> None:
            await in_thread(
                cw.set_alarm_state, AlarmName="pricing-errors", StateValue="OK", StateReason="t"
            )

        r = await rig.run(
            spec(),
            scheduled=[(when, alarm), (when + timedelta(minutes=1), clear_later)],
        )
    finally:
        aws.close()
    assert fired
    assert r.phase == Phase.ROLLED_BACK, r.reason
    assert "AppConfig rolled deployment" in (r.reason or "")
    assert "pricing-errors" in (r.reason or "")
    states = {d["DeploymentNumber"]: d["State"] for d in flag.deployments()}
    assert "ROLLED_BACK" in states.values()
    assert flag.live() == BASELINE


# ---------------------------------------------------------------- the strategy alone


async def test_stop_deployment_ends_ours_rolled_back_and_the_rollback_redeploys_stable(
    aws: AwsClients, flag: Flag, local: LocalAppConfig
) -> None:
    s = strategy(aws)
    local.latency = 600.0  # the 10% deployment is still DEPLOYING after the call's wait
    with pytest.raises(ConflictError, match="still DEPLOYING 0%; waiting for it to complete"):
        await s.shift(10)
    number = flag.deployments()[0]["DeploymentNumber"]
    split = await s.rollback()  # stopping ours leaves the version before it served
    assert split.matches(0)
    states = {d["DeploymentNumber"]: d["State"] for d in flag.deployments()}
    assert states[number] == "ROLLED_BACK"
    assert "StopDeployment" in local.calls
    assert len(states) == 2, "the stable version is served again without a new deployment"
    assert flag.live() == BASELINE


async def test_after_a_restart_the_rollback_still_stops_the_rollouts_deployment(
    aws: AwsClients, flag: Flag, local: LocalAppConfig
) -> None:
    local.latency = 600.0
    with pytest.raises(ConflictError):
        await strategy(aws).shift(25)
    restarted = strategy(aws)  # a new process: it never started a deployment itself
    assert (await restarted.rollback()).matches(0)
    assert flag.deployments()[0]["State"] == "ROLLED_BACK"
    assert flag.live() == BASELINE


def test_canonical_fills_in_the_daemons_region_so_the_key_names_it() -> None:
    target = spec().spec.targets[0]
    made = kind.canonical(target, AwsClients(region="eu-west-1"))  # type: ignore[arg-type]
    assert made.key() == "appconfig-flag/eu-west-1/storefront/production/flags/new-pricing"
    named = spec(region="eu-west-1").spec.targets[0]
    assert kind.canonical(named, AwsClients(region="us-east-1")).key() == made.key()  # type: ignore[arg-type]


async def test_start_deployment_during_another_is_a_409_conflict(
    aws: AwsClients, flag: Flag, local: LocalAppConfig
) -> None:
    local.latency = 600.0
    flag.deploy(flag.put(BASELINE))
    with pytest.raises(Exception, match="ConflictException") as caught:
        flag.deploy("1")
    response = caught.value.response  # type: ignore[attr-defined]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert "one deployment per environment" in response["Error"]["Message"]
    with pytest.raises(ConflictError, match="busy with deployment #2"):
        await strategy(aws).shift(10)


async def test_a_shift_that_is_already_deployed_is_not_deployed_again(
    aws: AwsClients, flag: Flag
) -> None:
    s = strategy(aws)
    assert (await s.shift(10)).matches(10)
    count = len(flag.deployments())
    assert (await strategy(aws).shift(10)).matches(10), "a new strategy object (a restart)"
    assert len(flag.deployments()) == count


async def test_names_and_ids_name_the_same_flag(aws: AwsClients, flag: Flag) -> None:
    by_id = strategy(aws, application=flag.app, environment=flag.env, profile=flag.profile)
    await by_id.validate()
    assert (await by_id.observe()).matches(0)


@pytest.mark.parametrize(
    ("update", "document", "said"),
    [
        ({"application": "nope"}, None, "AppConfig application 'nope' does not exist"),
        ({"environment": "staging"}, None, "environment 'staging' of AppConfig application"),
        ({"profile": "nope"}, None, "configuration profile 'nope' of AppConfig application"),
        ({"flag": "missing"}, None, "it has no flag 'missing' (flags: banner, new-pricing)"),
        ({"variant": "v3"}, None, "flag 'new-pricing' has no variant 'v3'"),
        (
            {"variant": "control"},
            None,
            "variant 'control' is already the default of flag 'new-pricing'",
        ),
        ({"deployment_strategy": "nope"}, None, "deployment strategy 'nope' does not exist"),
    ],
)
async def test_preflight_refuses_with_the_fix_and_deploys_nothing(
    aws: AwsClients, flag: Flag, update: dict[str, Any], document: Any, said: str
) -> None:
    before = flag.deployments()
    with pytest.raises(PermanentError, match=said.replace("(", r"\(").replace(")", r"\)")):
        await strategy(aws, stable=None, **update).validate()
    assert flag.deployments() == before


async def test_preflight_refuses_a_profile_that_is_not_feature_flags(
    aws: AwsClients, local: LocalAppConfig
) -> None:
    flag = make_flag(local)
    c = flag.client
    c.create_configuration_profile(
        ApplicationId=flag.app, Name="plain", LocationUri="hosted", Type="AWS.Freeform"
    )
    with pytest.raises(PermanentError, match=r"not AWS\.AppConfig\.FeatureFlags"):
        await strategy(aws, stable=None, profile="plain").validate()


async def test_denied_calls_name_the_iam_action(
    aws: AwsClients, flag: Flag, local: LocalAppConfig
) -> None:
    local.denied = {"StartDeployment"}
    with pytest.raises(PermanentError, match="grant appconfig:StartDeployment"):
        await strategy(aws).shift(10)
    local.denied = {"ListDeployments"}
    with pytest.raises(PermanentError, match="grant appconfig:ListDeployments"):
        await strategy(aws, stable=None).validate()


async def test_the_default_deployment_strategy_is_created_once(
    aws: AwsClients, flag: Flag, local: LocalAppConfig
) -> None:
    await strategy(aws, stable=None).validate()
    await strategy(aws, stable=None).validate()
    mine = [s for s in local.strategies.values() if s["Name"] == kind.OWN_STRATEGY]
    assert len(mine) == 1
    assert mine[0]["FinalBakeTimeInMinutes"] == 0
    assert mine[0]["DeploymentDurationInMinutes"] == 0


# ---------------------------------------------------------------- the clients' view


def agent_read(local: LocalAppConfig, user: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{local.agent_url}/applications/storefront/environments/production/configurations/"
        f"flags?flag={FLAG}",
        headers={"Context": f"userId={user}"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return dict(json.loads(answer.read()))


async def test_the_served_share_follows_each_step_and_users_keep_the_canary(
    aws: AwsClients, flag: Flag, local: LocalAppConfig
) -> None:
    users = [f"user-{i}" for i in range(10_000)]
    s = strategy(aws)
    on_canary: dict[float, set[str]] = {}
    for weight in (10, 25, 50):
        assert (await s.shift(weight)).matches(weight)
        document = flag.live()
        served = {
            u for u in users if evaluate_flag(document, FLAG, {"userId": u})["_variant"] == "v2"
        }
        # beta-testers (1%, first) take their users before v2 is looked at
        beta = {u for u in users if bucket(u) < 1}
        share = len(served) / len(users) * 100
        assert abs(share - (weight - len(beta) / len(users) * 100)) <= 2, (weight, share)
        on_canary[weight] = served
        for user in users[:40]:  # the Agent's endpoint answers the same, over HTTP
            answer = await in_thread(agent_read, local, user)
            assert answer["_variant"] == ("v2" if user in served else answer["_variant"])
            assert (answer["_variant"] == "v2") == (user in served)
            assert answer["engine"] == ("v1" if answer["_variant"] == "control" else "v2")
    assert on_canary[10] <= on_canary[25] <= on_canary[50], "no user loses the canary"


def test_the_agent_names_a_rule_it_cannot_evaluate() -> None:
    document = with_rule(BASELINE, FLAG, "v2", '(eq $country "DE")')
    with pytest.raises(ValueError, match="operator this local Agent does not evaluate"):
        evaluate_flag(document, FLAG, {"userId": "u"})


def test_malformed_calls_are_refused_and_recorded(local: LocalAppConfig) -> None:
    import boto3

    c = boto3.client("appconfig", endpoint_url=local.url, region_name=REGION, **DUMMY)
    # botocore validates on the client side; a raw request shows the server's own check.
    request = urllib.request.Request(
        f"{local.url}/deploymentstrategies",
        data=json.dumps({"Name": "x", "GrowthFactor": 10, "Colour": "red"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert caught.value.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert "DeploymentDurationInMinutes" in local.malformed[0]
    assert "Colour" in local.malformed[0]
    local.malformed.clear()
    assert c.list_deployment_strategies()["Items"]


# ---------------------------------------------------------------- the IAM policy


def policy_actions() -> set[str]:
    root = Path(__file__).resolve().parents[2]
    policy = json.loads((root / "deploy" / "iam-appconfig-flag.json").read_text())
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## AWS AppConfig feature flags")[1].split("\n## ")[0]
    shown = json.loads(section.split("```json\n")[1].split("```")[0])
    assert shown == policy, "the README shows deploy/iam-appconfig-flag.json"
    actions: set[str] = set()
    for statement in policy["Statement"]:
        found = statement["Action"]
        actions |= {found} if isinstance(found, str) else set(found)
    return actions


async def test_the_least_privilege_policy_grants_every_call_the_strategy_makes_and_no_more(
    aws: AwsClients, flag: Flag, clock: VirtualClock, local: LocalAppConfig
) -> None:
    local.calls.clear()
    await Rig(aws, clock).run(spec())  # validate, observe, every shift, promote
    s = strategy(aws, deployment_strategy=None)
    local.latency = 600.0
    with pytest.raises(ConflictError):
        await s.shift(10)
    with pytest.raises(ConflictError):  # stops ours, redeploys stable (still running)
        await s.rollback()
    assert "StopDeployment" in local.calls
    called = {f"appconfig:{name}" for name in local.calls}
    assert called == policy_actions()


def test_appconfigs_own_timestamps_do_not_make_a_document_foreign() -> None:
    stamped = json.loads(json.dumps(BASELINE))
    stamped["flags"][FLAG]["_createdAt"] = "2026-01-01T00:00:00Z"
    stamped["values"][FLAG]["_updatedAt"] = "2026-12-02T10:00:00Z"
    renewed = json.loads(json.dumps(stamped))
    renewed["values"][FLAG]["_updatedAt"] = "2026-12-02T11:00:00Z"
    assert kind.same(stamped, renewed)
    assert kind.same(with_rule(stamped, FLAG, "v2", "r"), with_rule(BASELINE, FLAG, "v2", "r"))
    assert not kind.same(stamped, with_rule(BASELINE, FLAG, "v2", "r"))


async def test_the_agent_takes_context_in_one_header_or_several(
    aws: AwsClients, flag: Flag, local: LocalAppConfig
) -> None:
    assert (await strategy(aws).shift(50)).matches(50)
    user = next(f"u{i}" for i in range(1000) if 1 <= bucket(f"u{i}") < 40)  # v2 at 50%
    path = (
        f"{local.agent_url}/applications/storefront/environments/production/configurations/"
        f"flags?flag={FLAG}"
    )
    for headers in (
        [("Context", f"country=DE,userId={user}")],
        [("Context", "country=DE"), ("Context", f"userId={user}")],
    ):
        answer = await in_thread(_get_with_headers, path, headers)
        assert answer["_variant"] == "v2", headers
    assert (await in_thread(_get_with_headers, path, []))["_variant"] == "control"


def _get_with_headers(url: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.putrequest("GET", f"{parts.path}?{parts.query}")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("variant", "code", "expected"),
    [
        (
            "v2",
            0,
            "ok: new-pricing-engine: appconfig-flag/eu-west-1/storefront/production/"
            "feature-flags/new-pricing-engine",
        ),
        ("v3", 1, "flag 'new-pricing-engine' has no variant 'v3'"),
    ],
)
def test_validate_preflight_of_the_example_asks_appconfig_in_its_region(
    local: LocalAppConfig,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variant: str,
    code: int,
    expected: str,
) -> None:
    import boto3
    from click.testing import CliRunner

    from canary.cli import cli

    c = boto3.client("appconfig", endpoint_url=local.url, region_name="eu-west-1", **DUMMY)
    document = json.loads(json.dumps(BASELINE).replace(FLAG, "new-pricing-engine"))
    app = c.create_application(Name="storefront")["Id"]
    env = c.create_environment(ApplicationId=app, Name="production")["Id"]
    profile = c.create_configuration_profile(
        ApplicationId=app,
        Name="feature-flags",
        LocationUri="hosted",
        Type="AWS.AppConfig.FeatureFlags",
    )["Id"]
    version = c.create_hosted_configuration_version(
        ApplicationId=app,
        ConfigurationProfileId=profile,
        Content=json.dumps(document).encode(),
        ContentType="application/json",
    )["VersionNumber"]
    c.start_deployment(
        ApplicationId=app,
        EnvironmentId=env,
        DeploymentStrategyId="AppConfig.Linear50PercentEvery30Seconds",
        ConfigurationProfileId=profile,
        ConfigurationVersion=str(version),
    )
    local.now = lambda: 1e9  # long after that deployment's minute and bake
    root = Path(__file__).resolve().parents[2]
    text = (root / "config" / "examples" / "appconfig-flag.yaml").read_text()
    path = tmp_path / "rollout.yaml"
    text = text.split("  analysis:")[0] + (  # a CloudWatch gate: moto answers it
        "  analysis:\n    gates:\n      - {name: errors, provider: cloudwatch, max: 0.01,\n"
        "         metrics: {e: {namespace: Storefront, metric: Failed, stat: Average}},"
        " query: e}\n"
    )
    path.write_text(text.replace("variant: v2 ", f"variant: {variant} "))
    monkeypatch.setenv("CANARY_AWS_ENDPOINT_URL", local.url)
    run = CliRunner().invoke(cli, ["validate", "-f", str(path), "--preflight"])
    assert run.exit_code == code, run.output
    assert expected in run.output
    assert [
        d["DeploymentNumber"]
        for d in c.list_deployments(ApplicationId=app, EnvironmentId=env)["Items"]
    ] == [1], "a preflight deploys nothing"
