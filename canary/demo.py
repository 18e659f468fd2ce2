"""``canary demo``: two rollouts of a Lambda alias and one of a feature flag, offline, fast.

Everything that decides is the production code: the engine on the real clock, the SQLite
store, the lambda-alias strategy and the CloudWatch provider through boto3, over HTTP. Only
AWS is stood in for, by moto's server started in this process. Lambda functions cannot run
there, so invocations are simulated: a traffic generator reads the alias's weights every
second, routes that second's invocations by them, and publishes per-version
``Invocations``, ``Errors`` and ``Duration`` to CloudWatch with the dimensions Lambda uses.
Version 2 is healthy; version 3 fails 8% of its invocations.

Rollout A (version 2) is promoted through every step; rollout B (version 3) is rolled back
at its first step by the error-rate gate. Steps and bakes are compressed to seconds. The
p95 gate of the shipped example is left out: moto does not compute percentiles.

Rollout C runs beside them: variant v2 of the AppConfig feature flag ``new-pricing`` is
served to a growing share of users. AWS AppConfig is stood in for by the local AppConfig
(``canary.appconfig_local``: moto for applications, profiles and hosted versions, and its
own environments, deployments and Agent endpoint, which also forwards Lambda's and
CloudWatch's calls to moto). Simulated users read the flag from the local Agent with their
``userId`` as context every second; requests and errors per variant go to CloudWatch. v2
is healthy, and the flag ends with v2 as its default.

The store is SQLite in a temporary directory, not memory: it is what ``canary serve`` runs
on by default, so the demo goes through the same write-ahead path.

The daemon's HTTP app (API and dashboard) is served on 127.0.0.1 while the rollouts run, so a
person can watch them in a browser. It takes one token, made up for this run and printed
with the URL (never put in it); no anonymous access, even on localhost. ``--linger`` keeps
the daemon and the page up after both rollouts have ended, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import math
import secrets
import signal
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from analysis.cloudwatch import CloudWatchProvider
from analysis.judges import fmt
from canary import logs
from canary.api.app import ApiRunner, build_app
from canary.api.auth import hash_token
from canary.appconfig_local import LocalAppConfig
from canary.clock import RealClock
from canary.engine import Engine, EngineOptions
from canary.events import INTENTS, EventKind
from canary.model import Event, Phase, Rollout
from canary.store.sqlite import SQLiteStore
from config.settings import Settings, TokenSpec
from config.spec import RolloutDocument, canonical_document, parse_document
from strategies.aws import AwsClients, from_settings
from strategies.lambda_alias import describe_alias, routing
from strategies.registry import Clients, factory

log = structlog.get_logger("canary.demo")

REGION = "us-east-1"
FUNCTION = "checkout-demo"
ALIAS = "live"
ERROR_RATES = {"1": 0.002, "2": 0.003, "3": 0.08}
DURATIONS_MS = {"1": 120.0, "2": 112.0, "3": 131.0}
INVOCATIONS_PER_SECOND = 200
BUDGET_SECONDS = 85.0

HANDLER = "def handler(event, context):\n    return {'statusCode': 200}\n"

APPLICATION, ENVIRONMENT, PROFILE, FLAG = "storefront", "production", "flags", "new-pricing"
FLAG_ERROR_RATES = {"control": 0.002, "v2": 0.003}
FLAG_USERS_PER_SECOND = 60
FLAG_DOCUMENT: dict[str, Any] = {
    "version": "1",
    "flags": {FLAG: {"name": "New pricing engine", "attributes": {"engine": {}}}},
    "values": {
        FLAG: {
            "enabled": True,
            "_variants": [
                {
                    "name": "v2",
                    "enabled": True,
                    "rule": "(split by::$userId pct::0)",
                    "attributeValues": {"engine": "v2"},
                },
                {"name": "control", "enabled": True, "attributeValues": {"engine": "v1"}},
            ],
        }
    },
}


def handler_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", HANDLER)
    return buffer.getvalue()


def create_function(
    lam: Any, iam: Any, name: str = FUNCTION, versions: int = 3, alias: str = ALIAS
) -> str:
    """A function with published versions 1..``versions`` and ``alias`` on version 1.

    Returns the execution role's ARN. Each version gets its own description, since Lambda
    (and moto) publish a new version only when something changed.
    """
    role = iam.create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}',
    )["Role"]["Arn"]
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": handler_zip()},
    )
    for number in range(1, versions + 1):
        lam.update_function_configuration(FunctionName=name, Description=f"build {number}")
        lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name=alias, FunctionVersion="1")
    return str(role)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free port of this machine, for as long as the block runs."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def offline_clients(endpoint_url: str) -> AwsClients:
    """boto3 clients for a local emulator, with dummy credentials: never real AWS."""

    def session() -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id="demo", aws_secret_access_key="demo", region_name=REGION
        )

    return AwsClients(region=REGION, endpoint_url=endpoint_url, session_factory=session)


@dataclass
class TrafficGenerator:
    """Simulated invocations that follow the alias, published as Lambda's metrics."""

    aws: AwsClients
    function: str = FUNCTION
    alias: str = ALIAS
    per_second: float = INVOCATIONS_PER_SECOND
    error_rates: dict[str, float] = field(default_factory=lambda: dict(ERROR_RATES))
    ticks: int = 0
    _carry: dict[str, float] = field(default_factory=dict)

    def _take(self, key: str, amount: float) -> int:
        """Whole units of a running fractional total: exact rates without randomness."""
        total = self._carry.get(key, 0.0) + amount
        whole = math.floor(total)
        self._carry[key] = total - whole
        return whole

    async def tick(self, seconds: float) -> dict[str, int]:
        alias = await self.aws.call(
            "lambda", "get_alias", FunctionName=self.function, Name=self.alias
        )
        weights = routing(alias)
        shares = {str(alias["FunctionVersion"]): 1.0 - sum(weights.values()), **weights}
        data: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for version, share in shares.items():
            calls = self._take(f"calls-{version}", self.per_second * seconds * share)
            if calls <= 0:
                continue
            errors = self._take(f"errors-{version}", calls * self.error_rates.get(version, 0.0))
            counts[version] = calls
            dimensions = [
                {"Name": "FunctionName", "Value": self.function},
                {"Name": "Resource", "Value": f"{self.function}:{self.alias}"},
                {"Name": "ExecutedVersion", "Value": version},
            ]
            duration = DURATIONS_MS.get(version, 100.0)
            data += [
                {
                    "MetricName": "Invocations",
                    "Dimensions": dimensions,
                    "Value": calls,
                    "Unit": "Count",
                },
                {
                    "MetricName": "Errors",
                    "Dimensions": dimensions,
                    "Value": errors,
                    "Unit": "Count",
                },
                {
                    "MetricName": "Duration",
                    "Dimensions": dimensions,
                    "StatisticValues": {
                        "SampleCount": calls,
                        "Sum": duration * calls,
                        "Minimum": duration * 0.5,
                        "Maximum": duration * 3,
                    },
                    "Unit": "Milliseconds",
                },
            ]
        if data:
            await self.aws.call(
                "cloudwatch", "put_metric_data", Namespace="AWS/Lambda", MetricData=data
            )
        self.ticks += 1
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            try:
                await self.tick(now - last)
            except Exception as exc:  # a lost second of traffic must not end the demo
                log.error("demo.traffic_failed", error=str(exc))
            last = now
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


