"""The OpenAPI 3.1 document of the API, served at ``/api/v1/openapi.json``.

Written out by hand, operation by operation, so that it says what the routes promise; a
test keeps it equal to the routes the app registers (paths, methods and required roles),
and the schemathesis run checks every response against it. The request body of a start is
the rollout spec's own JSON Schema (``config/schema.json``), so the two cannot drift apart.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from canary import __version__
from canary.events import EventKind, PauseCause, RollbackCause
from canary.model import LIVE, Phase
from config.schema import schema as spec_schema

PREFIX = "/api/v1"
ROLE_KEY = "x-canary-role"

JSON = "application/json"
PROBLEM = "application/problem+json"
YAML = "application/yaml"
HTML = "text/html"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _spec_components() -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec's JSON Schema with its $defs moved to components (refs rewritten)."""
    root = copy.deepcopy(spec_schema())
    defs = root.pop("$defs", {})
    root.pop("$schema", None)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    v.replace("#/$defs/", "#/components/schemas/")
                    if k == "$ref" and isinstance(v, str)
                    else rewrite(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    return rewrite(root), {name: rewrite(d) for name, d in defs.items()}


def _page(item: str, cursor: str, cursor_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", cursor],
        "properties": {"items": {"type": "array", "items": ref(item)}, cursor: cursor_schema},
    }


def _schemas() -> dict[str, Any]:
    document, spec_defs = _spec_components()
    target = {
        "type": "object",
        "required": ["key", "kind", "stable", "weight", "restored"],
        "properties": {
            "key": {"type": "string", "description": "the traffic this target controls"},
            "kind": {"type": "string"},
            "stable": nullable("string", description="stable version, read at the start"),
            "canary": nullable("string", description="the version being rolled out"),
            "weight": {"type": "number", "description": "canary weight last read back"},
            "restored": {"type": "boolean", "description": "rollback verified on it"},
        },
    }
    summary_props: dict[str, Any] = {
        "id": {"type": "string", "pattern": "^[0-9a-f]{22}$"},
        "name": {"type": "string"},
        "phase": {"type": "string", "enum": [p.value for p in Phase]},
        "live": {"type": "boolean", "description": "false once the rollout has ended"},
        "step": {"type": "integer", "minimum": 1, "description": "1-based"},
        "steps": {"type": "integer", "minimum": 1},
        "weight": {"type": "number", "description": "canary weight verified on every target"},
        "reason": nullable("string", description="why it is rolling back, or why it ended"),
        "paused_reason": nullable("string"),
        "cause": nullable(
            "string",
            enum=[*(c.value for c in RollbackCause), None],
            description="why it is rolling back (or rolled back), as data",
        ),
        "paused_cause": nullable(
            "string",
            enum=[*(c.value for c in PauseCause), None],
            description="why it is paused, as data",
        ),
        "targets": {"type": "array", "items": ref("TargetState")},
        "counters": {
            "type": "object",
            "required": ["failures", "inconclusive", "consecutive_errors"],
            "properties": {
                "failures": {"type": "integer"},
                "inconclusive": {"type": "integer"},
                "consecutive_errors": {"type": "integer"},
            },
        },
        "build": nullable("string"),
        "created_by": nullable("string", description="the token that started it"),
        "idempotency_key": nullable("string"),
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "quarantine": {  # only on a rollout whose stored record no longer validates
            "type": "object",
            "description": "the stored record no longer validates: never run, only abort applies",
            "required": ["error", "fix"],
            "properties": {"error": {"type": "string"}, "fix": {"type": "string"}},
        },
    }
    always = sorted(set(summary_props) - {"quarantine"})
    summary = {"type": "object", "required": always, "properties": summary_props}
    detail = {
        "type": "object",
        "required": [*always, "document"],
        "properties": summary_props | {"document": ref("RolloutDocument")},
    }
    event = {
        "type": "object",
        "required": ["rollout_id", "seq", "at", "kind", "step", "weight", "message", "data"],
        "properties": {
            "rollout_id": {"type": "string"},
            "seq": {"type": "integer", "minimum": 1, "description": "the SSE id"},
            "at": {"type": "string", "format": "date-time"},
            "kind": {
                "type": "string",
                "examples": [EventKind.TRAFFIC_SHIFTED.value, EventKind.ANALYSIS_EVALUATED.value],
            },
            "step": {"type": "integer"},
            "weight": {"type": "number"},
            "message": {"type": "string"},
            "data": {"type": "object", "description": "the values the decision was made on"},
            "actor": nullable("string", description="the token name, for commands"),
        },
    }
    problem = {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "description": "each problem with the path of the field it is about",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                },
            },
            "rollout_id": {"type": "string", "description": "the rollout a 409 is about"},
            "target": {"type": "string"},
            "phase": {"type": "string"},
            "request_id": {"type": "string"},
        },
    }
    own = {
        "RolloutDocument": document,
        "TargetState": target,
        "RolloutSummary": summary,
        "Rollout": detail,
        "RolloutPage": _page(
            "RolloutSummary", "next_before", nullable("string", description="?before= for more")
        ),
        "Event": event,
        "EventPage": _page(
            "Event", "next_after", {"type": "integer", "description": "?after= for more"}
        ),
        "Problem": problem,
        "Status": {
            "type": "object",
            "required": ["status", "version"],
            "properties": {"status": {"type": "string"}, "version": {"type": "string"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "version", "providers"],
            "properties": {
                "status": {"type": "string"},
                "version": {"type": "string"},
                "providers": {
                    "type": "object",
                    "description": "each metric provider's health; never makes the daemon unready",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["state"],
                        "properties": {
                            "state": {"enum": ["up", "down", "not_configured", "unknown"]},
                            "detail": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Identity": {
            "type": "object",
            "required": ["name", "role", "anonymous"],
            "properties": {
                "name": {"type": "string", "description": "the token's name"},
                "role": {"type": "string", "enum": ["read", "deploy", "operate"]},
                "anonymous": {"type": "boolean", "description": "no token: anonymous mode"},
            },
        },
        "PromoteBody": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "full": {"type": "boolean", "default": False, "description": "skip all steps"},
                "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
            },
        },
        "PauseBody": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
        },
        "ResumeBody": {"type": "object", "additionalProperties": False, "properties": {}},
        "AbortBody": {
            "type": "object",
            "additionalProperties": False,
            "required": ["reason"],
            "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
        },
    }
    clash = set(own) & set(spec_defs)
    assert not clash, f"schema names used twice: {clash}"
    return spec_defs | own


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": ref("Problem")}}}


def _json(description: str, schema: str, **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": ref(schema)}},
    }
    if headers:
        response["headers"] = headers
    return response


AUTH_ERRORS = {
    "401": _problem("no bearer token, or one the daemon does not know"),
    "403": _problem("the token's role does not allow this"),
}
ROLLOUT_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{22}$"},
}
LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the rollout's URL"}}


