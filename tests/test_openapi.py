"""The OpenAPI document is the API: it lists exactly the app's routes, and every response
the live app gives, for generated and for hand-picked requests, conforms to it.

schemathesis generates requests from the document (valid and invalid ones) against the
real app served on a local port from a thread, with an in-memory store and in-memory
targets, and applies its checks: no 5xx, status codes, content types, headers and bodies as
documented, invalid requests rejected, valid ones accepted, auth not ignored. The number
of examples per operation is bounded (EXAMPLES) to keep ``make test`` quick.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from api_rig import auth, spec_data, token_specs
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from canary.api import openapi
from canary.api.app import ApiRunner, build_app
from canary.api.context import REQUIRED_ROLE
from canary.clock import RealClock
from canary.engine import Engine
from canary.store import MemoryStore
from config.schema import schema as spec_schema
from config.settings import Settings
from strategies.memory import MemoryFleet

EXAMPLES = 40
DOCUMENT = openapi.document()
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


class LiveApi:
    """The app on 127.0.0.1:<free port>, its own event loop in a thread (requests is sync)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url: str = self._run(self._start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self) -> str:
        self.engine = Engine(MemoryStore(), RealClock(), MemoryFleet(stable="1").factory, {})
        settings = Settings(tokens=token_specs(), allow_anonymous=False)
        self.runner = ApiRunner(build_app(self.engine, settings), shutdown_timeout=5)
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


@pytest.fixture(scope="module")
def live() -> Iterator[LiveApi]:
    api = LiveApi()
    yield api
    api.stop()


def app_routes() -> dict[tuple[str, str], Any]:
    app = build_app(
        Engine(MemoryStore(), RealClock(), MemoryFleet().factory, {}),
        Settings(tokens=token_specs()),
    )
    return {
        (route.method.lower(), route.resource.canonical): route.handler
        for route in app.router.routes()
        if route.resource is not None
    }


def documented() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_document_lists_exactly_the_routes_of_the_app() -> None:
    assert set(app_routes()) == set(documented())


def test_each_documented_role_is_the_role_the_route_enforces() -> None:
    routes = app_routes()
    for key, operation in documented().items():
        enforced = REQUIRED_ROLE.get(routes[key])
        assert operation.get(openapi.ROLE_KEY) == enforced, key
        if enforced is None:
            assert operation["security"] == [], f"{key} is public and must say so"
        else:
            assert {"401", "403"} <= set(operation["responses"]), key


def test_the_start_body_is_the_spec_json_schema() -> None:
    stored = copy.deepcopy(spec_schema())
    defs = stored.pop("$defs")
    stored.pop("$schema")
    schemas = DOCUMENT["components"]["schemas"]
    rewritten = openapi._spec_components()
    assert schemas["RolloutDocument"] == rewritten[0]
    assert rewritten[0]["required"] == stored["required"]
    assert set(defs) <= set(schemas)
    body = DOCUMENT["paths"]["/api/v1/rollouts"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/RolloutDocument"}


def test_the_served_document_is_the_document(live: LiveApi) -> None:
    import requests

    assert requests.get(f"{live.url}/api/v1/openapi.json", timeout=10).json() == DOCUMENT


schema = schemathesis.openapi.from_dict(DOCUMENT)
START = "POST /api/v1/rollouts"


def excluded_for(label: str) -> list[Any]:
    # The spec's JSON Schema describes its shape; canary checks more than a schema can say
    # (names, version numbers, weights increasing to 100). A schema-valid spec may be 422.
    return []


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_response_conforms_and_none_is_a_server_error(
    case: schemathesis.Case, live: LiveApi
) -> None:
    case.call_and_validate(
        base_url=live.url,
        headers=auth("ana"),
        excluded_checks=excluded_for(case.operation.label),
        timeout=10,
    )


def call(live: LiveApi, label: str, **kwargs: Any) -> Any:
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    case = operation.Case(**kwargs)
    return case.call_and_validate(
        base_url=live.url,
        headers=auth("ana"),
        excluded_checks=excluded_for(label),
        timeout=10,
    )


def test_a_whole_lifecycle_conforms(live: LiveApi) -> None:
    """The 2xx and 409 answers that random requests rarely reach, checked the same way."""
    body = spec_data("lifecycle", steps=[{"weight": 10, "bake": "1h"}, {"weight": 100}])
    headers = {"Idempotency-Key": "lifecycle-1"}
    started = call(live, START, body=body, headers=headers, media_type="application/json")
    assert started.status_code == 201
    rid = started.json()["id"]
    again = call(live, START, body=body, headers=headers, media_type="application/json")
    assert again.status_code == 200
    other = copy.deepcopy(body)
    other["spec"]["steps"][0]["bake"] = "2h"
    conflict = call(live, START, body=other, headers=headers, media_type="application/json")
    assert conflict.status_code == 409

    path = {"id": rid}
    rollout = "/api/v1/rollouts/{id}"
    assert call(live, "GET /api/v1/rollouts", query={"limit": 1}).status_code == 200
    assert call(live, f"GET {rollout}", path_parameters=path).status_code == 200
    assert call(live, f"GET {rollout}/events", path_parameters=path).status_code == 200
    assert call(live, f"POST {rollout}/resume", path_parameters=path, body={}).status_code == 409
    pause = call(live, f"POST {rollout}/pause", path_parameters=path, body={"reason": "look"})
    assert pause.json()["phase"] == "paused"
    assert call(live, f"POST {rollout}/resume", path_parameters=path, body={}).status_code == 200
    promote = call(live, f"POST {rollout}/promote", path_parameters=path, body={"full": True})
    assert promote.status_code == 200
    abort = call(live, f"POST {rollout}/abort", path_parameters=path, body={"reason": "done"})
    assert abort.status_code in (200, 409)  # 409 once the promotion has already finished
