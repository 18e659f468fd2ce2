"""Webhook hooks against a real local HTTP test service (tests/hookservice.py).

The service checks the signature of every request with its own code (the README's), and
answers as each test scripts it: pass, fail, slow, 5xx, flapping. The engine tests run
whole rollouts on virtual time with the in-memory targets and scripted metrics; the hook
calls go over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import T0, lambda_target
from hookservice import HookService

from analysis.base import Measurement, MetricQuery, Verdict
from analysis.hooks.kind import HookCall, HookTarget
from analysis.hooks.webhook import WebhookCaller, WebhookHook, build
from analysis.scripted import ScriptedProvider
from canary.actions import run_hook
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.events import EventKind
from canary.hooks import hooks_checked
from canary.model import Event, Phase, Rollout
from canary.simulate import drive
from canary.store.memory import MemoryStore
from config.errors import SpecError
from config.settings import Settings
from config.spec import RolloutDocument, parse_document
from strategies.memory import MemoryFleet

SECRET = "hook-secret-0123456789abcdef"


@pytest.fixture
async def service() -> AsyncIterator[HookService]:
    running = await HookService(SECRET.encode(), slow_seconds=2.5).start()
    yield running
    await running.stop()


@pytest.fixture
async def caller() -> AsyncIterator[WebhookCaller]:
    settings = Settings(webhook_secret=SECRET, webhook_headers={"Authorization": "Bearer t0ken"})
    built = build(settings, None)
    assert built is not None
    yield built
    await built.close()


def hook(url: str, **fields: Any) -> WebhookHook:
    return WebhookHook.model_validate(
        {"name": "smoke", "kind": "webhook", "point": "step", "url": url} | fields
    )


CALL = HookCall(
    point="step",
    hook="smoke",
    rollout_id="0123456789abcdef012345",
    rollout="checkout",
    targets=[HookTarget("lambda-alias/us-east-1/checkout/live", "lambda-alias", "2", "1")],
    step=2,
    steps=4,
    weight=25.0,
    at=T0.isoformat(),
    timestamp=int(T0.timestamp()),
)


# --- one hook, one answer ---------------------------------------------------------------


async def test_a_2xx_passes_and_the_service_sees_a_valid_signature_and_the_settings_headers(
    service: HookService, caller: WebhookCaller
) -> None:
    result = await run_hook(hook(service.answers("smoke", "pass")), caller, CALL, 0.0)
    assert result.verdict == Verdict.PASS
    assert result.detail["status"] == 200
    assert '"tests": 12' in result.detail["body"]
    [got] = service.calls("smoke")
    assert got.signed, "the service could not verify the signature"
    assert got.headers["X-Canary-Timestamp"] == str(int(T0.timestamp()))
    assert got.headers["Authorization"] == "Bearer t0ken"  # from settings, not the spec
    assert got.payload == {
        "point": "step",
        "hook": "smoke",
        "rollout": {"id": CALL.rollout_id, "name": "checkout", "build": None},
        "targets": [
            {
                "key": "lambda-alias/us-east-1/checkout/live",
                "kind": "lambda-alias",
                "canary_version": "2",
                "stable_version": "1",
            }
        ],
        "step": 2,
        "steps": 4,
        "weight": 25.0,
        "at": T0.isoformat(),
        "reason": None,
    }


async def test_a_request_signed_with_another_secret_does_not_verify(
    service: HookService,
) -> None:
    other = build(Settings(webhook_secret="not-the-receivers-secret"), None)
    assert other is not None
    await run_hook(hook(service.answers("smoke", "pass")), other, CALL, 0.0)
    await other.close()
    assert [r.signed for r in service.calls("smoke")] == [False]


async def test_a_4xx_fails_with_its_status_and_body_as_the_values(
    service: HookService, caller: WebhookCaller
) -> None:
    result = await run_hook(hook(service.answers("smoke", "fail")), caller, CALL, 0.0)
    assert result.verdict == Verdict.FAIL
    assert result.detail["status"] == 422
    assert result.detail["body"] == "checkout: 3 of 12 tests failed (payment step)"
    assert "payment step" in result.explanation


async def test_a_2xx_saying_status_fail_fails_with_its_message(
    service: HookService, caller: WebhookCaller
) -> None:
    result = await run_hook(hook(service.answers("smoke", "fail-json")), caller, CALL, 0.0)
    assert result.verdict == Verdict.FAIL
    assert "cart total is wrong" in result.explanation


async def test_a_5xx_is_an_error_after_its_retries_not_a_failure(
    service: HookService, caller: WebhookCaller
) -> None:
    result = await run_hook(hook(service.answers("smoke", "5xx"), retries=2), caller, CALL, 0.0)
    assert result.verdict == Verdict.ERROR
    assert len(service.calls("smoke")) == 3
    assert result.detail["attempts"] == 3
    assert result.detail["status"] == 503


async def test_a_timeout_is_an_error_not_a_failure(
    service: HookService, caller: WebhookCaller
) -> None:
    result = await run_hook(hook(service.answers("smoke", "slow"), timeout="1s"), caller, CALL)
    assert result.verdict == Verdict.ERROR
    assert "timeout" in result.explanation
    assert result.detail["timeout"] == 1.0


async def test_a_flapping_service_passes_on_a_retry(
    service: HookService, caller: WebhookCaller
) -> None:
    url = service.answers("smoke", "5xx", "pass")
    result = await run_hook(hook(url, retries=1), caller, CALL, 0.0)
    assert result.verdict == Verdict.PASS
    assert result.detail["attempts"] == 2


async def test_a_redirect_is_not_followed_and_is_an_error_naming_where_it_points(
    service: HookService, caller: WebhookCaller
) -> None:
    result = await run_hook(hook(service.answers("smoke", "moved"), retries=2), caller, CALL, 0.0)
    assert result.verdict == Verdict.ERROR
    assert "https://tests.example.com/new-smoke" in result.explanation
    assert len(service.calls("smoke")) == 1  # asking again cannot help


async def test_an_unreachable_service_is_an_error(caller: WebhookCaller) -> None:
    from services import free_port

    result = await run_hook(hook(f"http://127.0.0.1:{free_port()}/smoke"), caller, CALL, 0.0)
    assert result.verdict == Verdict.ERROR
    assert "unreachable" in result.explanation


async def test_the_body_kept_in_the_verdict_is_bounded(
    service: HookService, caller: WebhookCaller
) -> None:
    result = await run_hook(hook(service.answers("smoke", "big")), caller, CALL, 0.0)
    assert result.verdict == Verdict.PASS
    assert len(result.detail["body"]) <= 512
    assert result.detail["body"].endswith("…")


# --- settings and submit ------------------------------------------------------------------


def test_a_short_secret_is_refused_naming_the_variable() -> None:
    from config.settings import load_settings

    with pytest.MonkeyPatch.context() as env:
        env.setenv("CANARY_WEBHOOK_SECRET", "short")
        with pytest.raises(SpecError, match="CANARY_WEBHOOK_SECRET: is shorter than 16"):
            load_settings()


def test_the_secret_and_headers_never_show_in_a_repr() -> None:
    settings = Settings(webhook_secret=SECRET, webhook_headers={"X-Api-Key": "k3y-value"})
    caller = build(settings, None)
    assert SECRET not in repr(settings)
    assert "k3y-value" not in repr(settings)
    assert SECRET not in repr(caller)
    assert "k3y-value" not in repr(caller)


def test_a_webhook_hook_on_a_daemon_without_a_secret_is_refused_at_submit() -> None:
    doc = rollout_document("http://127.0.0.1:1/smoke", [])
    check = hooks_checked(lambda d: d, Settings())
    with pytest.raises(SpecError) as caught:
        check(doc)
    [problem] = caught.value.problems
    assert problem.path == "spec.hooks[0].kind"
    assert "CANARY_WEBHOOK_SECRET" in problem.message
    assert hooks_checked(lambda d: d, Settings(webhook_secret=SECRET))(doc) is doc


# --- whole rollouts -----------------------------------------------------------------------


def rollout_document(
    smoke_url: str, extra: list[dict[str, Any]], **analysis: Any
) -> RolloutDocument:
    return parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": "checkout"},
            "spec": {
                "targets": [lambda_target()],
                "steps": [
                    {"weight": 10, "bake": "2m"},
                    {"weight": 25, "bake": "2m"},
                    {"weight": 50, "bake": "2m"},
                    {"weight": 100},
                ],
                "analysis": {
                    "interval": "30s",
                    "gates": [
                        {"name": "errors", "provider": "cloudwatch", "query": "e", "max": 0.01}
                    ],
                }
                | analysis,
                "hooks": [
                    {
                        "name": "smoke",
                        "kind": "webhook",
                        "point": "step",
                        "weight": 25,
                        "url": smoke_url,
                        "timeout": "1s",
                    },
                    *extra,
                ],
            },
        }
    )


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.001, 1000)


async def run(
    doc: RolloutDocument, caller: WebhookCaller
) -> tuple[Rollout, list[Event], MemoryFleet]:
    clock = VirtualClock(T0)
    store = MemoryStore()
    fleet = MemoryFleet(stable="1")
    engine = Engine(
        store,
        clock,
        fleet.factory,
        {"cloudwatch": ScriptedProvider(healthy)},
        options=EngineOptions(hook_retry_wait=0.0),
        hooks={"webhook": caller},
    )
    await engine.start()
    r = await engine.submit(doc, actor="ci")
    await drive(engine, clock)
    await engine.stop()
    return await store.get(r.id), await store.events(r.id), fleet


def answered(events: list[Event], hook: str) -> list[Event]:
    return [e for e in events if e.kind == EventKind.HOOK_ANSWERED and e.data["hook"] == hook]


async def test_a_rollout_that_fails_its_smoke_test_at_25_is_rolled_back_with_the_answer(
    service: HookService, caller: WebhookCaller
) -> None:
    doc = rollout_document(service.answers("smoke", "fail"), [])
    r, events, fleet = await run(doc, caller)
    assert r.phase == Phase.ROLLED_BACK
    assert fleet.backend(doc.spec.targets[0].key()).extra_weight == 0
    smoke = answered(events, "smoke")
    assert [e.weight for e in smoke] == [25, 25]  # never asked at 10%, never reached 50%
    assert smoke[0].data["result"]["verdict"] == "FAIL"
    assert smoke[0].data["result"]["detail"]["status"] == 422
    assert "payment step" in smoke[0].data["result"]["detail"]["body"]
    [started] = [e for e in events if e.kind == EventKind.ROLLBACK_STARTED]
    assert started.data["cause"] == "gate_failed"
    assert started.data["point"] == "step"
    assert "smoke" in started.data["reason"]
    assert "payment step" in started.data["reason"]
    assert all(c.signed for c in service.calls("smoke"))
    assert max(e.weight for e in events) == 25


async def test_a_smoke_test_that_fails_once_then_passes_lets_the_rollout_go_on(
    service: HookService, caller: WebhookCaller
) -> None:
    doc = rollout_document(service.answers("smoke", "fail", "pass"), [])
    r, events, _ = await run(doc, caller)
    assert r.phase == Phase.SUCCEEDED
    verdicts = [e.data["result"]["verdict"] for e in answered(events, "smoke")]
    assert verdicts == ["FAIL", "PASS"]  # asked again until it passed; one failure counted
    assert r.counters.failures == 1


async def test_a_timeout_counts_as_an_error_against_the_error_limit_not_as_a_failure(
    service: HookService, caller: WebhookCaller
) -> None:
    doc = rollout_document(service.answers("smoke", "slow"), [], consecutive_error_limit=1)
    r, events, _ = await run(doc, caller)
    assert r.phase == Phase.ROLLED_BACK
    assert r.cause is not None
    assert r.cause.value == "provider_errors"
    assert r.counters.failures == 0
    assert {e.data["result"]["verdict"] for e in answered(events, "smoke")} == {"ERROR"}


async def test_a_failing_on_rollback_hook_is_recorded_and_does_not_hold_the_rollback(
    service: HookService, caller: WebhookCaller
) -> None:
    tell = {
        "name": "tell-oncall",
        "kind": "webhook",
        "point": "on-rollback",
        "url": service.answers("oncall", "5xx"),
        "retries": 1,
    }
    doc = rollout_document(service.answers("smoke", "fail"), [tell], failure_limit=0)
    r, events, fleet = await run(doc, caller)
    assert r.phase == Phase.ROLLED_BACK
    assert fleet.backend(doc.spec.targets[0].key()).extra_weight == 0
    [rolled_back] = [e for e in events if e.kind == EventKind.ROLLOUT_ROLLED_BACK]
    [told] = answered(events, "tell-oncall")
    assert rolled_back.seq < told.seq  # traffic was restored first, then the hook was told
    assert told.data["result"]["verdict"] == "ERROR"
    assert told.data["point"] == "on-rollback"
    payload = service.calls("oncall")[0].payload
    assert payload["point"] == "on-rollback"
    assert "smoke" in payload["reason"]
    assert len(service.calls("oncall")) == 2  # its retry, then recorded: nothing else


async def test_a_pre_promotion_hook_gates_the_promotion(
    service: HookService, caller: WebhookCaller
) -> None:
    final = {
        "name": "final",
        "kind": "webhook",
        "point": "pre-promotion",
        "url": service.answers("final", "fail"),
    }
    doc = rollout_document(service.answers("smoke", "pass"), [final], failure_limit=0)
    r, events, fleet = await run(doc, caller)
    assert r.phase == Phase.ROLLED_BACK
    assert not [e for e in events if e.kind == EventKind.ROLLOUT_SUCCEEDED]
    assert fleet.backend(doc.spec.targets[0].key()).extra_weight == 0
    assert [e.data["result"]["verdict"] for e in answered(events, "final")] == ["FAIL"]


async def test_the_readmes_verification_snippet_accepts_canarys_signature_only(
    service: HookService, caller: WebhookCaller
) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Webhook signature") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)  # the snippet as a receiver would paste it
    verify = namespace["verify"]
    await run_hook(hook(service.answers("smoke", "pass")), caller, CALL, 0.0)
    [got] = service.calls("smoke")
    old_enough = 10**10  # CALL's timestamp is the virtual clock's, not now
    assert verify(SECRET.encode(), got.headers, got.body, tolerance=old_enough)
    assert not verify(b"another-secret-entirely", got.headers, got.body, tolerance=old_enough)
    assert not verify(SECRET.encode(), got.headers, got.body + b" ", tolerance=old_enough)
    assert not verify(SECRET.encode(), got.headers, got.body)  # a replay a year late