def _operation(
    op_id: str, summary: str, role: str | None, responses: dict[str, Any], **more: Any
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": op_id, "summary": summary}
    responses = {"400": _problem("an unknown query parameter (or another bad one)")} | responses
    if role is None:
        operation["security"] = []
    else:
        operation[ROLE_KEY] = role
        operation["description"] = f"Needs a token with role `{role}` or higher."
        responses = responses | AUTH_ERRORS
    return operation | more | {"responses": responses}


def _command(name: str, summary: str, body: str, required: bool) -> dict[str, Any]:
    return _operation(
        name,
        summary,
        "operate",
        {
            "200": _json("applied (or already in effect); the rollout after it", "Rollout"),
            "400": _problem("the body is not a JSON object"),
            "404": _problem("no such rollout"),
            "409": _problem("the command does not apply in the rollout's phase"),
            "413": _problem("the body is larger than 1 MiB"),
            "415": _problem("a body that is not application/json"),
            "422": _problem("a field of the body is wrong"),
        },
        parameters=[ROLLOUT_ID],
        requestBody={"required": required, "content": {JSON: {"schema": ref(body)}}},
    )


def _probe(op_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A health route: GET, and HEAD for probes that only look at the status."""
    head = {code: {"description": answer["description"]} for code, answer in responses.items()}
    return {
        "get": _operation(op_id, summary, None, responses),
        "head": _operation(f"{op_id}Head", f"{summary} (status only)", None, head),
    }


def _paths() -> dict[str, Any]:
    rollout_path = f"{PREFIX}/rollouts/{{id}}"
    status_ok = _json("ok", "Status")
    return {
        "/healthz": _probe(
            "healthz",
            "Liveness: the process serves requests and the engine runs",
            {"200": status_ok, "503": _json("the engine is not running", "Status")},
        ),
        "/readyz": _probe(
            "readyz",
            "Readiness: the store answers and the engine runs; providers' health listed",
            {"200": _json("ready", "Readiness"), "503": _problem("not ready; the detail says why")},
        ),
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics of the daemon",
                None,
                {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        f"{PREFIX}/slack/actions": {
            "post": _operation(
                "slackActions",
                "Slack's interactivity URL: a press of Promote, Pause or Abort on a message",
                None,
                {
                    "200": {"description": "verified; the command runs after this answer"},
                    "400": _problem("signed, but not a canary button press"),
                    "401": _problem(
                        "not signed by Slack with the signing secret, more than 5 minutes old, "
                        "or a replay"
                    ),
                    "404": _problem("Slack buttons are not configured on this daemon"),
                    "413": _problem("the body is larger than 1 MiB"),
                },
                description="Authenticated by Slack's request signature (v0, HMAC-SHA256 with "
                "the app's signing secret), not by a token; who may act is "
                "CANARY_SLACK_ALLOWLIST.",
                parameters=[
                    {
                        "name": "X-Slack-Request-Timestamp",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Slack-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"payload": {"type": "string"}},
                                "required": ["payload"],
                            }
                        }
                    },
                },
            )
        },
        f"{PREFIX}/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                None,
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            )
        },
        f"{PREFIX}/rollouts": {
            "post": _operation(
                "startRollout",
                "Start a rollout (idempotent)",
                "deploy",
                {
                    "201": _json("started", "Rollout", **LOCATION),
                    "200": _json(
                        "the same key and spec started this rollout before", "Rollout", **LOCATION
                    ),
                    "400": _problem("the body is not readable JSON or YAML, or a bad header"),
                    "409": _problem(
                        "the key started a rollout with another spec, or a live rollout holds "
                        "a target (rollout_id names it)"
                    ),
                    "413": _problem("the body is larger than 1 MiB"),
                    "415": _problem("the body is neither JSON nor YAML (by its Content-Type)"),
                    "422": _problem("the spec is invalid; errors lists each field"),
                },
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "defaults to the spec's metadata.build (per name)",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "pattern": "^[!-~]+$",
                        },
                    }
                ],
                requestBody={
                    "required": True,
                    "content": {
                        JSON: {"schema": ref("RolloutDocument")},
                        YAML: {"schema": ref("RolloutDocument")},
                    },
                },
            ),
            "get": _operation(
                "listRollouts",
                "List rollouts, newest first",
                "read",
                {
                    "200": {
                        "description": (
                            "JSON page; or, with Accept: text/event-stream (no limit or "
                            "before), a `rollout` event with the rollout's summary each time "
                            "one that phase and target select changes, from then on"
                        ),
                        "content": {
                            JSON: {"schema": ref("RolloutPage")},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _problem("a bad query parameter"),
                    "404": _problem("before names no rollout"),
                },
                parameters=[
                    {
                        "name": "phase",
                        "in": "query",
                        "schema": {"type": "string", "enum": [p.value for p in Phase]},
                    },
                    {
                        "name": "target",
                        "in": "query",
                        "description": "a target key, e.g. lambda-alias/eu-west-1/checkout/live",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                    {
                        "name": "before",
                        "in": "query",
                        "description": "next_before of the previous page",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{22}$"},
                    },
                ],
            ),
        },
        rollout_path: {
            "get": _operation(
                "getRollout",
                "One rollout, with its spec",
                "read",
                {"200": _json("the rollout", "Rollout"), "404": _problem("no such rollout")},
                parameters=[ROLLOUT_ID],
            )
        },
        f"{rollout_path}/events": {
            "get": _operation(
                "rolloutEvents",
                "The rollout's events: a page of JSON, or a Server-Sent Events stream",
                "read",
                {
                    "200": {
                        "description": (
                            "JSON page; or, with Accept: text/event-stream, every event after "
                            "Last-Event-ID (or ?after) then live ones, each with its seq as id, "
                            "and a final `end` event with the rollout once it has ended"
                        ),
                        "content": {
                            JSON: {"schema": ref("EventPage")},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _problem("a bad query parameter or Last-Event-ID"),
                    "404": _problem("no such rollout"),
                },
                parameters=[
                    ROLLOUT_ID,
                    {
                        "name": "after",
                        "in": "query",
                        "description": "only events with a greater seq",
                        "schema": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": 2**53 - 1,
                            "default": 0,
                        },
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "page size of the JSON answer",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 1000,
                        },
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "the seq of the last event seen; wins over ?after",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,15}$"},
                    },
                ],
            )
        },
        f"{PREFIX}/whoami": {
            "get": _operation(
                "whoami",
                "The caller's token name and role (anonymous: the daemon's anonymous mode)",
                "read",
                {"200": _json("who you are", "Identity")},
            )
        },
        "/": {
            "get": _operation(
                "dashboard",
                "The web dashboard (its views are #/ fragments of this page)",
                None,
                {"200": {"description": "the page", "content": {HTML: {"schema": {}}}}},
            )
        },
        "/ui/{name}": {
            "get": _operation(
                "dashboardFile",
                "A script or stylesheet of the dashboard",
                None,
                {
                    "200": {
                        "description": "the file",
                        "content": {"text/javascript": {"schema": {}}, "text/css": {"schema": {}}},
                    },
                    "404": _problem("no such file"),
                },
                parameters=[
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            )
        },
        f"{rollout_path}/promote": {
            "post": _command(
                "promote",
                "Move to the next step now (full: to 100%), skipping the bake left",
                "PromoteBody",
                False,
            )
        },
        f"{rollout_path}/pause": {
            "post": _command("pause", "Pause: the bake clock stops", "PauseBody", False)
        },
        f"{rollout_path}/resume": {
            "post": _command(
                "resume",
                "Resume: re-apply the step's weight, continue the bake",
                "ResumeBody",
                False,
            )
        },
        f"{rollout_path}/abort": {
            "post": _command(
                "abort", "Abort: roll every target back to its stable version", "AbortBody", True
            )
        },
    }


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "canary",
            "version": __version__,
            "description": (
                "Control API of the canary progressive-delivery daemon. Errors are "
                "application/problem+json (RFC 9457). Roles: read < deploy < operate. "
                f"Live phases: {', '.join(sorted(p.value for p in LIVE))}."
            ),
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }


def document() -> dict[str, Any]:
    """A copy of the document (callers may change theirs)."""
    return copy.deepcopy(_document())
