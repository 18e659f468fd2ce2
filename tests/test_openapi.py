"""The OpenAPI document is the API: it lists exactly the app's routes, and every response
the live app gives, for generated and for hand-picked requests, conforms to it.

schemathesis generates requests from the document (valid and invalid ones) against the
real app served on a local port from a thread, with an in-memory store and in-memory
targets, and applies its checks: no 5xx, status codes, content types, headers and bodies as
documented, invalid requests rejected, valid ones accepted, auth not ignored. The number
of examples per operation is bounded (EXAMPLES) to keep ``make test`` quick.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from api_rig import ThreadedApp, auth, spec_data, token_specs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

from canary.api import openapi
from canary.api.app import build_app
from canary.api.context import REQUIRED_ROLE
from canary.clock import RealClock
from canary.engine import Engine
from canary.store import MemoryStore
from config.durations import RANGES, format_duration, parse_duration
from config.schema import schema as spec_schema
from config.settings import Settings
from config.spec import Gate, gate_variables
from config.targets import Target
from config.templates import ALWAYS, target_variables
from strategies.memory import MemoryFleet
from strategies.registry import TargetSpec

EXAMPLES = 40
DOCUMENT = openapi.document()
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


LiveApi = ThreadedApp  # the app on a real socket; schemathesis calls it with requests


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


START = "POST /api/v1/rollouts"


def whole_seconds(name: str) -> Any:
    limits = RANGES[name]
    return st.integers(int(limits.low), int(limits.high)).map(format_duration)


# A duration's range cannot be a JSON Schema pattern ("at most 7 days" of 1h30m-style text),
# so the string form names it as its format; these generate durations within each range.
for _name in RANGES:
    schemathesis.openapi.format(RANGES[_name].format, whole_seconds(_name))


TARGET: TypeAdapter[Target] = TypeAdapter(TargetSpec)


def within_range(parent: dict[str, Any], field: str, name: str) -> None:
    """A duration's text within its range: a pattern cannot say "at most 7 days"."""
    value = parent.get(field)
    if isinstance(value, str):
        limits = RANGES[name]
        if not limits.low <= parse_duration(value) <= limits.high:
            parent[field] = format_duration(limits.low)


def within_what_json_schema_can_say(body: Any) -> Any:
    """A schema-valid spec, changed where canary checks what JSON Schema cannot state:
    weights increasing to 100, durations written as text within their range, distinct
    targets, min <= max; a gate canary still refuses (too few statistical steps in its
    window, metric ids or template variables its queries use) is left out, and so is a
    second gate of the same name, and a gate's targets are the spec's, with what its preset reads.
    tests/test_spec.py covers those rules; the positive run
    checks that everything else the schema allows is accepted (most generated gates stay)."""
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        return body
    steps = spec.get("steps")
    if isinstance(steps, list) and steps:
        weights = sorted({s["weight"] for s in steps})
        if len(weights) != len(steps) or weights[-1] != 100:
            weights = [100 * (i + 1) / len(steps) for i in range(len(steps))]
        spec["steps"] = [s | {"weight": w} for s, w in zip(steps, weights, strict=True)]
        for step in spec["steps"]:
            within_range(step, "bake", "bake")
    if isinstance(spec.get("analysis"), dict):
        within_range(spec["analysis"], "interval", "interval")
    if isinstance(spec.get("notify"), dict):
        spec["notify"].pop("slack", None)  # this daemon has no Slack: test_slack.py's refusal
    # Hooks: this daemon runs none (no webhook secret, no Prometheus), and their rules across
    # the plan (a step's weight, unique names) are tests/test_hooks_spec.py's.
    spec.pop("hooks", None)
    by_key: dict[str, Any] = {}
    for target in spec["targets"]:
        if str(target.get("function", "")).startswith("arn:"):
            # An ARN's region, account and qualifier must agree with the target's region,
            # role_arn and alias; tests/test_canonical_keys.py covers those rules.
            target["function"] = "checkout-api"
        if str(target.get("kind")).startswith("k8s-"):
            # Two names that must differ (stable and canary), and a context: this daemon has
            # no kubeconfig to take the current one from (the key would be refused with 422).
            for stable, canary in (
                ("stable_service", "canary_service"),
                ("stable_subset", "canary_subset"),
                ("ingress", "canary_ingress"),
            ):
                if stable in target and target.get(canary) == target[stable]:
                    target[canary] = f"{target[stable]}-canary"[-253:].lstrip("-.")
            if target.get("context") is None:
                target["context"] = "test"
        by_key.setdefault(TARGET.validate_python(target).key(), target)
    spec["targets"] = list(by_key.values())
    targets = [TARGET.validate_python(t) for t in spec["targets"]]
    known = [set(ALWAYS) | set(target_variables(t)) for t in targets]
    analysis = spec.get("analysis")
    if isinstance(analysis, dict) and isinstance(analysis.get("gates"), list):
        kept: dict[str, Any] = {}
        for gate in analysis["gates"]:
            low, high = gate.get("min"), gate.get("max")
            if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
                gate["min"], gate["max"] = high, low
            try:
                judged = Gate.model_validate(gate).targets
            except ValidationError:
                continue
            # A gate judges targets that exist and read what they have (test_multi_target.py).
            judged = [i for i in judged or range(len(targets)) if i < len(targets)]
            if gate.get("targets") is not None:
                gate["targets"] = judged
            if not judged or not all(
                gate_variables(Gate.model_validate(gate)) <= known[i] for i in judged
            ):
                continue
            if "{{" not in json.dumps(gate):
                kept.setdefault(gate["name"], gate)
        analysis["gates"] = list(kept.values())
    return body


