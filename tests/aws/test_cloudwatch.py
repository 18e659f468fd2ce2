"""The CloudWatch provider: real GetMetricData calls to moto's server, and botocore's Stubber
for what moto cannot answer.

moto (5.x) computes Sum, Average, Minimum, Maximum and SampleCount, and evaluates a metric
math expression only when it is a bare id. It does not compute percentiles (a p95 stat
makes it fail) nor arithmetic. So the p95 preset and metric-math queries are checked here
against botocore's Stubber, which validates the request against the real GetMetricData
model and returns a response shaped like CloudWatch's; everything else runs against moto.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from motohelpers import DUMMY, REGION, Moto
from test_errortext import debug_logs

from analysis.base import Measurement, ProviderError, Verdict, Window
from analysis.cloudwatch import CloudWatchProvider, aligned
from analysis.gates import EvaluationContext, evaluate, queries_for
from analysis.judges import GateResult
from config.spec import Gate
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


def ctx(now: datetime = NOW) -> EvaluationContext:
    return EvaluationContext(now=now, weight=10, elapsed=60, variables=VARIABLES)


def gate(**fields: Any) -> Gate:
    return Gate.model_validate(
        # Moto has the data at once: no publishing delay to wait for.
        {"name": "error-rate", "provider": "cloudwatch", "max": 0.01, "delay": "0s"} | fields
    )


def lambda_metric(metric: str, version: str = "{{ canary_version }}") -> dict[str, Any]:
    """A ``metrics`` entry: the Sum of a Lambda metric of one version behind the alias."""
    return {
        "namespace": "AWS/Lambda",
        "metric": metric,
        "stat": "Sum",
        "dimensions": {
            "FunctionName": "checkout",
            "Resource": "checkout:live",
            "ExecutedVersion": version,
        },
    }


def dimensions(version: str) -> list[dict[str, str]]:
    return [
        {"Name": "FunctionName", "Value": "checkout"},
        {"Name": "Resource", "Value": "checkout:live"},
        {"Name": "ExecutedVersion", "Value": version},
    ]


def publish(moto: Moto, version: str, invocations: float, errors: float, ago: float = 0) -> None:
    when = NOW - timedelta(seconds=ago)
    moto.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": dimensions(version),
                "Value": value,
                "Unit": "Count",
                "Timestamp": when,
            }
            for name, value in (("Invocations", invocations), ("Errors", errors))
        ],
    )


class Counted:
    """AwsClients to moto that count the GetMetricData calls made."""

    def __init__(self, moto: Moto) -> None:
        self.calls = 0

        def session() -> Any:
            s = boto3.session.Session(region_name=REGION, **DUMMY)
            s.events.register("before-call.cloudwatch.GetMetricData", self._count)
            return s

        self.aws = AwsClients(region=REGION, endpoint_url=moto.url, session_factory=session)

    def _count(self, **_: Any) -> None:
        self.calls += 1


@pytest.fixture
def counted(moto: Moto) -> Iterator[Counted]:
    c = Counted(moto)
    yield c
    c.aws.close()


async def judge(gates: list[Gate], provider: CloudWatchProvider) -> list[GateResult]:
    return await evaluate(gates, {"cloudwatch": provider}, ctx())


# ---------------------------------------------------------------- against moto


async def test_error_rate_preset_measures_each_version_in_one_call(
    moto: Moto, counted: Counted
) -> None:
    publish(moto, "1", 600, 1, ago=90)
    publish(moto, "1", 400, 1)
    publish(moto, "2", 120, 6, ago=90)  # two minutes of canary traffic, summed
    publish(moto, "2", 80, 4)
    own = gate(
        name="errors",
        metrics={
            "e": {
                "namespace": "AWS/Lambda",
                "metric": "Errors",
                "stat": "Sum",
                "dimensions": {
                    "FunctionName": "{{ function }}",
                    "Resource": "{{ function }}:{{ alias }}",
                    "ExecutedVersion": "{{ canary_version }}",
                },
            },
        },
        query="e",
        max=100,
    )
    results = await judge(
        [gate(preset="lambda-error-rate", min_samples=150), own], CloudWatchProvider(counted.aws)
    )
    rate, errors = results
    assert counted.calls == 1, "every gate of one evaluation in one GetMetricData call"
    assert rate.verdict == Verdict.FAIL
    assert (rate.value, rate.stable_value, rate.samples) == (0.05, 0.002, 200)
    assert rate.explanation == (
        "error-rate 0.05 > max 0.01: 10 of 200 requests, beyond chance (p<0.001) "
        "(stable 0.002) → FAIL"
    ), "the invocations are the sample size of the binomial check"
    assert (errors.verdict, errors.value) == (Verdict.PASS, 10)


async def test_a_version_without_invocations_is_inconclusive_never_a_pass(
    moto: Moto, counted: Counted
) -> None:
    publish(moto, "1", 1000, 0)
    [result] = await judge([gate(preset="lambda-error-rate")], CloudWatchProvider(counted.aws))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "has no data for the canary" in result.explanation


async def test_own_metrics_with_a_samples_query_give_value_and_sample_count(
    moto: Moto, counted: Counted
) -> None:
    publish(moto, "2", 300, 3)
    g = gate(
        metrics={"errors": lambda_metric("Errors"), "calls": lambda_metric("Invocations")},
        query="errors",
        samples_query="calls",
        max=5,
        min_samples=100,
    )
    [result] = await judge([g], CloudWatchProvider(counted.aws))
    assert (result.verdict, result.value, result.samples) == (Verdict.PASS, 3, 300)


async def test_an_unknown_template_variable_is_an_error_that_names_it(
    moto: Moto, counted: Counted
) -> None:
    g = gate(
        metrics={
            "e": {
                "namespace": "AWS/Lambda",
                "metric": "Errors",
                "stat": "Sum",
                "dimensions": {"FunctionName": "{{ functon }}"},
            }
        },
        query="e",
    )
    [result] = await judge([g], CloudWatchProvider(counted.aws))
    assert result.verdict == Verdict.ERROR
    assert "no value for {{ functon }} in the query; known here: " in result.explanation
    assert counted.calls == 0


async def test_more_queries_than_one_call_takes_are_split_over_calls(
    moto: Moto, counted: Counted
) -> None:
    publish(moto, "7", 70, 7)
    gates = [
        gate(
            name=f"g{i}",
            metrics={"e": lambda_metric("Errors", version=str(i))},
            query="e",
            max=100,
        )
        for i in range(300)
    ]
    results = await judge(gates, CloudWatchProvider(counted.aws))
    assert counted.calls == 2, "600 queries: GetMetricData takes at most 500 per call"
    assert results[7].value == 7
    assert all(r.verdict == Verdict.INCONCLUSIVE for i, r in enumerate(results) if i != 7)


def test_the_window_is_widened_to_whole_minutes() -> None:
    end = datetime(2026, 5, 1, 12, 3, 20, tzinfo=UTC)
    assert aligned(Window(end - timedelta(minutes=5), end)) == (
        datetime(2026, 5, 1, 11, 58, tzinfo=UTC),
        datetime(2026, 5, 1, 12, 4, tzinfo=UTC),
    )
    short = aligned(Window(end - timedelta(seconds=10), end))
    assert short == (
        datetime(2026, 5, 1, 12, 3, tzinfo=UTC),
        datetime(2026, 5, 1, 12, 4, tzinfo=UTC),
    )
    exact = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert aligned(Window(exact - timedelta(seconds=30), exact)) == (
        exact - timedelta(minutes=1),
        exact,
    )


# ---------------------------------------------------------------- against the Stubber


class OneClient:
    """A session whose every client is the stubbed one."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def client(self, service: str, **_: Any) -> Any:
        return self._client


