"""CloudWatch's values over the window: what statistical and relative checks compare.

Against moto's server: per-minute datapoints put with their timestamps, read back with
GetMetricData at the metric's period, judged by a ``statistical`` gate that PASSes on a
healthy canary and FAILs on a slow or failing one. moto computes no percentiles, so the
p95 preset's per-minute request is checked against botocore's Stubber.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from motohelpers import DUMMY, REGION, Moto

from analysis.base import Measurement, Verdict, Window
from analysis.cloudwatch import CloudWatchProvider, series_period, valid_period
from analysis.gates import EvaluationContext, evaluate, queries_for
from analysis.judges import GateResult
from config.errors import SpecError
from config.spec import Gate, parse_document
from strategies.aws import AwsClients

NOW = datetime.now(UTC)
VARIABLES = {
    "kind": "lambda-alias",
    "function": "checkout",
    "alias": "live",
    "version": "2",
    "canary_version": "2",
    "stable_version": "1",
}
MINUTES = 6  # a 5-minute window widened to whole minutes holds 5 or 6 of them


def ctx(**variables: str) -> EvaluationContext:
    return EvaluationContext(now=NOW, weight=10, elapsed=600, variables=VARIABLES | variables)


def gate(**fields: Any) -> Gate:
    return Gate.model_validate(
        {"name": "g", "provider": "cloudwatch", "delay": "0s", "window": "5m"} | fields
    )


def dimensions(version: str) -> list[dict[str, str]]:
    return [
        {"Name": "FunctionName", "Value": "checkout"},
        {"Name": "Resource", "Value": "checkout:live"},
        {"Name": "ExecutedVersion", "Value": version},
    ]


def put(moto: Moto, version: str, metric: str, values: list[float], unit: str = "Count") -> None:
    """One datapoint per minute, the newest in the current minute."""
    moto.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": dimensions(version),
                "Value": value,
                "Unit": unit,
                "Timestamp": NOW - timedelta(minutes=ago),
            }
            for ago, value in enumerate(values)
        ],
    )


def duration_metric(version: str) -> dict[str, Any]:
    return {
        "namespace": "AWS/Lambda",
        "metric": "Duration",
        "stat": "Average",
        "dimensions": {
            "FunctionName": "{{ function }}",
            "Resource": "{{ function }}:{{ alias }}",
            "ExecutedVersion": "{{ " + version + " }}",
        },
    }


DURATION = {
    "metrics": {"c": duration_metric("canary_version"), "s": duration_metric("stable_version")},
    "query": "c",
    "stable_query": "s",
    "statistical": {"confidence": 0.99, "min_increase_percent": 10, "step": "1m"},
}


@pytest.fixture
def aws(moto: Moto) -> Iterator[AwsClients]:
    clients = AwsClients(
        region=REGION,
        endpoint_url=moto.url,
        session_factory=lambda: boto3.session.Session(region_name=REGION, **DUMMY),
    )
    yield clients
    clients.close()


async def judged(g: Gate, aws: AwsClients, **variables: str) -> GateResult:
    [result] = await evaluate([g], {"cloudwatch": CloudWatchProvider(aws)}, ctx(**variables))
    return result


def noisy(rng: random.Random, centre: float) -> list[float]:
    return [round(centre * rng.uniform(0.9, 1.1), 1) for _ in range(MINUTES)]


async def test_a_statistical_gate_on_cloudwatch_passes_a_healthy_canary(
    moto: Moto, aws: AwsClients
) -> None:
    rng = random.Random(3)
    put(moto, "1", "Duration", noisy(rng, 200), "Milliseconds")
    put(moto, "2", "Duration", noisy(rng, 205), "Milliseconds")
    result = await judged(gate(**DURATION), aws)
    assert result.verdict == Verdict.PASS, result.explanation
    assert "not higher beyond chance: Mann-Whitney" in result.explanation


async def test_a_statistical_gate_on_cloudwatch_fails_a_slow_canary(
    moto: Moto, aws: AwsClients
) -> None:
    rng = random.Random(4)
    put(moto, "1", "Duration", noisy(rng, 200), "Milliseconds")
    put(moto, "2", "Duration", noisy(rng, 320), "Milliseconds")
    result = await judged(gate(**DURATION), aws)
    assert result.verdict == Verdict.FAIL, result.explanation
    assert "higher beyond chance (Mann-Whitney" in result.explanation
    assert result.detail["n"] >= 5, "one value per minute of the window"


async def test_the_error_rate_preset_gives_each_minutes_share_to_a_statistical_check(
    moto: Moto, aws: AwsClients
) -> None:
    put(moto, "1", "Invocations", [1000.0] * MINUTES)
    put(moto, "1", "Errors", [2.0, 3.0, 1.0, 2.0, 4.0, 2.0])
    put(moto, "2", "Invocations", [100.0] * MINUTES)
    put(moto, "2", "Errors", [6.0, 4.0, 7.0, 5.0, 6.0, 5.0])
    statistical = {"statistical": {"min_increase_percent": 50}}
    result = await judged(gate(preset="lambda-error-rate", **statistical), aws)
    assert result.verdict == Verdict.FAIL, result.explanation
    canary, _ = await CloudWatchProvider(aws).query(
        queries_for(gate(preset="lambda-error-rate", **statistical), ctx()),
        Window(NOW - timedelta(minutes=5), NOW),
    )
    assert isinstance(canary, Measurement)
    # Oldest first, each minute's Errors / Invocations (the window holds the newest 5 or 6).
    assert list(canary.values) == [0.05, 0.06, 0.05, 0.07, 0.04, 0.06][-len(canary.values) :]

    put(moto, "3", "Invocations", [100.0] * MINUTES)  # a canary as good as stable
    put(moto, "3", "Errors", [0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    healthy = await judged(gate(preset="lambda-error-rate", **statistical), aws, canary_version="3")
    assert healthy.verdict == Verdict.PASS, healthy.explanation


async def test_a_relative_latency_gate_on_cloudwatch_is_bounded_with_per_minute_values(
    moto: Moto, aws: AwsClients
) -> None:
    rng = random.Random(5)
    put(moto, "1", "Duration", noisy(rng, 200), "Milliseconds")
    put(moto, "2", "Duration", noisy(rng, 400), "Milliseconds")
    relative = {k: v for k, v in DURATION.items() if k != "statistical"}
    result = await judged(gate(**relative, relative={"max_increase_percent": 20}), aws)
    assert result.verdict == Verdict.FAIL, result.explanation
    assert "99% bound" in result.explanation, "decided on the bound, not the point estimate"


# ---------------------------------------------------------------- p95, against the Stubber


class OneClient:
    def __init__(self, client: Any) -> None:
        self._client = client

    def client(self, service: str, **_: Any) -> Any:
        return self._client


START = datetime(2026, 5, 1, 11, 58, tzinfo=UTC)
WINDOW = Window(START + timedelta(seconds=20), START + timedelta(minutes=5, seconds=20))


def stat(id: str, metric: str, stat: str, version: str, period: int) -> dict[str, Any]:
    return {
        "Id": id,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": metric,
                "Dimensions": dimensions(version),
            },
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def answered(id: str, values: list[float], step: int = 60) -> dict[str, Any]:
    """Newest first, as ScanBy TimestampDescending answers."""
    times = [START + timedelta(seconds=step * i) for i in range(len(values))]
    return {
        "Id": id,
        "Label": id,
        "Timestamps": list(reversed(times)),
        "Values": list(reversed(values)),
        "StatusCode": "Complete",
    }


async def test_the_p95_preset_asks_each_minutes_duration_p95_of_each_version() -> None:
    client = boto3.client("cloudwatch", region_name=REGION, **DUMMY)
    aws = AwsClients(region=REGION, session_factory=lambda: OneClient(client))
    g = gate(preset="lambda-p95-duration", statistical={"step": "1m"})
    canary_minutes = [410.0, 430.0, 405.0, 520.0, 415.0, 400.0]
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    answered("m0", [480.0], 360),
                    answered("m1", [412.5], 360),
                    answered("m2", canary_minutes),
                    answered("m3", [9520.0], 360),
                    answered("m4", [388.0], 360),
                    answered("m5", [380.0, 390.0, 385.0, 392.0, 381.0, 379.0]),
                ]
            },
            {
                "MetricDataQueries": [
                    stat("m0", "Invocations", "Sum", "2", 360),
                    stat("m1", "Duration", "p95", "2", 360),
                    stat("m2", "Duration", "p95", "2", 60),
                    stat("m3", "Invocations", "Sum", "1", 360),
                    stat("m4", "Duration", "p95", "1", 360),
                    stat("m5", "Duration", "p95", "1", 60),
                ],
                "StartTime": START,
                "EndTime": START + timedelta(minutes=6),
                "ScanBy": "TimestampDescending",
            },
        )
        canary, stable = await CloudWatchProvider(aws).query(queries_for(g, ctx()), WINDOW)
        stubber.assert_no_pending_responses()
    aws.close()
    assert isinstance(canary, Measurement)
    assert isinstance(stable, Measurement)
    assert (canary.value, canary.samples) == (412.5, 480.0)
    assert canary.values == tuple(canary_minutes), "each minute's p95, oldest first"
    assert stable.values[0] == 380.0


# ---------------------------------------------------------------- the spec


def document(g: dict[str, Any]) -> None:
    parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": "x"},
            "spec": {
                "targets": [
                    {"kind": "lambda-alias", "function": "f", "alias": "live", "version": "2"}
                ],
                "analysis": {"gates": [g]},
            },
        }
    )


def test_a_statistical_check_on_cloudwatch_is_accepted() -> None:
    document(
        {"name": "g", "provider": "cloudwatch", "preset": "lambda-error-rate"} | {"statistical": {}}
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"preset": "lambda-p95-duration", "statistical": {"step": "30s"}},
            "30s: Lambda keeps lambda-p95-duration's metrics per minute; use a step of 1m",
        ),
        (
            {"query": "c", "stable_query": "s", "statistical": {"step": "45s"}},
            "45s is not a CloudWatch period",
        ),
    ],
)
def test_a_step_that_is_no_cloudwatch_period_is_refused(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as refused:
        document({"name": "g", "provider": "cloudwatch", "window": "10m"} | fields)
    assert any(
        p.path == "spec.analysis.gates[0].statistical.step" and message in p.message
        for p in refused.value.problems
    ), refused.value.problems


def test_periods() -> None:
    assert [valid_period(s) for s in (1, 5, 10, 30, 60, 120, 45, 90, 0.5)] == [
        True, True, True, True, True, True, False, False, False,
    ]  # fmt: skip
    assert series_period(45) == 60
    assert series_period(10, floor=60) == 60
    assert series_period(30) == 30
