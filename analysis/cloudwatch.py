"""CloudWatch gates: one GetMetricData call answers every gate of an evaluation.

GetMetricData takes up to 500 queries over one time range, so the queries of one
evaluation (per region and window: ``analysis.gates`` groups by window) go out as one call,
split only past that limit. Identical metric stats asked by several gates are asked once.

Presets read what Lambda publishes for alias invocations: the dimensions ``FunctionName``,
``Resource`` (``function:alias``) and ``ExecutedVersion``, so each version behind the alias
is measured on its own. ``lambda-error-rate`` asks the Sum of ``Errors`` and of
``Invocations`` and divides client-side; the invocation count is the sample size.
``lambda-p95-duration`` asks ``Duration`` at ``p95`` (milliseconds). Both are asked for the
canary and for the stable version. Your own queries are metric math over the gate's
``metrics`` (ids are prefixed so that gates cannot collide), or any standalone expression
(``SEARCH(...)``, a Metrics Insights ``SELECT``).

CloudWatch keeps Lambda metrics per minute, so the window is widened to whole minutes:
from the start of the minute it begins in to the end of the current minute, at least one
minute. The whole window is one period, which gives the gate's value. A gate whose checks
compare values over the window (``statistical``, and ``relative`` on a value that is not a
share of requests: ``MetricQuery.series_step``) also gets its stats again, in the same
call, at the metric's own period (a minute for Lambda, the ``statistical.step`` for your
own metrics): one value per period, oldest first. For ``lambda-error-rate`` that is each
minute's Errors / Invocations (minutes without invocations left out); for
``lambda-p95-duration`` each minute's own p95 of ``Duration``, from the percentiles
CloudWatch keeps per version (``ExecutedVersion``).

This module is the whole ``cloudwatch`` provider: its presets, its gate field
``metrics`` (``CloudWatchMetric``), its health check and its declaration (``PROVIDER``,
registered in ``analysis/registry.py``). It names the AWS client factory of the AWS kinds
(``strategies.aws.from_settings``), so it shares the daemon's ``AwsClients``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

from pydantic import Field

from analysis.base import Measurement, MetricQuery, ProviderError, Window
from analysis.kind import Preset, ProviderKind
from config import metricmath
from config.targets import StrictModel
from config.templates import TemplateError, render
from strategies.aws import AwsClients, from_settings
from strategies.errortext import one_line, reduce_error

MAX_QUERIES_PER_CALL = 500  # GetMetricData's limit on MetricDataQueries
LAMBDA = "AWS/Lambda"
MINUTE = 60


class CloudWatchMetric(StrictModel):
    """One CloudWatch metric statistic, named by its id in a cloudwatch gate's ``metrics``."""

    namespace: str = Field(min_length=1, description="e.g. AWS/Lambda")
    metric: str = Field(min_length=1, description="the metric name, e.g. Errors")
    stat: str = Field(min_length=1, description="Sum, Average, Maximum, SampleCount, p95, ...")
    dimensions: dict[str, str] = Field(
        default_factory=dict, description="values may use {{ canary_version }} and the like"
    )


class AwsAccess(Protocol):
    """What the provider needs from the daemon's AWS clients (``strategies.aws.AwsClients``)."""

    async def call(
        self,
        service: str,
        method: str,
        *,
        region: str | None = None,
        role_arn: str | None = None,
        **params: Any,
    ) -> dict[str, Any]: ...


def aligned(window: Window) -> tuple[datetime, datetime]:
    """``window`` widened to whole minutes, at least one."""
    start = window.start.replace(second=0, microsecond=0)
    end = window.end.replace(second=0, microsecond=0)
    if end < window.end:
        end += timedelta(seconds=MINUTE)
    if (end - start).total_seconds() < MINUTE:
        start = end - timedelta(seconds=MINUTE)
    return start, end


Points = list[tuple[datetime, float]]
Answers = Mapping[str, Points]
Reader = Callable[[Answers], Measurement]

# Periods GetMetricData accepts below a minute (high-resolution metrics); above, whole minutes.
HIGH_RESOLUTION = (1, 5, 10, 30)