@pytest.fixture
def stubbed() -> Iterator[tuple[Stubber, CloudWatchProvider]]:
    client = boto3.client("cloudwatch", region_name=REGION, **DUMMY)
    aws = AwsClients(region=REGION, session_factory=lambda: OneClient(client))
    with Stubber(client) as stubber:
        yield stubber, CloudWatchProvider(aws)
        stubber.assert_no_pending_responses()
    aws.close()


WINDOW = Window(
    datetime(2026, 5, 1, 11, 58, 20, tzinfo=UTC), datetime(2026, 5, 1, 12, 3, 20, tzinfo=UTC)
)
START, END = datetime(2026, 5, 1, 11, 58, tzinfo=UTC), datetime(2026, 5, 1, 12, 4, tzinfo=UTC)


def stat(id: str, metric: str, stat: str, version: str, returned: bool = True) -> dict[str, Any]:
    return {
        "Id": id,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": metric,
                "Dimensions": dimensions(version),
            },
            "Period": 360,
            "Stat": stat,
        },
        "ReturnData": returned,
    }


def request(*entries: dict[str, Any]) -> dict[str, Any]:
    """The GetMetricData parameters the provider should send for WINDOW."""
    return {
        "MetricDataQueries": list(entries),
        "StartTime": START,
        "EndTime": END,
        "ScanBy": "TimestampDescending",
    }