def with_modes(*modes: GenerationMode, include: bool | None = None) -> Any:
    """The document as schemathesis reads it: only the start route (include=True), every
    route but it (False) or all, generating ``modes``."""
    loaded = schemathesis.openapi.from_dict(DOCUMENT)
    loaded.config.generation.update(modes=list(modes))
    if include is True:
        return loaded.include(method="POST", path="/api/v1/rollouts")
    if include is False:
        return loaded.exclude(method="POST", path="/api/v1/rollouts")
    return loaded


schema = with_modes(GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
others = with_modes(GenerationMode.POSITIVE, GenerationMode.NEGATIVE, include=False)
start_negative = with_modes(GenerationMode.NEGATIVE, include=True)
start_positive = with_modes(GenerationMode.POSITIVE, include=True)


@schemathesis.hook
def before_call(ctx: Any, case: schemathesis.Case, **kwargs: Any) -> None:
    # Before the call, so every phase's cases (examples, coverage, fuzzing) pass through it;
    # positive starts only: a negative case must stay as invalid as it was generated.
    meta = case.meta
    if case.operation.label == START and meta is not None and meta.generation.mode.is_positive:
        case.body = within_what_json_schema_can_say(case.body)


RUN = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def token_for(case: schemathesis.Case) -> dict[str, str]:
    """The operator's token, unless the case's headers were made invalid on purpose (the
    bearer token left out or mangled): then the case goes as generated and must be refused.
    Adding the token over such a case would turn it valid while schemathesis still counts
    it negative (and an extra query parameter it adds can vanish when serialised)."""
    meta = case.meta
    header = meta.components.get(ParameterLocation.HEADER) if meta is not None else None
    if header is not None and header.mode.is_negative:
        return {}
    return auth("ana")


def check(case: schemathesis.Case, live: LiveApi) -> None:
    case.call_and_validate(base_url=live.url, headers=token_for(case), timeout=10)


@others.parametrize()
@RUN
def test_every_response_conforms_and_none_is_a_server_error(
    case: schemathesis.Case, live: LiveApi
) -> None:
    check(case, live)


@start_negative.parametrize()
@RUN
def test_a_start_the_schema_refuses_is_refused(case: schemathesis.Case, live: LiveApi) -> None:
    check(case, live)


@start_positive.parametrize()
@RUN
def test_a_start_the_schema_allows_is_accepted(case: schemathesis.Case, live: LiveApi) -> None:
    check(case, live)


def call(live: LiveApi, label: str, **kwargs: Any) -> Any:
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    case = operation.Case(**kwargs)
    return case.call_and_validate(
        base_url=live.url,
        headers=auth("ana"),
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