def valid_period(seconds: float) -> bool:
    """A period GetMetricData accepts: 1, 5, 10 or 30 seconds, or a multiple of 60."""
    if not float(seconds).is_integer():
        return False
    return int(seconds) in HIGH_RESOLUTION or (seconds >= MINUTE and seconds % MINUTE == 0)


def series_period(step: float, floor: int = 1) -> int:
    """The period asked for values one ``step`` apart (the spec refuses steps that are not
    a valid period; this rounds up what the provider picks itself), at least ``floor``."""
    seconds = max(step, floor)
    if valid_period(seconds):
        return int(seconds)
    return int(math.ceil(seconds / MINUTE) * MINUTE)


class _Call:
    """The MetricDataQueries of one GetMetricData call, identical stats asked once.

    ``period`` is the whole window (one value for it); a gate that needs the values over the
    window adds its stats again at a shorter period (``series_period``)."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.entries: list[dict[str, Any]] = []
        self._stats: dict[str, dict[str, Any]] = {}

    def stat(
        self,
        namespace: str,
        metric: str,
        stat: str,
        dimensions: Mapping[str, str],
        returned: bool,
        period: int | None = None,
    ) -> str:
        period = period or self.period
        key = json.dumps([namespace, metric, stat, sorted(dimensions.items()), period])
        entry = self._stats.get(key)
        if entry is None:
            entry = {
                "Id": f"m{len(self._stats)}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": metric,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    },
                    "Period": period,
                    "Stat": stat,
                },
                "ReturnData": returned,
            }
            self._stats[key] = entry
            self.entries.append(entry)
        entry["ReturnData"] = entry["ReturnData"] or returned
        return str(entry["Id"])

    def expression(self, expression: str, period: int | None = None) -> str:
        entry: dict[str, Any] = {"Id": f"e{len(self.entries)}", "Expression": expression}
        if expression.lstrip().upper().startswith("SELECT"):
            entry["Period"] = period or self.period  # Metrics Insights queries need one
        entry["ReturnData"] = True
        self.entries.append(entry)
        return str(entry["Id"])


def _total(points: Points | None) -> float | None:
    return math.fsum(v for _, v in points) if points else None


def _latest(points: Points | None) -> float | None:
    return max(points)[1] if points else None


def _in_order(points: Points | None) -> tuple[float, ...]:
    """The values over the window, oldest first (periods without data are absent)."""
    return tuple(v for _, v in sorted(points or []))


def _lambda_dimensions(query: MetricQuery) -> tuple[dict[str, str], str]:
    v = query.variables
    if not v.get("function") or not v.get("alias"):
        raise ProviderError(f"the {query.preset} preset needs a lambda-alias target")
    version = v.get("canary_version" if query.side == "canary" else "stable_version", "")
    dimensions = {
        "FunctionName": v["function"],
        "Resource": f"{v['function']}:{v['alias']}",
        "ExecutedVersion": version,
    }
    return dimensions, version


def _preset(query: MetricQuery, call: _Call) -> Reader:
    dimensions, version = _lambda_dimensions(query)
    if not version:
        return lambda _: Measurement(None, detail={"why": "no stable version recorded yet"})
    # Lambda keeps its metrics per minute: values over the window are at least a minute apart.
    step = series_period(query.series_step, MINUTE) if query.series_step else None
    invocations = call.stat(LAMBDA, "Invocations", "Sum", dimensions, True)
    if query.preset == "lambda-error-rate":
        errors = call.stat(LAMBDA, "Errors", "Sum", dimensions, True)
        per = (
            (
                call.stat(LAMBDA, "Invocations", "Sum", dimensions, True, step),
                call.stat(LAMBDA, "Errors", "Sum", dimensions, True, step),
            )
            if step
            else None
        )

        def error_rate(answers: Answers) -> Measurement:
            count, failed = _total(answers.get(invocations)), _total(answers.get(errors))
            seen = {"version": version, "invocations": count, "errors": failed}
            values: tuple[float, ...] = ()
            if per is not None:  # each period's share, where the period had invocations
                failed_at = dict(answers.get(per[1], []))
                values = tuple(
                    failed_at[t] / n
                    for t, n in sorted(answers.get(per[0], []))
                    if n > 0 and t in failed_at
                )
                seen["period"] = step
            if not count or failed is None:
                return Measurement(None, samples=count or 0.0, detail=seen, values=values)
            return Measurement(failed / count, samples=count, detail=seen, values=values)

        return error_rate
    if query.preset == "lambda-p95-duration":
        p95 = call.stat(LAMBDA, "Duration", "p95", dimensions, True)
        each = call.stat(LAMBDA, "Duration", "p95", dimensions, True, step) if step else None

        def duration(answers: Answers) -> Measurement:
            count = _total(answers.get(invocations))
            value = _latest(answers.get(p95))
            seen: dict[str, Any] = {"version": version, "invocations": count}
            values: tuple[float, ...] = ()
            if each is not None:  # each period's own p95
                values = _in_order(answers.get(each))
                seen["period"] = step
            return Measurement(value, samples=count or 0.0, detail=seen, values=values)

        return duration
    raise ProviderError(f"unknown cloudwatch preset {query.preset!r}")


def _render(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with its ``{{ name }}`` filled in; a name without a value makes the gate ERROR."""
    try:
        return render(text, variables)
    except TemplateError as exc:
        raise ProviderError(str(exc)) from None


