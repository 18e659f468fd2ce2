"""The daemon's app on a real socket for a real browser: the engine, the in-memory store and
targets, scripted metrics, and the API tokens of api_rig, in an event loop of its own
thread (the browser is driven from the test's thread with Playwright's sync API)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from api_rig import TOKENS, ThreadedApp, healthy, spec_data

from analysis.base import Measurement, MetricQuery, ProviderError
from analysis.scripted import ScriptedProvider
from canary.store import MemoryStore

CHROMIUM_DIRS = ("/usr/lib/chromium",)


def by_gate(query: MetricQuery) -> Measurement | ProviderError:
    """Known values by gate name: ``latency`` 120 ms on the canary beside 100 on the stable,
    ``errors-high`` 5% errors, any other gate healthy (0.2%)."""
    if query.gate == "latency":
        return Measurement(120.0 if query.side == "canary" else 100.0, 1000)
    if query.gate == "errors-high":
        return Measurement(0.05, 1000)
    return healthy(query)


class LiveDaemon(ThreadedApp):
    """The app at ``self.url`` until ``stop()``, its gates answered by ``script``."""

    def __init__(self, script: Any = by_gate) -> None:
        self.provider = ScriptedProvider(script)
        super().__init__({"cloudwatch": self.provider}, step_retry=0.2, shutdown_timeout=2)

    def call(
        self, method: str, path: str, as_token: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """The API as another client (the CLI, a colleague) calls it: (status, JSON)."""
        request = urllib.request.Request(
            f"{self.url}/api/v1{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {TOKENS[as_token][0]}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def start(self, function: str, **kwargs: Any) -> dict[str, Any]:
        """A rollout started through the API by the ``ci`` (deploy) token."""
        status, rollout = self.call("POST", "/rollouts", "ci", spec_data(function, **kwargs))
        assert status == 201, rollout
        return dict(rollout)

    def break_record(self, rollout_id: str) -> None:
        """Make the stored record of a rollout unreadable (a bake no build can read), as a
        bad migration or a hand edit would: the store quarantines it."""

        async def edit() -> None:
            rollout = await self.engine.store.get(rollout_id)
            data = json.loads(rollout.model_dump_json())
            data["document"]["spec"]["steps"][0]["bake"] = "Infinitys"
            store = self.engine.store
            assert isinstance(store, MemoryStore)
            store.replace_record(rollout_id, json.dumps(data))

        self._run(edit())