def answer(**values: list[float]) -> dict[str, Any]:
    return {
        "MetricDataResults": [
            {
                "Id": id,
                "Label": id,
                "Timestamps": [START] * len(v),
                "Values": v,
                "StatusCode": "Complete",
            }
            for id, v in values.items()
        ]
    }


async def test_p95_preset_asks_duration_p95_per_version(
    stubbed: tuple[Stubber, CloudWatchProvider],
) -> None:
    # moto cannot compute percentiles: this checks the request the preset sends and how the
    # response is read, against botocore's model of GetMetricData (Stubber).
    stubber, provider = stubbed
    queries = queries_for(gate(preset="lambda-p95-duration", max=800), ctx())
    stubber.add_response(
        "get_metric_data",
        answer(m0=[480.0], m1=[412.5], m2=[9520.0], m3=[388.0]),
        request(
            stat("m0", "Invocations", "Sum", "2"),
            stat("m1", "Duration", "p95", "2"),
            stat("m2", "Invocations", "Sum", "1"),
            stat("m3", "Duration", "p95", "1"),
        ),
    )
    canary, stable = await provider.query(queries, WINDOW)
    assert isinstance(canary, Measurement)
    assert isinstance(stable, Measurement)
    assert (canary.value, canary.samples) == (412.5, 480.0)
    assert (stable.value, stable.samples) == (388.0, 9520.0)


async def test_metric_math_is_sent_over_prefixed_ids_and_read_back(
    stubbed: tuple[Stubber, CloudWatchProvider],
) -> None:
    # moto evaluates no arithmetic; the Stubber checks the expression CloudWatch would get.
    stubber, provider = stubbed
    g = gate(
        metrics={"errors": lambda_metric("Errors"), "calls": lambda_metric("Invocations")},
        query="100 * errors / calls",
        samples_query="calls",
        max=1,
    )
    stubber.add_response(
        "get_metric_data",
        answer(e2=[0.5], e3=[400.0]),
        request(
            stat("m0", "Errors", "Sum", "2", returned=False),
            stat("m1", "Invocations", "Sum", "2", returned=False),
            {"Id": "e2", "Expression": "100 * m0 / m1", "ReturnData": True},
            {"Id": "e3", "Expression": "m1", "ReturnData": True},
        ),
    )
    [measured] = await provider.query(queries_for(g, ctx()), WINDOW)
    assert measured == Measurement(0.5, samples=400.0)