def _asked(query: MetricQuery, call: _Call, period: int) -> tuple[str, str | None]:
    """The ids of the query's value and sample count, its metrics asked at ``period``."""
    assert query.expression is not None
    ids: dict[str, str] = {}
    for name, m in query.metrics.items():
        ids[name] = call.stat(
            _render(str(m["namespace"]), query.variables),
            _render(str(m["metric"]), query.variables),
            _render(str(m["stat"]), query.variables),
            {k: _render(str(v), query.variables) for k, v in dict(m["dimensions"]).items()},
            False,
            period,
        )

    def expression(text: str) -> str:
        renamed = metricmath.rename_ids(_render(text, query.variables), ids)
        return call.expression(renamed, period)

    value = expression(query.expression)
    samples = expression(query.samples_expression) if query.samples_expression else None
    return value, samples


def _own(query: MetricQuery, call: _Call) -> Reader:
    if query.expression is None:
        return lambda _: Measurement(None, detail={"why": "the gate has no stable_query"})
    value, samples = _asked(query, call, call.period)
    each = None
    if query.series_step:
        period = series_period(query.series_step)
        each, _ = _asked(replace(query, samples_expression=None), call, period)

    def read(answers: Answers) -> Measurement:
        count = _latest(answers.get(samples)) if samples else None
        values = _in_order(answers.get(each)) if each is not None else ()
        return Measurement(_latest(answers.get(value)), samples=count, values=values)

    return read


def plan(query: MetricQuery, call: _Call) -> Reader:
    """Add what ``query`` needs to ``call``; the reader turns the answers into a Measurement."""
    return _preset(query, call) if query.preset is not None else _own(query, call)


