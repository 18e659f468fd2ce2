"""The prometheus-alert hook against the real ``prometheus`` binary and its alerting rules.

Prometheus evaluates the rules every second; the hook reads ``/api/v1/alerts`` as the
daemon would, with the ``CANARY_PROMETHEUS_*`` settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import T0
from promserver import PrometheusServer
from services import wait_for

from analysis.base import Verdict
from analysis.hooks.kind import HookCall
from analysis.hooks.prometheus_alert import PrometheusAlertHook, build
from canary.actions import run_hook
from config.settings import Settings

RULES = [
    {
        "alert": "CheckoutErrorBudgetBurn",
        "expr": "vector(1)",
        "labels": {"service": "checkout", "severity": "page"},
        "annotations": {"summary": "checkout burns its error budget 14x too fast"},
    },
    {"alert": "BillingDown", "expr": "vector(1)", "labels": {"service": "billing"}},
    {
        "alert": "SearchSlow",
        "expr": "vector(1)",
        "for": "1h",  # pending for an hour before it fires
        "labels": {"service": "search"},
    },
]

CALL = HookCall(
    point="step",
    hook="alerts",
    rollout_id="0123456789abcdef012345",
    rollout="checkout",
    targets=[],
    step=1,
    steps=2,
    weight=10.0,
    at=T0.isoformat(),
    timestamp=int(T0.timestamp()),
)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(Path(tmp_path_factory.mktemp("prom")), [], rules=RULES).start()
    firing = lambda: [  # noqa: E731
        a
        for a in server.get("/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        if a["state"] == "firing"
    ]
    wait_for(lambda: len(firing()) == 2 or None, "the two alerts to fire", timeout=60)
    yield server
    server.stop()


def hook(**labels: str) -> PrometheusAlertHook:
    return PrometheusAlertHook.model_validate(
        {"name": "alerts", "kind": "prometheus-alert", "point": "step", "labels": labels}
    )


async def test_a_firing_alert_with_the_hooks_labels_fails_with_its_summary(
    prometheus: PrometheusServer,
) -> None:
    caller = build(Settings(prometheus_url=prometheus.url), None)
    assert caller is not None
    result = await run_hook(hook(service="checkout"), caller, CALL, 0.0)
    assert result.verdict == Verdict.FAIL
    assert "CheckoutErrorBudgetBurn firing: checkout burns its error budget" in result.explanation
    assert result.detail["firing"][0]["severity"] == "page"


async def test_alerts_of_other_services_and_pending_ones_pass(
    prometheus: PrometheusServer,
) -> None:
    caller = build(Settings(prometheus_url=prometheus.url), None)
    assert caller is not None
    result = await run_hook(hook(service="search"), caller, CALL, 0.0)
    assert result.verdict == Verdict.PASS
    assert "(1 pending)" in result.explanation
    result = await run_hook(hook(service="checkout", severity="ticket"), caller, CALL, 0.0)
    assert result.verdict == Verdict.PASS


async def test_prometheus_down_is_an_error(prometheus: PrometheusServer) -> None:
    from services import free_port

    caller = build(Settings(prometheus_url=f"http://127.0.0.1:{free_port()}"), None)
    assert caller is not None
    result = await run_hook(hook(service="checkout"), caller, CALL, 0.0)
    assert result.verdict == Verdict.ERROR
    assert "unreachable" in result.explanation


def test_without_a_prometheus_url_the_kind_is_not_built() -> None:
    assert build(Settings(), None) is None
