"""Lambda and CloudWatch-alarm hooks against moto's server, through the real boto3 client.

moto runs Lambda without Docker here (its ``lambda.use_docker`` config off): an Invoke is
answered with the next payload queued at ``/moto-api/static/lambda-simple/response``, and
the proxy marks a function error the way Lambda does (``X-Amz-Function-Error``). Alarms
are real moto alarms, put with put_metric_alarm and moved with set_alarm_state.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from helpers import T0, lambda_target
from motohelpers import REGION, Moto

from analysis.base import Measurement, MetricQuery, Verdict
from analysis.hooks.cloudwatch_alarm import AlarmCaller, CloudWatchAlarmHook
from analysis.hooks.kind import HookCall, HookTarget
from analysis.hooks.lambda_hook import LambdaCaller, LambdaHook
from analysis.scripted import ScriptedProvider
from canary.actions import run_hook
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.events import EventKind
from canary.model import Phase
from canary.simulate import drive
from canary.store.memory import MemoryStore
from config.spec import parse_document
from strategies.aws import AwsClients
from strategies.memory import MemoryFleet

CALL = HookCall(
    point="step",
    hook="e2e",
    rollout_id="0123456789abcdef012345",
    rollout="checkout",
    targets=[HookTarget("lambda-alias/us-east-1/checkout/live", "lambda-alias", "2", "1")],
    step=3,
    steps=4,
    weight=50.0,
    at=T0.isoformat(),
    timestamp=int(T0.timestamp()),
)


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.fixture
def lambda_simple(moto: Moto) -> Iterator[Moto]:
    """moto's Lambda without Docker for this test (its config is global: set back after)."""
    _post(f"{moto.moto_url}/moto-api/config", {"lambda": {"use_docker": False}})
    try:
        moto.function("checkout-e2e", versions=1)
        yield moto
    finally:
        _post(f"{moto.moto_url}/moto-api/config", {"lambda": {"use_docker": True}})


def queue(moto: Moto, *payloads: Any) -> None:
    results = [p if isinstance(p, str) else json.dumps(p) for p in payloads]
    _post(
        f"{moto.moto_url}/moto-api/static/lambda-simple/response",
        {"results": results, "region": REGION},
    )


def e2e(**fields: Any) -> LambdaHook:
    return LambdaHook.model_validate(
        {"name": "e2e", "kind": "lambda", "point": "step", "function": "checkout-e2e"} | fields
    )


def test_the_function_error_header_is_lambdas_documented_contract() -> None:
    """What the proxy adds is what botocore reads a function error from."""
    model = botocore.session.get_session().get_service_model("lambda")
    output = model.operation_model("Invoke").output_shape
    assert output.members["FunctionError"].serialization == {
        "location": "header",
        "name": "X-Amz-Function-Error",
    }


async def test_a_test_function_that_answers_passes_and_gets_the_payload(
    lambda_simple: Moto, aws: AwsClients
) -> None:
    queue(lambda_simple, {"status": "pass", "tests": 40})
    result = await run_hook(e2e(), LambdaCaller(aws), CALL, 0.0)
    assert result.verdict == Verdict.PASS
    assert result.detail["status"] == 200
    assert json.loads(result.detail["body"]) == {"status": "pass", "tests": 40}


async def test_a_test_function_answering_status_fail_fails_with_its_message(
    lambda_simple: Moto, aws: AwsClients
) -> None:
    queue(lambda_simple, {"status": "fail", "message": "payment step: 3 of 40 runs failed"})
    result = await run_hook(e2e(), LambdaCaller(aws), CALL, 0.0)
    assert result.verdict == Verdict.FAIL
    assert "payment step: 3 of 40 runs failed" in result.explanation


async def test_a_function_error_is_a_failure_not_an_error(
    lambda_simple: Moto, aws: AwsClients
) -> None:
    lambda_simple.proxy.function_errors["checkout-e2e"] = 1
    queue(
        lambda_simple, {"errorMessage": "AssertionError: cart total", "errorType": "AssertionError"}
    )
    result = await run_hook(e2e(), LambdaCaller(aws), CALL, 0.0)
    assert result.verdict == Verdict.FAIL
    assert result.detail["function_error"] == "Unhandled"
    assert "AssertionError: cart total" in result.explanation


async def test_a_missing_function_is_an_error_and_is_not_tried_again(
    lambda_simple: Moto, aws: AwsClients
) -> None:
    # moto without Docker answers any name; Lambda answers 404 (the proxy shapes it so).
    lambda_simple.proxy.fail(
        "POST",
        r"/functions/no-such-suite/invocations",
        404,
        "ResourceNotFoundException",
        "Function not found: arn:aws:lambda:us-east-1:123456789012:function:no-such-suite",
        times=10,
    )
    result = await run_hook(e2e(function="no-such-suite", retries=3), LambdaCaller(aws), CALL, 0.0)
    assert result.verdict == Verdict.ERROR
    assert "Function not found" in result.explanation
    assert result.detail["attempts"] == 1
    assert lambda_simple.proxy.count("POST", r"/invocations") == 1