def create_flag(appconfig: Any) -> None:
    """storefront/production/flags with ``new-pricing`` (v2 at 0%, control the default)
    deployed, as a team would have it before the rollout."""
    app = appconfig.create_application(Name=APPLICATION)["Id"]
    env = appconfig.create_environment(ApplicationId=app, Name=ENVIRONMENT)["Id"]
    profile = appconfig.create_configuration_profile(
        ApplicationId=app, Name=PROFILE, LocationUri="hosted", Type="AWS.AppConfig.FeatureFlags"
    )["Id"]
    version = appconfig.create_hosted_configuration_version(
        ApplicationId=app,
        ConfigurationProfileId=profile,
        Content=json.dumps(FLAG_DOCUMENT).encode(),
        ContentType="application/json",
    )["VersionNumber"]
    # AppConfig.AllAtOnce bakes 10 minutes; the team's own strategy does not.
    now = appconfig.create_deployment_strategy(
        Name="all-at-once-no-bake",
        DeploymentDurationInMinutes=0,
        FinalBakeTimeInMinutes=0,
        GrowthFactor=100,
        ReplicateTo="NONE",
    )["Id"]
    number = appconfig.start_deployment(
        ApplicationId=app,
        EnvironmentId=env,
        DeploymentStrategyId=now,
        ConfigurationProfileId=profile,
        ConfigurationVersion=str(version),
    )["DeploymentNumber"]
    while (
        appconfig.get_deployment(ApplicationId=app, EnvironmentId=env, DeploymentNumber=number)[
            "State"
        ]
        != "COMPLETE"
    ):
        time.sleep(0.1)


