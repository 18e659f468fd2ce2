"""The ``cloudwatch-alarm`` hook: the state of CloudWatch alarms as a gate.

The alarms a team already has (p99 of the load balancer, a queue's age, a dependency's
errors) judge the canary too, as CodeDeploy's alarm-based stop does. Any alarm in ALARM is
a FAIL, its reason the explanation; any in INSUFFICIENT_DATA (and none in ALARM) is
INCONCLUSIVE; all OK is a PASS. A named alarm that does not exist, or a prefix that matches
none, is an ERROR: a gate that watches nothing must not pass.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from analysis.base import Verdict
from analysis.hooks.kind import (
    AWS_ACCESS,
    HookAnswer,
    HookCall,
    HookError,
    HookKind,
    HookSpec,
    excerpt,
)
from config.targets import Region
from strategies.aws import AwsClients, from_settings
from strategies.base import StrategyError, TemporaryError


class CloudWatchAlarmHook(HookSpec):
    kind: Literal["cloudwatch-alarm"]
    alarms: list[str] | None = Field(
        default=None, min_length=1, max_length=100, description="alarm names"
    )
    alarm_prefix: str | None = Field(
        default=None, min_length=1, max_length=255, description="every alarm whose name starts so"
    )
    region: Region | None = Field(default=None, description="default: the daemon's region")

    @model_validator(mode="after")
    def _one_way(self) -> CloudWatchAlarmHook:
        if (self.alarms is None) == (self.alarm_prefix is None):
            raise ValueError("give exactly one of alarms (a list of names) or alarm_prefix")
        return self


def judge_alarms(
    alarms: list[dict[str, Any]], wanted: list[str] | None, prefix: str | None
) -> HookAnswer:
    """The verdict on the alarms DescribeAlarms returned."""
    states = {a["AlarmName"]: (a.get("StateValue"), a.get("StateReason", "")) for a in alarms}
    detail: dict[str, Any] = {"alarms": {name: state for name, (state, _) in states.items()}}
    missing = [n for n in wanted or [] if n not in states]
    if missing:
        raise HookError(f"no such alarm: {', '.join(missing)}", detail, retryable=False)
    if not states:
        raise HookError(f"no alarm's name starts with {prefix!r}", detail, retryable=False)
    firing = {n: r for n, (s, r) in states.items() if s == "ALARM"}
    if firing:
        detail["reasons"] = {n: excerpt(r, 300) for n, r in firing.items()}
        said = "; ".join(f"{n} in ALARM: {excerpt(r, 200)}" for n, r in firing.items())
        return HookAnswer(Verdict.FAIL, said, detail)
    waiting = {n: r for n, (s, r) in states.items() if s == "INSUFFICIENT_DATA"}
    if waiting:
        said = "; ".join(
            f"{n} has INSUFFICIENT_DATA: {excerpt(r, 200)}" for n, r in waiting.items()
        )
        return HookAnswer(Verdict.INCONCLUSIVE, said, detail)
    return HookAnswer(
        Verdict.PASS, f"{len(states)} alarm(s) OK: {', '.join(sorted(states))}", detail
    )


class AlarmCaller:
    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws

    async def call(self, hook: CloudWatchAlarmHook, call: HookCall) -> HookAnswer:
        params: dict[str, Any] = {"AlarmTypes": ["MetricAlarm", "CompositeAlarm"]}
        if hook.alarms is not None:
            params["AlarmNames"] = hook.alarms
        else:
            params["AlarmNamePrefix"] = hook.alarm_prefix
        found: list[dict[str, Any]] = []
        try:
            while True:
                page = await self.aws.call(
                    "cloudwatch", "describe_alarms", region=hook.region, **params
                )
                found += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
                token = page.get("NextToken")
                if not token or len(found) > 1000:
                    break
                params["NextToken"] = token
        except StrategyError as exc:
            raise HookError(str(exc), retryable=isinstance(exc, TemporaryError)) from None
        return judge_alarms(found, hook.alarms, hook.alarm_prefix)


def build(settings: object, aws: AwsClients) -> AlarmCaller:
    return AlarmCaller(aws)


HOOK = HookKind(
    name="cloudwatch-alarm",
    summary="CloudWatch alarms by name or prefix: ALARM is FAIL (its reason says why), "
    "INSUFFICIENT_DATA INCONCLUSIVE, all OK PASS",
    spec=CloudWatchAlarmHook,
    settings=None,
    clients=from_settings,
    build=build,
    uses=AWS_ACCESS,
    gate_only=True,
)