# --- CloudWatch alarms --------------------------------------------------------------------


def alarm(moto: Moto, name: str, state: str, reason: str) -> None:
    cloudwatch = moto.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


def alarms(**fields: Any) -> CloudWatchAlarmHook:
    return CloudWatchAlarmHook.model_validate(
        {"name": "alarms", "kind": "cloudwatch-alarm", "point": "step"} | fields
    )


async def test_all_alarms_ok_pass(moto: Moto, aws: AwsClients) -> None:
    alarm(moto, "checkout-api-errors", "OK", "fine")
    alarm(moto, "checkout-api-latency", "OK", "fine")
    result = await run_hook(alarms(alarm_prefix="checkout-api-"), AlarmCaller(aws), CALL, 0.0)
    assert result.verdict == Verdict.PASS
    assert result.detail["alarms"] == {"checkout-api-errors": "OK", "checkout-api-latency": "OK"}


async def test_an_alarm_in_alarm_fails_with_its_reason(moto: Moto, aws: AwsClients) -> None:
    alarm(moto, "checkout-api-errors", "ALARM", "Threshold Crossed: 1 datapoint [12.0] > 5.0")
    alarm(moto, "checkout-api-latency", "OK", "fine")
    alarm(moto, "billing-errors", "ALARM", "not ours")
    result = await run_hook(alarms(alarm_prefix="checkout-api-"), AlarmCaller(aws), CALL, 0.0)
    assert result.verdict == Verdict.FAIL
    assert "checkout-api-errors in ALARM: Threshold Crossed" in result.explanation
    assert "billing" not in result.explanation


async def test_insufficient_data_is_inconclusive(moto: Moto, aws: AwsClients) -> None:
    alarm(moto, "checkout-api-errors", "INSUFFICIENT_DATA", "no datapoints yet")
    result = await run_hook(alarms(alarms=["checkout-api-errors"]), AlarmCaller(aws), CALL, 0.0)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "no datapoints yet" in result.explanation


async def test_a_named_alarm_that_does_not_exist_is_an_error_never_a_pass(
    moto: Moto, aws: AwsClients
) -> None:
    alarm(moto, "checkout-api-errors", "OK", "fine")
    hook = alarms(alarms=["checkout-api-errors", "checkout-api-typo"])
    result = await run_hook(hook, AlarmCaller(aws), CALL, 0.0)
    assert result.verdict == Verdict.ERROR
    assert "checkout-api-typo" in result.explanation


async def test_an_alarm_firing_during_a_bake_rolls_the_release_back(
    moto: Moto, aws: AwsClients
) -> None:
    """The alarm gate on every check of every step: fine at 10%, then the alarm fires."""
    alarm(moto, "checkout-api-errors", "OK", "fine")
    doc = parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": "checkout"},
            "spec": {
                "targets": [lambda_target()],
                "steps": [
                    {"weight": 10, "bake": "2m"},
                    {"weight": 50, "bake": "2m"},
                    {"weight": 100},
                ],
                "analysis": {
                    "interval": "30s",
                    "failure_limit": 0,
                    "gates": [{"name": "errors", "provider": "cloudwatch", "query": "e", "max": 1}],
                },
                "hooks": [
                    {
                        "name": "alarms",
                        "kind": "cloudwatch-alarm",
                        "point": "step",
                        "run": "every-interval",
                        "alarm_prefix": "checkout-api-",
                    }
                ],
            },
        }
    )
    clock = VirtualClock(T0)
    store = MemoryStore()
    fleet = MemoryFleet(stable="1")

    def script(q: MetricQuery) -> Measurement:
        if q.weight >= 50:  # the canary at 50% trips the team's alarm
            alarm(moto, "checkout-api-errors", "ALARM", "Threshold Crossed: 9 errors > 5")
        return Measurement(0.0, 100)

    engine = Engine(
        store,
        clock,
        fleet.factory,
        {"cloudwatch": ScriptedProvider(script)},
        options=EngineOptions(hook_retry_wait=0.0),
        hooks={"cloudwatch-alarm": AlarmCaller(aws)},
    )
    await engine.start()
    r = await engine.submit(doc, actor="ci")
    await drive(engine, clock)
    await engine.stop()
    final = await store.get(r.id)
    events = await store.events(r.id)
    assert final.phase == Phase.ROLLED_BACK
    answers = [e for e in events if e.kind == EventKind.HOOK_ANSWERED]
    assert {e.data["result"]["verdict"] for e in answers if e.weight == 10} == {"PASS"}
    failed = [e for e in answers if e.data["result"]["verdict"] == "FAIL"]
    assert failed
    assert failed[0].weight == 50
    assert "Threshold Crossed: 9 errors > 5" in (final.reason or "")