@dataclass
class FlagTraffic:
    """Simulated users reading the flag from the local Agent, their requests and errors per
    variant published to CloudWatch (Storefront/Failed by Variant: 1 a failed request)."""

    aws: AwsClients
    agent_url: str
    per_second: float = FLAG_USERS_PER_SECOND
    served: dict[str, int] = field(default_factory=dict)
    _next_user: int = 0
    _carry: dict[str, float] = field(default_factory=dict)

    def _read(self, users: list[str]) -> list[str]:
        """Each user's variant, asked of the Agent over one kept-alive connection."""
        parts = urlsplit(self.agent_url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        path = (
            f"/applications/{APPLICATION}/environments/{ENVIRONMENT}/configurations/{PROFILE}"
            f"?flag={FLAG}"
        )
        try:
            variants = []
            for user in users:
                connection.request("GET", path, headers={"Context": f"userId={user}"})
                answer = connection.getresponse()
                variants.append(str(json.loads(answer.read()).get("_variant", "control")))
            return variants
        finally:
            connection.close()

    def _users(self, seconds: float) -> list[str]:
        total = self._carry.get("users", 0.0) + self.per_second * seconds
        count = math.floor(total)
        self._carry["users"] = total - count
        users = [f"user-{(self._next_user + i) % 10_000}" for i in range(count)]
        self._next_user += count
        return users

    async def tick(self, seconds: float) -> dict[str, int]:
        users = self._users(seconds)
        variants = await self.aws.run(lambda: self._read(users))
        counts: dict[str, int] = {}
        for variant in variants:
            counts[variant] = counts.get(variant, 0) + 1
        data: list[dict[str, Any]] = []
        for variant, calls in counts.items():
            self.served[variant] = self.served.get(variant, 0) + calls
            total = self._carry.get(variant, 0.0) + calls * FLAG_ERROR_RATES.get(variant, 0.0)
            errors = math.floor(total)
            self._carry[variant] = total - errors
            # One sample per request, 1 if it failed: Average is the error rate, SampleCount
            # the requests (moto does not evaluate metric math, so no errors / requests).
            data.append(
                {
                    "MetricName": "Failed",
                    "Dimensions": [{"Name": "Variant", "Value": variant}],
                    "StatisticValues": {
                        "SampleCount": calls,
                        "Sum": errors,
                        "Minimum": 0.0,
                        "Maximum": 1.0 if errors else 0.0,
                    },
                }
            )
        if data:
            await self.aws.call(
                "cloudwatch", "put_metric_data", Namespace="Storefront", MetricData=data
            )
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            try:
                await self.tick(now - last)
            except Exception as exc:  # a lost second of traffic must not end the demo
                log.error("demo.flag_traffic_failed", error=str(exc))
            last = now
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


def flag_spec(name: str) -> RolloutDocument:
    metric = {"namespace": "Storefront", "metric": "Failed"}
    variant = {"Variant": "{{ canary_version }}"}
    return parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {
                "targets": [
                    {
                        "kind": "appconfig-flag",
                        "application": APPLICATION,
                        "environment": ENVIRONMENT,
                        "profile": PROFILE,
                        "flag": FLAG,
                        "variant": "v2",
                        "client_poll": "1s",  # the local Agent re-reads every second
                    }
                ],
                "steps": [
                    {"weight": 10, "bake": "5s"},
                    {"weight": 25, "bake": "5s"},
                    {"weight": 50, "bake": "5s"},
                    {"weight": 100},
                ],
                "analysis": {
                    "interval": "2s",
                    "gates": [
                        {
                            "name": "variant-errors",
                            "provider": "cloudwatch",
                            "metrics": {
                                "failed": {**metric, "stat": "Average", "dimensions": variant},
                                "requests": {
                                    **metric,
                                    "stat": "SampleCount",
                                    "dimensions": variant,
                                },
                            },
                            "query": "failed",
                            "samples_query": "requests",
                            "max": 0.02,
                            "min_samples": 20,
                            "window": "1m",
                            "delay": "0s",
                        }
                    ],
                    "warmup": "0s",
                    "failure_limit": 0,
                    "inconclusive_limit": 5,
                },
            },
        }
    )


