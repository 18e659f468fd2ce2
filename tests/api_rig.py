"""The API in-process: the real app, engine, machine and store on the real clock, with
in-memory targets and scripted metrics, reached over HTTP by aiohttp's test client."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from helpers import lambda_target

from analysis.base import Measurement, MetricProvider, MetricQuery, ProviderError
from analysis.scripted import ScriptedProvider
from canary.api.app import ApiRunner, build_app
from canary.clock import RealClock
from canary.engine import Engine, EngineOptions
from canary.metrics import Metrics
from canary.model import Phase, Rollout
from canary.store import MemoryStore
from canary.store.base import Store
from config.settings import Settings, TokenSpec
from strategies.memory import MemoryFleet

Script = Callable[[MetricQuery], Measurement | ProviderError]

# name -> (secret, role)
TOKENS: dict[str, tuple[str, str]] = {
    "reader": ("read-secret-1", "read"),
    "ci": ("deploy-secret-2", "deploy"),
    "ana": ("operate-secret-3", "operate"),
}
ROLE_TOKEN = {role: name for name, (_, role) in TOKENS.items()}


def token_specs() -> list[TokenSpec]:
    return [
        TokenSpec(name=name, sha256=hashlib.sha256(secret.encode()).hexdigest(), role=role)  # type: ignore[arg-type]
        for name, (secret, role) in TOKENS.items()
    ]


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


def as_role(role: str) -> dict[str, str]:
    return auth(ROLE_TOKEN[role])


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.002, 1000)


GATES = {
    "interval": "30s",
    "gates": [{"name": "error-rate", "provider": "cloudwatch", "query": "errors", "max": 0.01}],
}


def spec_data(
    function: str = "checkout",
    *,
    steps: list[dict[str, Any]] | None = None,
    analysis: dict[str, Any] | None = None,
    build: str | None = None,
    name: str = "checkout",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if build is not None:
        metadata["build"] = build
    spec: dict[str, Any] = {"targets": [lambda_target(function)], "analysis": analysis or GATES}
    if steps is not None:
        spec["steps"] = steps
    return {"apiVersion": "canary/v1", "kind": "Rollout", "metadata": metadata, "spec": spec}


class ApiRig:
    def __init__(
        self,
        *,
        store: Store | None = None,
        script: Script = healthy,
        settings: Settings | None = None,
        heartbeat: float = 15.0,
    ) -> None:
        self.store = store or MemoryStore()
        self.fleet = MemoryFleet(stable="1")
        self.provider = ScriptedProvider(script)
        self.metrics = Metrics()
        self.engine = Engine(
            self.store,
            RealClock(),
            self.fleet.factory,
            {"cloudwatch": self.provider, "prometheus": self.provider},
            options=EngineOptions(step_retry=0.2),
            observer=self.metrics,
        )
        self.settings = settings or Settings(tokens=token_specs(), allow_anonymous=False)
        if self.settings.aws_region is None:  # targets without a region get this one
            self.settings = self.settings.model_copy(update={"aws_region": "us-east-1"})
        self.app = build_app(
            self.engine, self.settings, metrics_registry=self.metrics, heartbeat=heartbeat
        )
        self.client: TestClient[Any, Any] = TestClient(TestServer(self.app))

    async def __aenter__(self) -> ApiRig:
        await self.engine.start()
        await self.client.start_server()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.client.close()
        await self.engine.stop()

    async def submit(self, data: dict[str, Any] | None = None) -> Rollout:
        from config.spec import parse_document

        return await self.engine.submit(parse_document(data or spec_data()), actor="setup")

    async def wait_for(
        self, rollout_id: str, check: Callable[[Rollout], bool], within: float = 10
    ) -> Rollout:
        async with asyncio.timeout(within):
            while True:
                r = await self.store.get(rollout_id)
                if check(r):
                    return r
                await asyncio.sleep(0.005)

    async def wait_phase(self, rollout_id: str, *phases: Phase, within: float = 10) -> Rollout:
        return await self.wait_for(rollout_id, lambda r: r.phase in phases, within)


class ThreadedApp:
    """The app on 127.0.0.1:<free port> with its own event loop in a thread, for clients
    that are synchronous (schemathesis' requests, Playwright's sync API): ``self.url``
    until ``stop()``. In-memory store and targets; ``providers`` answer the gates."""

    def __init__(
        self,
        providers: dict[str, MetricProvider] | None = None,
        *,
        step_retry: float = 5.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.providers = providers or {}
        self.step_retry = step_retry
        self.shutdown_timeout = shutdown_timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url: str = self._run(self._start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self) -> str:
        self.engine = Engine(
            MemoryStore(),
            RealClock(),
            MemoryFleet(stable="1").factory,
            self.providers,
            options=EngineOptions(step_retry=self.step_retry),
        )
        settings = Settings(tokens=token_specs(), allow_anonymous=False, aws_region="us-east-1")
        self.runner = ApiRunner(
            build_app(self.engine, settings), shutdown_timeout=self.shutdown_timeout
        )
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        await self.engine.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.engine.stop()

    def stop(self) -> None:
        self._run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