async def test_answers_over_several_pages_are_put_together(
    stubbed: tuple[Stubber, CloudWatchProvider],
) -> None:
    stubber, provider = stubbed
    queries = queries_for(gate(preset="lambda-error-rate"), ctx())
    expected = request(
        stat("m0", "Invocations", "Sum", "2"),
        stat("m1", "Errors", "Sum", "2"),
        stat("m2", "Invocations", "Sum", "1"),
        stat("m3", "Errors", "Sum", "1"),
    )
    stubber.add_response(
        "get_metric_data", answer(m0=[100.0], m1=[1.0]) | {"NextToken": "more"}, expected
    )
    stubber.add_response(
        "get_metric_data",
        answer(m0=[100.0], m1=[3.0], m2=[50.0], m3=[0.0]),
        expected | {"NextToken": "more"},
    )
    canary, stable = await provider.query(queries, WINDOW)
    assert canary == Measurement(
        0.02, samples=200.0, detail={"version": "2", "invocations": 200.0, "errors": 4.0}
    )
    assert isinstance(stable, Measurement)
    assert stable.value == 0.0


async def test_access_denied_is_an_error_naming_the_iam_action(
    stubbed: tuple[Stubber, CloudWatchProvider],
) -> None:
    stubber, provider = stubbed
    stubber.add_client_error(
        "get_metric_data",
        service_error_code="AccessDenied",
        service_message="denied",
        http_status_code=403,
    )
    [result] = await evaluate([gate(preset="lambda-error-rate")], {"cloudwatch": provider}, ctx())
    assert result.verdict == Verdict.ERROR
    assert "not allowed to call cloudwatch:GetMetricData" in result.explanation


async def test_a_preset_on_a_target_that_is_not_lambda_is_an_error() -> None:
    provider = CloudWatchProvider(AwsClients(region=REGION, endpoint_url="http://127.0.0.1:9"))
    queries = queries_for(
        gate(preset="lambda-error-rate"), EvaluationContext(NOW, 10, 0, {"flag": "x"})
    )
    results = await provider.query(queries, WINDOW)
    assert all(
        isinstance(r, ProviderError) and "needs a lambda-alias target" in str(r) for r in results
    )


# ---------------------------------------------------------------- health


async def test_health_is_one_cheap_read_through_the_shared_clients(
    moto: Moto, aws: AwsClients
) -> None:
    provider = CloudWatchProvider(aws)
    await provider.health()
    assert moto.proxy.count("POST", r".*", ok=True) == 1, "one GetMetricData, nothing more"
    moto.proxy.fail("POST", r".*", 403, "AccessDenied", "not authorized", times=5)
    with pytest.raises(ProviderError, match="grant cloudwatch:GetMetricData"):
        await provider.health()


async def test_an_html_error_page_from_the_backend_is_one_line_in_the_verdict(
    moto: Moto, aws: AwsClients
) -> None:
    # moto cannot compute a p95: GetMetricData answers 500 with a multi-line HTML page. The
    # gate's explanation (and so every event and the rollback reason) carries one line of
    # it; the whole page goes to the debug log.
    moto.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Duration",
                "Dimensions": dimensions(v),
                "Value": 300.0,
                "Timestamp": NOW - timedelta(seconds=5),  # inside the gate's window
            }
            for v in ("1", "2")
        ],
    )
    with debug_logs() as logged:
        [result] = await judge(
            [gate(name="p95", preset="lambda-p95-duration", max=800)], CloudWatchProvider(aws)
        )
    assert result.verdict == Verdict.ERROR
    assert "cloudwatch:GetMetricData failed, AWS answered 500 Internal Server Error" in (
        result.explanation
    )
    assert "\n" not in result.explanation
    assert "<" not in result.explanation
    bodies = [e["body"] for e in logged if e["event"] == "backend.error_body"]
    assert bodies
    assert all("<!doctype html>" in b for b in bodies)