def spec(name: str, version: str) -> RolloutDocument:
    return parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {
                "targets": [
                    {
                        "kind": "lambda-alias",
                        "function": FUNCTION,
                        "alias": ALIAS,
                        "version": version,
                    }
                ],
                "steps": [
                    {"weight": 10, "bake": "5s"},
                    {"weight": 25, "bake": "5s"},
                    {"weight": 50, "bake": "5s"},
                    {"weight": 100},
                ],
                "analysis": {
                    "interval": "2s",
                    "gates": [
                        {
                            "name": "error-rate",
                            "provider": "cloudwatch",
                            "preset": "lambda-error-rate",
                            "max": 0.02,
                            "min_samples": 30,
                            "window": "1m",
                            "delay": "0s",  # moto has the data at once
                        }
                    ],
                    "warmup": "0s",  # 5-second bakes: judge from the first look
                    "failure_limit": 0,
                    "inconclusive_limit": 5,
                },
            },
        }
    )


@dataclass(frozen=True)
class Expected:
    label: str
    version: str
    phase: Phase
    why: str


PLAN = (
    Expected("A", "2", Phase.SUCCEEDED, "healthy: promoted through 10 → 25 → 50 → 100%"),
    Expected(
        "B", "3", Phase.ROLLED_BACK, "8% errors: rolled back at step 1 by the error-rate gate"
    ),
)
FLAG_PLAN = Expected(
    "C", "v2", Phase.SUCCEEDED, "flag new-pricing, variant v2: promoted to the default"
)


def _gates(event: Event) -> str:
    parts = []
    for result in event.data.get("results", []):
        text = result["explanation"]
        if result.get("samples") is not None:
            text += f" [n={fmt(result['samples'])}]"
        parts.append(text)
    return "gates: " + " · ".join(parts)


class Display:
    """The live timeline: a progress bar per rollout and one line per decision."""

    def __init__(self, console: Console, started: float) -> None:
        self.console = console
        self.started = started
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.completed:>3.0f}%"),
            TextColumn("{task.fields[status]}"),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.labels: dict[str, str] = {}

    def add(self, rollout: Rollout, label: str) -> None:
        self.labels[rollout.id] = label
        what = "variant" if rollout.spec.targets[0].kind == "appconfig-flag" else "version"
        description = f"rollout {label} ({what} {rollout.spec.targets[0].canary_version})"
        self.tasks[rollout.id] = self.progress.add_task(description, total=100, status="pending")

    def show(self, rollout: Rollout, events: list[Event]) -> None:
        label = self.labels.get(rollout.id, "?")
        steps = len(rollout.spec.steps)
        for event in events:
            if event.kind in INTENTS:
                continue
            text = _gates(event) if event.kind == EventKind.ANALYSIS_EVALUATED else event.message
            self.progress.console.print(
                f"[dim]{time.monotonic() - self.started:5.1f}s[/]  {label}  "
                f"step {event.step}/{steps}  {event.weight:>4g}%  {text}",
                highlight=False,
            )
        task = self.tasks.get(rollout.id)
        if task is not None:
            status = f"{rollout.phase.value}, step {rollout.step + 1}/{steps}"
            self.progress.update(task, completed=rollout.weight, status=status)


async def _until_ended(engine: Engine, rollout_id: str) -> Rollout:
    while True:
        r = await engine.store.get(rollout_id)
        if r.phase.terminal:
            return r
        await asyncio.sleep(0.2)


async def _follow(queue: asyncio.Queue[tuple[Rollout, list[Event]]], display: Display) -> None:
    while True:
        rollout, events = await queue.get()
        display.show(rollout, events)


async def serve(engine: Engine, aws: AwsClients, port: int) -> tuple[ApiRunner, str, str]:
    """The daemon's app on 127.0.0.1:``port`` (0: any free port): (runner, URL, token)."""
    token = secrets.token_urlsafe(18)
    settings = Settings(
        tokens=[TokenSpec(name="demo", sha256=hash_token(token), role="operate")],
        allow_anonymous=False,
        aws_region=REGION,
    )
    clients = Clients(None, {from_settings: aws})
    app = build_app(
        engine, settings, canonical=lambda document: canonical_document(document, clients)
    )
    runner = ApiRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    host, bound = runner.addresses[0][:2]
    return runner, f"http://{host}:{bound}/", token


