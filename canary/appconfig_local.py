"""A local AWS AppConfig for the demo and the tests: moto for what it has, the rest here.

moto's server (5.x) implements applications, configuration profiles and hosted
configuration versions, but not environments, deployment strategies or deployments, and no
ListApplications. ``LocalAppConfig`` is an HTTP server in front of moto that forwards what
moto has and implements the rest after AWS's documented contract:

* every request is matched to an operation of botocore's own service model for appconfig
  and its parameters validated against the input shape (required members, types, enums,
  lengths and ranges); a malformed call is answered 400 BadRequestException *and* kept in
  ``malformed``, which the tests' fixture asserts empty, so a wrong call fails the test;
* errors are shaped as AppConfig sends them (``x-amzn-ErrorType`` and a JSON ``Message``):
  404 ResourceNotFoundException, 409 ConflictException, 400 BadRequestException;
* a deployment moves through DEPLOYING (PercentageComplete by its strategy's growth),
  BAKING (its final bake) and COMPLETE on a clock the caller controls (``now``); one
  deployment per environment at a time (409 ConflictException); StopDeployment ends a
  deployment in progress ROLLED_BACK; an environment's monitor (a CloudWatch alarm in moto)
  in ALARM rolls its deployment in progress back (ROLLING_BACK, then ROLLED_BACK);
* requests signed for another service (Lambda, CloudWatch) go to moto unchanged, so one
  endpoint serves every AWS client of a daemon;
* a second port serves the AppConfig Agent's local endpoint, ``GET /applications/A/
  environments/E/configurations/P[?flag=K]`` with a ``Context: userId=...`` header: the
  newest COMPLETE configuration, re-read every ``agent_poll`` seconds like the Agent, with
  multi-variant flags evaluated (variants in order, first match; ``split`` by a consistent
  hash of the context value, so a user within 10% is within 25%).

Only the ``split`` operator is evaluated; a rule with another operator is answered 400 by
the Agent endpoint (named), never guessed.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_AUTH = (
    "AWS4-HMAC-SHA256 Credential=local/20260101/{region}/appconfig/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
_SIGNED_FOR = re.compile(
    r"Credential=[^/]+/[^/]+/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request"
)
_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "host"}
IN_FLIGHT = ("DEPLOYING", "BAKING", "ROLLING_BACK")
PREDEFINED = (
    ("AppConfig.AllAtOnce", 0, 10, 100.0),
    ("AppConfig.Linear50PercentEvery30Seconds", 1, 1, 50.0),
    ("AppConfig.Canary10Percent20Minutes", 20, 10, 10.0),
    ("AppConfig.Linear20PercentEvery6Minutes", 30, 30, 20.0),
)
_RULE_SPLIT = re.compile(
    r"^\(\s*split\s+(?=.*by::\$(?P<by>[A-Za-z0-9_.-]+))(?=.*pct::(?P<pct>[0-9]+(?:\.[0-9]+)?))"
    r"(?:(?:by::\$[A-Za-z0-9_.-]+|pct::[0-9.]+|seed::\"[^\"]*\")\s*)+\)$"
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


# ---------------------------------------------------------------- the Agent's evaluation


def bucket(value: str) -> float:
    """A user's place in [0, 100): a consistent hash, the same for every percentage."""
    digest = hashlib.sha256(value.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1_000_000 / 10_000


def rule_matches(rule: str, context: dict[str, str]) -> bool:
    found = _RULE_SPLIT.match(rule.strip())
    if found is None:
        raise ValueError(f"rule {rule!r} uses an operator this local Agent does not evaluate")
    value = context.get(found["by"])
    return value is not None and bucket(value) < float(found["pct"])


def evaluate_flag(document: dict[str, Any], flag: str, context: dict[str, str]) -> dict[str, Any]:
    """What the Agent answers for ``flag``: its enabled state and attributes, and for a
    multi-variant flag the first variant whose rule matches (the last is the default)."""
    value = (document.get("values") or {}).get(flag)
    if value is None:
        raise KeyError(flag)
    entries = value.get("_variants")
    if not entries:
        return {k: v for k, v in value.items() if not k.startswith("_")}
    for entry in entries:
        rule = entry.get("rule")
        if rule is None or rule_matches(rule, context):
            return {
                "enabled": bool(entry.get("enabled", False)),
                **(entry.get("attributeValues") or {}),
                "_variant": entry.get("name"),
            }
    return {"enabled": False}


# ---------------------------------------------------------------- validation


class Operations:
    """botocore's model of AppConfig: routes (method, path) to an operation and checks it."""

    def __init__(self) -> None:
        import botocore.session
        from botocore.validate import ParamValidator

        self.model = botocore.session.get_session().get_service_model("appconfig")
        self.validator = ParamValidator()
        self.routes: list[tuple[str, re.Pattern[str], Any]] = []
        for name in self.model.operation_names:
            op = self.model.operation_model(name)
            uri = op.http["requestUri"].split("?")[0]
            pattern = re.sub(r"\{(\w+)\+?\}", r"(?P<\1>[^/]+)", uri)
            self.routes.append((op.http["method"], re.compile(f"^{pattern}$"), op))

    def route(self, method: str, path: str) -> tuple[Any, dict[str, str]]:
        for verb, pattern, op in self.routes:
            found = pattern.match(path)
            if found and verb == method:
                return op, {k: unquote(v) for k, v in found.groupdict().items()}
        raise ApiError(404, "ResourceNotFoundException", f"no AppConfig operation {method} {path}")

    def params(
        self,
        op: Any,
        labels: dict[str, str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        """The call's parameters as boto3 took them, validated against the input shape."""
        shape = op.input_shape
        params: dict[str, Any] = {}
        lower = {k.lower(): v for k, v in headers.items()}
        payload = shape.serialization.get("payload") if shape is not None else None
        members = shape.members if shape is not None else {}
        for name, member in members.items():
            where = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            raw: str | None = None
            if where == "uri":
                raw = labels.get(wire)
            elif where == "querystring":
                raw = next(iter(query.get(wire) or []), None)
            elif where == "header":
                raw = lower.get(wire.lower())
            if raw is not None:
                params[name] = _typed(member, raw)
        if payload:
            if body:
                params[payload] = body
        elif body:
            try:
                data = json.loads(body)
            except ValueError:
                raise self.bad(op, ["the body is not JSON"]) from None
            for name, member in members.items():
                if member.serialization.get("location") is None and name in data:
                    params[name] = data[name]
        unknown = sorted(set(json.loads(body)) - set(members)) if body and not payload else []
        if shape is not None:
            report = self.validator.validate(params, shape)
            problems = [report.generate_report()] if report.has_errors() else []
            problems += [f"unknown members {unknown}"] if unknown else []
            problems += _limits(shape, params)
            if problems:
                raise self.bad(op, problems)
        return params

    @staticmethod
    def bad(op: Any, problems: list[str]) -> ApiError:
        return ApiError(
            400, "BadRequestException", f"{op.name}: " + "; ".join(problems), malformed=True
        )


def _typed(member: Any, raw: str) -> Any:
    if member.type_name in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            return raw  # the validator names it
    if member.type_name == "boolean":
        return raw.lower() == "true"
    return raw


def _limits(shape: Any, value: Any, path: str = "") -> list[str]:
    """What botocore's validator leaves out: enums and maximums (lengths, values)."""
    problems: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                problems += _limits(member, value[name], f"{path}.{name}".lstrip("."))
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: more than {meta['max']} items")
        for i, item in enumerate(value):
            problems += _limits(shape.member, item, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: more than {meta['max']} entries")
    elif shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {list(shape.enum)}")
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: longer than {meta['max']}")
    elif (
        shape.type_name in ("integer", "long", "float", "double")
        and isinstance(value, int | float)
        and "max" in meta
        and value > meta["max"]
    ):
        problems.append(f"{path}: above {meta['max']}")
    return problems


# ---------------------------------------------------------------- the state


@dataclass
class Environment:
    application: str
    id: str
    name: str
    description: str = ""
    monitors: list[dict[str, str]] = field(default_factory=list)
    region: str = "us-east-1"

    def to_json(self, state: str) -> dict[str, Any]:
        return {
            "ApplicationId": self.application,
            "Id": self.id,
            "Name": self.name,
            "Description": self.description,
            "State": state,
            "Monitors": self.monitors,
        }


@dataclass
class Deployment:
    application: str
    environment: str
    number: int
    strategy: dict[str, Any]
    profile: str
    profile_name: str
    version: str
    description: str
    started: float
    state: str = "DEPLOYING"
    percentage: float = 0.0
    completed: float | None = None
    ended_by: str | None = None  # why it is rolled back
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, wall: Callable[[float], datetime]) -> dict[str, Any]:
        s = self.strategy
        out: dict[str, Any] = {
            "ApplicationId": self.application,
            "EnvironmentId": self.environment,
            "DeploymentStrategyId": s["Id"],
            "ConfigurationProfileId": self.profile,
            "DeploymentNumber": self.number,
            "ConfigurationName": self.profile_name,
            "ConfigurationLocationUri": "hosted",
            "ConfigurationVersion": self.version,
            "Description": self.description,
            "DeploymentDurationInMinutes": s["DeploymentDurationInMinutes"],
            "GrowthType": s["GrowthType"],
            "GrowthFactor": s["GrowthFactor"],
            "FinalBakeTimeInMinutes": s["FinalBakeTimeInMinutes"],
            "State": self.state,
            "EventLog": [
                {**e, "OccurredAt": wall(e["OccurredAt"]).isoformat()}
                for e in reversed(self.events)
            ],
            "PercentageComplete": self.percentage,
            "StartedAt": wall(self.started).isoformat(),
        }
        if self.completed is not None:
            out["CompletedAt"] = wall(self.completed).isoformat()
        return out

    def summary(self, wall: Callable[[float], datetime]) -> dict[str, Any]:
        full = self.to_json(wall)
        keep = [
            "DeploymentNumber",
            "ConfigurationProfileId",
            "ConfigurationName",
            "ConfigurationVersion",
            "DeploymentDurationInMinutes",
            "GrowthType",
            "GrowthFactor",
            "FinalBakeTimeInMinutes",
            "State",
            "PercentageComplete",
            "StartedAt",
            "CompletedAt",
        ]
        return {k: full[k] for k in keep if k in full}


class LocalAppConfig:
    """The AppConfig API (``url``) and the Agent's endpoint (``agent_url``), in threads.

    ``now`` is the clock deployments progress on (seconds; default ``time.monotonic``);
    ``latency`` is how long the service takes to roll a deployment out at its slowest
    (a deployment without duration still takes that long, as on AWS); ``agent_poll`` is
    how often the local Agent re-reads the deployed configuration.
    """

    def __init__(
        self,
        moto_url: str,
        *,
        now: Callable[[], float] = time.monotonic,
        latency: float = 0.5,
        agent_poll: float = 0.0,
        region: str = "us-east-1",
    ) -> None:
        parts = urlsplit(moto_url)
        self.moto_url = moto_url
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.now = now
        self.latency = latency
        self.agent_poll = agent_poll
        self.region = region  # of the Agent's reads; API calls are in the region they sign
        self._calling = threading.local()  # the region of the API call being handled
        self.ops = Operations()
        self.malformed: list[str] = []
        self.calls: list[str] = []  # operation names, in order
        self.denied: set[str] = set()  # operations answered 403 AccessDeniedException
        self._epoch = (datetime.now(UTC).timestamp(), now())
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.applications: dict[str, str] = {}  # id -> name (created through here)
        self.environments: dict[str, Environment] = {}
        self.strategies: dict[str, dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], list[Deployment]] = {}
        self._agent_cache: dict[tuple[str, str, str], tuple[float, dict[str, Any] | None]] = {}
        self._cloudwatch: dict[str, Any] = {}  # region -> a client of moto's CloudWatch
        self.reset()
        self._api = _Server(("127.0.0.1", 0), _handler(self, self.handle))
        self._agent = _Server(("127.0.0.1", 0), _handler(self, self.agent))
        for server in (self._api, self._agent):
            server.daemon_threads = True
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True) for s in (self._api, self._agent)
        ]

    @property
    def url(self) -> str:
        host, port = self._api.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def agent_url(self) -> str:
        host, port = self._agent.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalAppConfig:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server in (self._api, self._agent):
            server.shutdown()
            server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.malformed.clear()
            self.calls.clear()
            self.denied.clear()
            self.applications.clear()
            self.environments.clear()
            self.deployments.clear()
            self._agent_cache.clear()
            self.strategies = {
                sid: {
                    "Id": sid,
                    "Name": sid,
                    "Description": "predefined",
                    "DeploymentDurationInMinutes": minutes,
                    "GrowthType": "LINEAR",
                    "GrowthFactor": growth,
                    "FinalBakeTimeInMinutes": bake,
                    "ReplicateTo": "NONE",
                }
                for sid, minutes, bake, growth in PREDEFINED
            }

    def wall(self, t: float) -> datetime:
        return datetime.fromtimestamp(self._epoch[0] + (t - self._epoch[1]), UTC)

    # ------------------------------------------------------------ moto

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _get(
        self, path: str, region: str | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """A GET of our own to moto, signed for appconfig in the region of the call being
        handled (moto routes by the signing name and keeps each region apart)."""
        region = region or getattr(self._calling, "region", None) or self.region
        return self._forward("GET", path, {"Authorization": _AUTH.format(region=region)}, b"")

    def _moto_json(self, path: str, region: str | None = None) -> dict[str, Any] | None:
        status, _, out = self._get(path, region)
        return json.loads(out) if status < 300 and out else None

    def _application(self, app: str) -> None:
        if self._moto_json(f"/applications/{app}") is None:
            raise ApiError(
                404,
                "ResourceNotFoundException",
                f"Application {app} not found",
                ResourceName=app,
            )

    def _environment(self, app: str, env: str) -> Environment:
        self._application(app)
        found = self.environments.get(env)
        if found is None or found.application != app:
            raise ApiError(
                404, "ResourceNotFoundException", f"Environment {env} not found", ResourceName=env
            )
        return found

    # ------------------------------------------------------------ the API

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        signed = _SIGNED_FOR.search(headers.get("Authorization", ""))
        if signed is not None and signed["service"] != "appconfig":
            # Another service's call (Lambda, CloudWatch): moto's, unchanged. One endpoint
            # serves a daemon's every AWS client, as AWS_ENDPOINT_URL would.
            return self._forward(method, target, headers, body)
        self._calling.region = signed["region"] if signed is not None else self.region
        try:
            op, labels = self.ops.route(method, parts.path)
            params = self.ops.params(op, labels, parse_qs(parts.query), headers, body)
        except ApiError as exc:
            if exc.extra.pop("malformed", False):
                with self._lock:
                    self.malformed.append(str(exc))
            return _error(exc)
        with self._lock:
            self.calls.append(op.name)
            if op.name in self.denied:
                return _error(
                    ApiError(
                        403,
                        "AccessDeniedException",
                        f"User is not authorized to perform appconfig:{op.name}",
                    )
                )
        local = getattr(self, f"_op_{op.name}", None)
        if local is None:
            status, out_headers, out = self._forward(method, target, headers, body)
            if op.name == "CreateApplication" and status < 300:
                made = json.loads(out)
                with self._lock:
                    self.applications[made["Id"]] = made["Name"]
            return status, out_headers, out
        try:
            with self._lock:
                status, answer = local(params)
        except ApiError as exc:
            exc.extra.pop("malformed", None)
            return _error(exc)
        data = json.dumps(answer, default=str).encode()
        return status, [("Content-Type", "application/json")], data

    def _page(self, items: list[Any], params: dict[str, Any]) -> dict[str, Any]:
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 50)
        out: dict[str, Any] = {"Items": items[start : start + size]}
        if start + size < len(items):
            out["NextToken"] = str(start + size)
        return out

    def _op_ListApplications(self, p: dict[str, Any]) -> tuple[int, Any]:
        items = []
        for app in list(self.applications):
            found = self._moto_json(f"/applications/{app}")
            if found is not None:
                items.append(found)
        return 200, self._page(items, p)

    def _op_CreateEnvironment(self, p: dict[str, Any]) -> tuple[int, Any]:
        app = p["ApplicationId"]
        self._application(app)
        if any(e.application == app and e.name == p["Name"] for e in self.environments.values()):
            raise ApiError(409, "ConflictException", f"Environment {p['Name']} already exists")
        env = Environment(
            app,
            _id(),
            p["Name"],
            p.get("Description", ""),
            list(p.get("Monitors") or []),
            getattr(self._calling, "region", self.region),
        )
        self.environments[env.id] = env
        return 201, env.to_json("ReadyForDeployment")

    def _env_state(self, env: Environment) -> str:
        for d in self.deployments.get((env.application, env.id), []):
            self._advance(d)
            if d.state in ("DEPLOYING", "BAKING"):
                return "Deploying"
            if d.state == "ROLLING_BACK":
                return "RollingBack"
        latest = self.deployments.get((env.application, env.id))
        if latest and latest[-1].state == "ROLLED_BACK":
            return "RolledBack"
        return "ReadyForDeployment"

    def _op_GetEnvironment(self, p: dict[str, Any]) -> tuple[int, Any]:
        env = self._environment(p["ApplicationId"], p["EnvironmentId"])
        return 200, env.to_json(self._env_state(env))

    def _op_ListEnvironments(self, p: dict[str, Any]) -> tuple[int, Any]:
        self._application(p["ApplicationId"])
        items = [
            e.to_json(self._env_state(e))
            for e in self.environments.values()
            if e.application == p["ApplicationId"]
        ]
        return 200, self._page(items, p)

    def _op_CreateDeploymentStrategy(self, p: dict[str, Any]) -> tuple[int, Any]:
        sid = _id()
        strategy = {
            "Id": sid,
            "Name": p["Name"],
            "Description": p.get("Description", ""),
            "DeploymentDurationInMinutes": p["DeploymentDurationInMinutes"],
            "GrowthType": p.get("GrowthType", "LINEAR"),
            "GrowthFactor": p["GrowthFactor"],
            "FinalBakeTimeInMinutes": p.get("FinalBakeTimeInMinutes", 0),
            "ReplicateTo": p.get("ReplicateTo", "NONE"),
        }
        self.strategies[sid] = strategy
        return 201, strategy

    def _op_ListDeploymentStrategies(self, p: dict[str, Any]) -> tuple[int, Any]:
        return 200, self._page(list(self.strategies.values()), p)

    def _op_GetDeploymentStrategy(self, p: dict[str, Any]) -> tuple[int, Any]:
        found = self.strategies.get(p["DeploymentStrategyId"])
        if found is None:
            raise ApiError(
                404,
                "ResourceNotFoundException",
                f"Deployment strategy {p['DeploymentStrategyId']} not found",
            )
        return 200, found

    def _op_StartDeployment(self, p: dict[str, Any]) -> tuple[int, Any]:
        app, env_id = p["ApplicationId"], p["EnvironmentId"]
        self._environment(app, env_id)
        strategy = self.strategies.get(p["DeploymentStrategyId"]) or next(
            (s for s in self.strategies.values() if s["Name"] == p["DeploymentStrategyId"]), None
        )
        if strategy is None:
            raise ApiError(
                404,
                "ResourceNotFoundException",
                f"Deployment strategy {p['DeploymentStrategyId']} not found",
            )
        profile = self._moto_json(
            f"/applications/{app}/configurationprofiles/{p['ConfigurationProfileId']}"
        )
        if profile is None:
            raise ApiError(
                404,
                "ResourceNotFoundException",
                f"Configuration profile {p['ConfigurationProfileId']} not found",
            )
        status, _, _ = self._get(
            f"/applications/{app}/configurationprofiles/{p['ConfigurationProfileId']}"
            f"/hostedconfigurationversions/{p['ConfigurationVersion']}"
        )
        if status >= 300:
            raise ApiError(
                400,
                "BadRequestException",
                f"Configuration version {p['ConfigurationVersion']} of profile "
                f"{p['ConfigurationProfileId']} not found",
            )
        history = self.deployments.setdefault((app, env_id), [])
        for d in history:
            self._advance(d)
            if d.state in IN_FLIGHT:
                raise ApiError(
                    409,
                    "ConflictException",
                    f"Deployment #{d.number} is already in progress for environment {env_id}; "
                    "only one deployment per environment is allowed at a time",
                )
        now = self.now()
        d = Deployment(
            app,
            env_id,
            len(history) + 1,
            strategy,
            p["ConfigurationProfileId"],
            profile["Name"],
            p["ConfigurationVersion"],
            p.get("Description", ""),
            started=now,
        )
        d.events.append(_event("DEPLOYMENT_STARTED", "USER", "Deployment started", now))
        history.append(d)
        self._advance(d)
        return 201, d.to_json(self.wall)

    def _deployment(self, p: dict[str, Any]) -> Deployment:
        self._environment(p["ApplicationId"], p["EnvironmentId"])
        for d in self.deployments.get((p["ApplicationId"], p["EnvironmentId"]), []):
            if d.number == p["DeploymentNumber"]:
                self._advance(d)
                return d
        raise ApiError(
            404,
            "ResourceNotFoundException",
            f"Deployment {p['DeploymentNumber']} not found",
            ResourceName=str(p["DeploymentNumber"]),
        )

    def _op_GetDeployment(self, p: dict[str, Any]) -> tuple[int, Any]:
        return 200, self._deployment(p).to_json(self.wall)

    def _op_ListDeployments(self, p: dict[str, Any]) -> tuple[int, Any]:
        self._environment(p["ApplicationId"], p["EnvironmentId"])
        history = self.deployments.get((p["ApplicationId"], p["EnvironmentId"]), [])
        for d in history:
            self._advance(d)
        items = [d.summary(self.wall) for d in reversed(history)]
        return 200, self._page(items, p)

    def _op_StopDeployment(self, p: dict[str, Any]) -> tuple[int, Any]:
        d = self._deployment(p)
        if d.state not in ("DEPLOYING", "BAKING"):
            raise ApiError(
                400,
                "BadRequestException",
                f"Deployment #{d.number} is {d.state}; only a deployment in progress can be "
                "stopped",
            )
        now = self.now()
        d.state, d.ended_by = "ROLLED_BACK", "StopDeployment"
        d.completed = now
        d.events.append(_event("ROLLBACK_COMPLETED", "USER", "Deployment stopped", now))
        return 202, d.to_json(self.wall)

    # ------------------------------------------------------------ progress

    def _alarming(self, env: Environment) -> str | None:
        names = [m["AlarmArn"].split(":alarm:")[-1] for m in env.monitors if "AlarmArn" in m]
        if not names:
            return None
        if env.region not in self._cloudwatch:
            import boto3

            self._cloudwatch[env.region] = boto3.client(
                "cloudwatch",
                endpoint_url=self.moto_url,
                region_name=env.region,
                aws_access_key_id="local",
                aws_secret_access_key="local",
            )
        found = self._cloudwatch[env.region].describe_alarms(AlarmNames=names)
        alarms = found["MetricAlarms"]
        return next((a["AlarmArn"] for a in alarms if a["StateValue"] == "ALARM"), None)

    def _advance(self, d: Deployment) -> None:
        """Bring ``d`` up to ``now``: percentage, bake, completion, rollback on alarm."""
        now = self.now()
        if d.state in ("COMPLETE", "ROLLED_BACK"):
            return
        if d.state == "ROLLING_BACK":
            if now >= (d.completed or now) + self.latency:
                d.state = "ROLLED_BACK"
                d.events.append(
                    _event("ROLLBACK_COMPLETED", "APPCONFIG", "Rollback completed", now)
                )
            return
        env = self.environments[d.environment]
        alarm = self._alarming(env)
        if alarm is not None:
            d.state, d.completed, d.ended_by = "ROLLING_BACK", now, alarm
            d.events.append(
                _event("ROLLBACK_STARTED", "CLOUDWATCH_ALARM", f"Alarm {alarm} is in ALARM", now)
            )
            return
        s = d.strategy
        duration = float(s["DeploymentDurationInMinutes"]) * 60
        elapsed = now - d.started
        rolled_out = max(duration, self.latency)
        if elapsed < rolled_out:
            growth = float(s["GrowthFactor"])
            if duration > 0:
                steps = max(1, round(100 / growth))
                done = int(elapsed / (duration / steps)) + 1
                percentage = min(100.0, growth * done)
            else:
                percentage = 0.0
            if percentage != d.percentage:
                d.percentage = percentage
                d.events.append(_event("PERCENTAGE_UPDATED", "APPCONFIG", f"{percentage:g}%", now))
            return
        if d.percentage < 100:
            d.percentage = 100.0
            d.events.append(_event("PERCENTAGE_UPDATED", "APPCONFIG", "100%", now))
        bake = float(s["FinalBakeTimeInMinutes"]) * 60
        if elapsed < rolled_out + bake:
            if d.state != "BAKING":
                d.state = "BAKING"
                d.events.append(_event("BAKE_TIME_STARTED", "APPCONFIG", "Baking", now))
            return
        d.state, d.completed = "COMPLETE", d.started + rolled_out + bake
        d.events.append(_event("DEPLOYMENT_COMPLETED", "APPCONFIG", "Deployment completed", now))

    # ------------------------------------------------------------ the Agent

    def served(self, app: str, env: str, profile: str) -> dict[str, Any] | None:
        """The document the newest COMPLETE deployment of ``profile`` serves (ids)."""
        with self._lock:
            history = self.deployments.get((app, env), [])
            for d in history:
                self._advance(d)
            done = [d for d in history if d.profile == profile and d.state == "COMPLETE"]
            if not done:
                return None
            version = done[-1].version
            region = self.environments[env].region
        status, _, out = self._get(
            f"/applications/{app}/configurationprofiles/{profile}/hostedconfigurationversions/"
            f"{version}",
            region,
        )
        return json.loads(out) if status < 300 else None

    def ids_of(self, app: str, env: str, profile: str) -> tuple[str, str, str]:
        """The ids of an application, environment and profile named by name or id."""
        app_id = next((i for i, n in self.applications.items() if app in (i, n)), app)
        env_id = next(
            (
                e.id
                for e in self.environments.values()
                if e.application == app_id and env in (e.id, e.name)
            ),
            env,
        )
        env_of = self.environments.get(env_id)
        region = env_of.region if env_of is not None else self.region
        found = self._moto_json(f"/applications/{app_id}/configurationprofiles", region) or {}
        prof_id = next(
            (i["Id"] for i in found.get("Items", []) if profile in (i["Id"], i["Name"])), profile
        )
        return app_id, env_id, prof_id

    def agent(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        found = re.match(
            r"^/applications/([^/]+)/environments/([^/]+)/configurations/([^/]+)$", parts.path
        )
        if method != "GET" or found is None:
            return _plain(
                404, "not an Agent path: GET /applications/A/environments/E/configurations/P"
            )
        key = self.ids_of(*(unquote(g) for g in found.groups()))
        now = self.now()
        cached = self._agent_cache.get(key)
        if cached is None or now >= cached[0] + self.agent_poll:
            cached = (now, self.served(*key))
            self._agent_cache[key] = cached
        document = cached[1]
        if document is None:
            return _plain(404, f"no configuration deployed for {'/'.join(found.groups())}")
        context: dict[str, str] = {}
        for name, value in headers.items():
            if name.lower() == "context":
                for pair in value.split(","):
                    k, _, v = pair.strip().partition("=")
                    if k:
                        context[k] = v
        flags = parse_qs(parts.query).get("flag") or []
        try:
            if len(flags) == 1:
                answer: Any = evaluate_flag(document, flags[0], context)
            else:
                wanted = flags or list(document.get("values") or {})
                answer = {f: evaluate_flag(document, f, context) for f in wanted}
        except KeyError as exc:
            return _plain(404, f"no flag {exc.args[0]!r} in the configuration")
        except ValueError as exc:
            return _plain(400, str(exc))
        return 200, [("Content-Type", "application/json")], json.dumps(answer).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-request (a stopped daemon, a timed-out call) is not an error of
        the server's; anything else is printed as the base class does."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _id() -> str:
    return uuid.uuid4().hex[:7]


def _event(kind: str, by: str, text: str, at: float) -> dict[str, Any]:
    return {"EventType": kind, "TriggeredBy": by, "Description": text, "OccurredAt": at}


def _error(exc: ApiError) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", exc.code),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    body = {"Message": str(exc), **exc.extra}
    return exc.status, headers, json.dumps(body).encode()


def _plain(status: int, text: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "text/plain")], text.encode()


def _handler(
    server: LocalAppConfig,
    handle: Callable[[str, str, dict[str, str], bytes], tuple[int, list[tuple[str, str]], bytes]],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                if name.lower() not in _HOP:  # a repeated header (Context) joined with ","
                    headers[name] = f"{headers[name]},{value}" if name in headers else value
            try:
                status, out_headers, out = handle(self.command, self.path, headers, body)
            except OSError as exc:
                status, out_headers, out = _error(ApiError(502, "BadGateway", str(exc)))
            try:
                self.send_response(status)
                for name, value in out_headers:
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except OSError:
                self.close_connection = True

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _any

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler
