"""The ``prometheus-alert`` hook: firing Prometheus alerts as a gate.

Alerting rules encode what a team already calls broken; a rollout should stop when one of
them fires for the service it changes. Prometheus's ``/api/v1/alerts`` lists the alerts
its rules hold; a firing alert whose labels include every label the hook names is a FAIL
(its summary or description, when it has one, is the explanation); pending ones are
reported and pass. It reaches Prometheus with the ``CANARY_PROMETHEUS_*`` settings.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from analysis.base import Verdict
from analysis.hooks.kind import HookAnswer, HookCall, HookError, HookKind, HookSpec, excerpt
from analysis.kind import no_clients
from analysis.prometheus import PrometheusOptions, PrometheusSettings, options
from strategies.errortext import reduce_error


class PrometheusAlertHook(HookSpec):
    kind: Literal["prometheus-alert"]
    labels: dict[str, str] = Field(
        min_length=1,
        max_length=20,
        description="an alert matches when its labels include all of these",
    )


def _said(alert: dict[str, Any]) -> str:
    notes = alert.get("annotations") or {}
    text = notes.get("summary") or notes.get("description") or ""
    name = (alert.get("labels") or {}).get("alertname", "alert")
    return f"{name} firing" + (f": {excerpt(str(text), 200)}" if text else "")


def judge_alerts(alerts: list[dict[str, Any]], labels: dict[str, str]) -> HookAnswer:
    matching = [
        a for a in alerts if all((a.get("labels") or {}).get(k) == v for k, v in labels.items())
    ]
    firing = [a for a in matching if a.get("state") == "firing"]
    pending = [a for a in matching if a.get("state") == "pending"]
    detail: dict[str, Any] = {
        "firing": [a.get("labels", {}) for a in firing][:20],
        "pending": len(pending),
    }
    wanted = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    if firing:
        return HookAnswer(Verdict.FAIL, "; ".join(_said(a) for a in firing[:5]), detail)
    extra = f" ({len(pending)} pending)" if pending else ""
    return HookAnswer(Verdict.PASS, f"no alert firing with {wanted}{extra}", detail)


class AlertCaller:
    def __init__(self, o: PrometheusOptions) -> None:
        self.options = o

    def _get(self) -> Any:
        import requests

        o = self.options
        headers = {"Authorization": f"Bearer {o.bearer_token}"} if o.bearer_token else {}
        auth = (o.username, o.password or "") if o.username else None
        verify: Any = o.ca_file if (o.verify_tls and o.ca_file) else o.verify_tls
        url = o.url.rstrip("/") + "/api/v1/alerts"
        try:
            with requests.Session() as session:
                response = session.get(
                    url, headers=headers, auth=auth, verify=verify, timeout=o.timeout
                )
        except requests.RequestException as exc:
            raise HookError(f"Prometheus unreachable: {reduce_error(None, str(exc))}") from None
        if response.status_code >= 500:
            raise HookError(f"Prometheus answered {response.status_code}")
        if response.status_code != 200:
            said = reduce_error(response.status_code, response.text)
            raise HookError(f"Prometheus refused /api/v1/alerts: {said}", retryable=False)
        try:
            return response.json()["data"]["alerts"]
        except (ValueError, KeyError, TypeError):
            raise HookError("Prometheus's /api/v1/alerts answer is not its JSON") from None

    async def call(self, hook: PrometheusAlertHook, call: HookCall) -> HookAnswer:
        alerts = await asyncio.to_thread(self._get)
        return judge_alerts(list(alerts), hook.labels)


def build(settings: PrometheusSettings, clients: None) -> AlertCaller | None:
    found = options(settings)
    return AlertCaller(found) if found is not None else None


HOOK = HookKind(
    name="prometheus-alert",
    summary="Prometheus alerts (`/api/v1/alerts`): one firing with the hook's labels is FAIL",
    spec=PrometheusAlertHook,
    settings=None,
    clients=no_clients,
    build=build,
    unconfigured="set CANARY_PROMETHEUS_URL to turn on prometheus-alert hooks",
    gate_only=True,
    uses="`CANARY_PROMETHEUS_*` (the prometheus provider's)",
)