async def until_interrupted() -> None:
    """Wait for Ctrl-C (SIGINT) or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def run(console: Console, *, linger: bool = False, port: int = 0) -> int:
    started = time.monotonic()
    console.print(
        "[bold]canary demo[/]: two rollouts of the Lambda alias "
        f"[cyan]{FUNCTION}:{ALIAS}[/] and, beside them, one of the AppConfig feature flag "
        f"[cyan]{FLAG}[/], offline, against moto (a local AWS emulator) and a local AppConfig"
    )
    console.print(
        "Steps and bakes are [bold]compressed to seconds[/] (10/25/50/100%, 5 s bakes, gates "
        "every 2 s); a real plan bakes for minutes. Invocations are simulated at "
        f"{INVOCATIONS_PER_SECOND}/s, routed by the alias's weights; per-version Errors and "
        "Invocations go to CloudWatch. Only the error-rate gate runs: moto does not compute "
        "percentiles, so the p95 latency gate is left out. Flag users read the flag from a "
        f"local AppConfig Agent ({FLAG_USERS_PER_SECOND}/s, by userId); their requests and "
        "errors per variant go to CloudWatch.\n"
    )
    with moto_server() as moto_endpoint, tempfile.TemporaryDirectory() as tmp:
        appconfig = LocalAppConfig(moto_endpoint, latency=0.3, agent_poll=1.0).start()
        aws = offline_clients(appconfig.url)  # AppConfig here; Lambda, CloudWatch: moto
        store = SQLiteStore(Path(tmp) / "canary.db")
        engine = Engine(
            store,
            RealClock(),
            factory(Clients(None, {from_settings: aws})),
            {"cloudwatch": CloudWatchProvider(aws)},
            options=EngineOptions(backend_timeout=20.0, provider_timeout=10.0, step_retry=1.0),
        )
        await aws.run(lambda: create_function(aws.client("lambda"), aws.client("iam")))
        await aws.run(lambda: create_flag(aws.client("appconfig")))
        console.print(
            f"set up: function {FUNCTION} with versions 1, 2, 3; alias {ALIAS} → version 1 "
            f"(error rates: {', '.join(f'v{v} {r:.1%}' for v, r in ERROR_RATES.items())}); "
            f"AppConfig {APPLICATION}/{ENVIRONMENT}/{PROFILE}, flag {FLAG} with variant v2 "
            "at 0% and the default control (error rates: "
            f"{', '.join(f'{v} {r:.1%}' for v, r in FLAG_ERROR_RATES.items())})\n"
        )
        traffic = TrafficGenerator(aws)
        await traffic.tick(0.0)
        flag_traffic = FlagTraffic(aws, appconfig.agent_url)
        stop = asyncio.Event()
        display = Display(console, started)
        queue = engine.subscribe()
        await engine.start()
        try:
            runner, url, token = await serve(engine, aws, port)
        except OSError as exc:
            engine.unsubscribe(queue)
            await engine.stop()
            await store.close()
            aws.close()
            appconfig.stop()
            console.print(f"[red]cannot serve the dashboard on 127.0.0.1:{port}: {exc}[/]")
            return 2
        console.print(
            f"dashboard: [bold]{url}[/] (it asks for a token once: [bold]{token}[/], role "
            "operate, made up for this run)\n"
        )
        outcomes: list[Rollout] = []
        flag_outcome: Rollout | None = None
        tasks = [
            asyncio.create_task(traffic.run(stop)),
            asyncio.create_task(_follow(queue, display)),
            asyncio.create_task(flag_traffic.run(stop)),
        ]
        try:
            with display.progress:
                flag_rollout = await engine.submit(flag_spec("demo-c"), actor="demo")
                display.add(flag_rollout, FLAG_PLAN.label)
                for expected in PLAN:
                    rollout = await engine.submit(
                        spec(f"demo-{expected.label.lower()}", expected.version), actor="demo"
                    )
                    display.add(rollout, expected.label)
                    try:
                        outcome = await asyncio.wait_for(
                            _until_ended(engine, rollout.id),
                            BUDGET_SECONDS - (time.monotonic() - started),
                        )
                    except TimeoutError:
                        console.print(
                            f"[red]rollout {expected.label} did not end within the demo's "
                            f"{BUDGET_SECONDS:g} s[/]"
                        )
                        break
                    await asyncio.sleep(0.3)  # let the last events reach the timeline
                    outcomes.append(outcome)
                try:
                    flag_outcome = await asyncio.wait_for(
                        _until_ended(engine, flag_rollout.id),
                        max(0.1, BUDGET_SECONDS - (time.monotonic() - started)),
                    )
                except TimeoutError:
                    console.print(
                        f"[red]rollout C did not end within the demo's {BUDGET_SECONDS:g} s[/]"
                    )
            if linger:
                console.print(
                    f"\nthe rollouts have ended; the daemon and the dashboard stay up at "
                    f"[bold]{url}[/] until Ctrl-C"
                )
                await until_interrupted()
        finally:
            await runner.cleanup()
            stop.set()
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            engine.unsubscribe(queue)
            await engine.stop()
            alias = await aws.call("lambda", "get_alias", FunctionName=FUNCTION, Name=ALIAS)
            flag_now = await aws.run(lambda: served_flag(appconfig))
            await store.close()
            aws.close()
            appconfig.stop()
    ok = flag_summary(console, flag_outcome, flag_now, flag_traffic.served)
    return summary(console, outcomes, alias, time.monotonic() - started, flag_ok=ok)


def served_flag(appconfig: LocalAppConfig) -> list[str]:
    """The variants of the flag as deployed now, in order (the last is the default)."""
    ids = appconfig.ids_of(APPLICATION, ENVIRONMENT, PROFILE)
    document = appconfig.served(*ids) or {}
    entries = ((document.get("values") or {}).get(FLAG) or {}).get("_variants") or []
    return [f"{e['name']} ({e['rule']})" if e.get("rule") else e["name"] for e in entries]


def flag_summary(
    console: Console, outcome: Rollout | None, variants: list[str], served: dict[str, int]
) -> bool:
    """Rollout C's line and the flag's state; True when both are as expected."""
    console.print("\n[bold]summary[/]")
    expected = FLAG_PLAN
    if outcome is None:
        console.print(
            f"  rollout {expected.label}, variant {expected.version}: [red]did not end[/]"
        )
        return False
    as_expected = outcome.phase == expected.phase
    mark = "[green]as expected[/]" if as_expected else "[red]NOT as expected[/]"
    steps = len(outcome.spec.steps)
    reason = f": {outcome.reason}" if outcome.phase != Phase.SUCCEEDED else ""
    console.print(
        f"  rollout {expected.label}, variant {expected.version} ({expected.why}): "
        f"{outcome.phase.value} at step {outcome.step + 1}/{steps}{reason} ({mark})"
    )
    flag_ok = variants == ["v2"]
    reads = ", ".join(f"{v} {n}" for v, n in sorted(served.items()))
    console.print(
        f"  flag {FLAG} now: variants {', '.join(variants) or 'none'} "
        + ("(v2 is the default, as expected)" if flag_ok else "[red](expected v2 alone)[/]")
        + f"; the Agent served {reads}"
    )
    return as_expected and flag_ok


def summary(
    console: Console,
    outcomes: list[Rollout],
    alias: dict[str, Any],
    took: float,
    *,
    flag_ok: bool = True,
) -> int:
    ok = len(outcomes) == len(PLAN) and flag_ok
    for expected in PLAN[len(outcomes) :]:
        console.print(
            f"  rollout {expected.label}, version {expected.version}: [red]did not end[/]"
        )
    for expected, rollout in zip(PLAN, outcomes, strict=False):
        as_expected = rollout.phase == expected.phase
        if expected.phase == Phase.ROLLED_BACK:
            as_expected &= rollout.step == 0 and "error-rate" in (rollout.reason or "")
        ok &= as_expected
        mark = "[green]as expected[/]" if as_expected else "[red]NOT as expected[/]"
        steps = len(rollout.spec.steps)
        reason = f": {rollout.reason}" if rollout.phase != Phase.SUCCEEDED else ""
        console.print(
            f"  rollout {expected.label}, version {expected.version} ({expected.why}): "
            f"{rollout.phase.value} at step {rollout.step + 1}/{steps}{reason} ({mark})"
        )
    final = describe_alias(alias)
    alias_ok = str(alias["FunctionVersion"]) == "2" and not routing(alias)
    ok &= alias_ok
    console.print(
        f"  alias {ALIAS} now serves: {final} "
        + ("(version 2 only, as expected)" if alias_ok else "[red](expected version 2 only)[/]")
    )
    console.print(f"took {took:.1f} s of wall time")
    console.print(
        "[bold green]demo: every outcome as expected[/]" if ok else "[bold red]demo: FAILED[/]"
    )
    return 0 if ok else 1


def main(*, linger: bool = False, port: int = 0) -> int:
    logs.configure(level="error", fmt="console")
    try:
        import moto.server  # noqa: F401
    except ImportError:
        Console(stderr=True).print(
            "canary demo needs moto's server, which is not installed: pip install 'canary[demo]'"
        )
        return 2
    # Lines are not wrapped (a terminal wraps them), and output to a file or pipe is wide.
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
    return asyncio.run(run(console, linger=linger, port=port))