class CloudWatchProvider:
    kind: ClassVar[str] = "cloudwatch"

    def __init__(self, aws: AwsAccess) -> None:
        self.aws = aws

    async def health(self) -> None:
        await health(self.aws, datetime.now(UTC).replace(second=0, microsecond=0))

    async def query(
        self, queries: Sequence[MetricQuery], window: Window
    ) -> Sequence[Measurement | ProviderError]:
        start, end = aligned(window)
        period = int((end - start).total_seconds())
        results: list[Measurement | ProviderError | None] = [None] * len(queries)
        groups: dict[tuple[str | None, str | None], list[int]] = defaultdict(list)
        for index, q in enumerate(queries):
            groups[(q.variables.get("region"), q.variables.get("role_arn"))].append(index)

        async def ask(
            region: str | None, role_arn: str | None, call: _Call, readers: dict[int, Reader]
        ) -> None:
            try:
                answers = await self._get(call, start, end, region, role_arn)
            except ProviderError as exc:
                for index in readers:
                    results[index] = exc
                return
            for index, read in readers.items():
                results[index] = read(answers)

        jobs = []
        for (region, role_arn), indexes in groups.items():
            for call, readers in self._pack(queries, indexes, period, results):
                jobs.append(ask(region, role_arn, call, readers))
        await asyncio.gather(*jobs)
        return [r if r is not None else ProviderError("not asked") for r in results]

    @staticmethod
    def _pack(
        queries: Sequence[MetricQuery],
        indexes: list[int],
        period: int,
        results: list[Measurement | ProviderError | None],
    ) -> list[tuple[_Call, dict[int, Reader]]]:
        """Queries into calls of at most MAX_QUERIES_PER_CALL entries each."""
        calls: list[tuple[_Call, dict[int, Reader]]] = []
        for index in indexes:
            try:
                size = len(_sized(queries[index], period))
            except ProviderError as exc:
                results[index] = exc
                continue
            if not calls or len(calls[-1][0].entries) + size > MAX_QUERIES_PER_CALL:
                calls.append((_Call(period), {}))
            call, readers = calls[-1]
            readers[index] = plan(queries[index], call)
        return [(c, r) for c, r in calls if c.entries or r]

    async def _get(
        self, call: _Call, start: datetime, end: datetime, region: str | None, role_arn: str | None
    ) -> dict[str, Points]:
        answers: dict[str, Points] = defaultdict(list)
        if not call.entries:
            return answers
        params: dict[str, Any] = {
            "MetricDataQueries": call.entries,
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampDescending",
        }
        while True:
            try:
                page = await self.aws.call(
                    "cloudwatch", "get_metric_data", region=region, role_arn=role_arn, **params
                )
            except Exception as exc:  # worded by strategies.aws.translate, in one line
                raise ProviderError(reduce_error(None, str(exc))) from None
            for result in page.get("MetricDataResults", []):
                status = result.get("StatusCode")
                if status in ("InternalError", "Forbidden"):
                    messages = one_line(
                        "; ".join(m.get("Value", "") for m in result.get("Messages", []))
                    )
                    raise ProviderError(
                        f"GetMetricData answered {status} for {result['Id']}: {messages}"
                    )
                answers[result["Id"]].extend(
                    zip(
                        result.get("Timestamps", []),
                        map(float, result.get("Values", [])),
                        strict=True,
                    )
                )
            token = page.get("NextToken")
            if not token:
                return answers
            params["NextToken"] = token


HEALTH_QUERY = {
    "Id": "health",
    "MetricStat": {
        "Metric": {
            "Namespace": LAMBDA,
            "MetricName": "Invocations",
            "Dimensions": [{"Name": "FunctionName", "Value": "canary-health-check"}],
        },
        "Period": MINUTE,
        "Stat": "Sum",
    },
}


async def health(aws: AwsAccess, now: datetime) -> None:
    """One tiny GetMetricData (one metric, one minute): the permission gates already need."""
    try:
        await aws.call(
            "cloudwatch",
            "get_metric_data",
            MetricDataQueries=[HEALTH_QUERY],
            StartTime=now - timedelta(seconds=2 * MINUTE),
            EndTime=now,
        )
    except Exception as exc:
        raise ProviderError(str(exc)) from None


def _sized(query: MetricQuery, period: int) -> list[dict[str, Any]]:
    """The entries ``query`` alone would add (an upper bound once stats are shared)."""
    scratch = _Call(period)
    plan(query, scratch)
    return scratch.entries


def build(settings: object, aws: AwsClients) -> CloudWatchProvider:
    return CloudWatchProvider(aws)


PROVIDER = ProviderKind(
    name="cloudwatch",
    summary="GetMetricData, one call per evaluation; metric math over the gate's metrics",
    presets=(
        Preset(
            "lambda-error-rate",
            "Errors / Invocations of each version behind the alias (a lambda-alias target)",
            rate=True,
            needs=("function", "alias"),
        ),
        Preset(
            "lambda-p95-duration",
            "P95 of Duration of each version",
            unit="ms",
            needs=("function", "alias"),
        ),
    ),
    series=True,
    settings=None,
    clients=from_settings,
    build=build,
    # AWS services publish their metrics about a minute after the fact, sometimes two.
    delay=120.0,
    resolution=60.0,
    routed_by=("region", "role_arn"),
)
