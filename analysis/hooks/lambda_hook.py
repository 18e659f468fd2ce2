"""The ``lambda`` hook: invoke a test function synchronously, as SAM's traffic hooks do.

The function gets the hook's payload as its event (the same JSON a webhook gets) and runs
its tests against the canary. A function error (an exception, a timeout inside Lambda) or
an answer ``{"status": "fail", "message": "..."}`` is a FAIL; any other answer is a PASS.
An invocation that cannot be made (throttled, Lambda unreachable) is ERROR; one that is
refused (access denied, no such function) is ERROR too, and not tried again.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from analysis.base import Verdict
from analysis.hooks.kind import (
    AWS_ACCESS,
    HookAnswer,
    HookCall,
    HookError,
    HookKind,
    HookSpec,
    excerpt,
    fail_message,
)
from config.targets import Region
from strategies.aws import AwsClients, from_settings
from strategies.base import StrategyError, TemporaryError


class LambdaHook(HookSpec):
    kind: Literal["lambda"]
    function: str = Field(
        min_length=1, max_length=170, description="the test function's name or ARN"
    )
    qualifier: str | None = Field(
        default=None, min_length=1, max_length=128, description="a version or alias to invoke"
    )
    region: Region | None = Field(default=None, description="default: the daemon's region")


class LambdaCaller:
    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws

    async def call(self, hook: LambdaHook, call: HookCall) -> HookAnswer:
        params: dict[str, Any] = {
            "FunctionName": hook.function,
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(call.payload()).encode(),
        }
        if hook.qualifier is not None:
            params["Qualifier"] = hook.qualifier
        try:
            result = await self.aws.call("lambda", "invoke", region=hook.region, **params)
            raw = await self.aws.run(result["Payload"].read) if "Payload" in result else b""
        except StrategyError as exc:
            raise HookError(str(exc), retryable=isinstance(exc, TemporaryError)) from None
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        status = int(result.get("StatusCode") or 0)
        function_error = result.get("FunctionError")
        detail: dict[str, Any] = {"status": status, "body": excerpt(text)}
        if function_error:
            detail["function_error"] = function_error
            try:
                said = json.loads(text).get("errorMessage")
            except (ValueError, AttributeError):
                said = None
            why = f": {excerpt(str(said), 200)}" if said else ""
            return HookAnswer(
                Verdict.FAIL, f"{hook.function} raised ({function_error}){why}", detail
            )
        failed, message = fail_message(text)
        if failed:
            said = f": {message}" if message else ""
            return HookAnswer(Verdict.FAIL, f"{hook.function} answered status fail{said}", detail)
        return HookAnswer(Verdict.PASS, f"{hook.function} answered {status}", detail)


def build(settings: object, aws: AwsClients) -> LambdaCaller:
    return LambdaCaller(aws)


HOOK = HookKind(
    name="lambda",
    summary="invokes a test function synchronously with the payload; a function error or "
    '`{"status": "fail"}` is FAIL',
    spec=LambdaHook,
    settings=None,
    clients=from_settings,
    build=build,
    uses=AWS_ACCESS,
)
