"""What the AppConfig tests share: the local AppConfig, a feature-flag profile, the engine.

The local AppConfig (``canary.appconfig_local``) stands in front of the session's moto
server; its deployments progress on the test's ``VirtualClock``, so a 20-minute deployment
strategy takes no wall time. Every request it received is checked against botocore's model;
``Local.check()`` fails the test on any malformed one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from motohelpers import DUMMY, REGION

from analysis.base import Measurement, MetricQuery
from analysis.scripted import ScriptedProvider
from canary.appconfig_local import LocalAppConfig
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.model import Rollout
from canary.simulate import Scheduled, drive
from canary.store.memory import MemoryStore
from config.spec import RolloutDocument, parse_document
from strategies.aws import AwsClients, from_settings
from strategies.registry import Clients, factory

FLAG = "new-pricing"
BASELINE: dict[str, Any] = {
    "version": "1",
    "flags": {
        "new-pricing": {"name": "New pricing engine", "attributes": {"engine": {}}},
        "banner": {"name": "Holiday banner"},
    },
    "values": {
        "new-pricing": {
            "enabled": True,
            "_variants": [
                {
                    "name": "beta-testers",
                    "enabled": True,
                    "rule": "(split by::$userId pct::1)",
                    "attributeValues": {"engine": "v2"},
                },
                {
                    "name": "v2",
                    "enabled": True,
                    "rule": "(split by::$userId pct::0)",
                    "attributeValues": {"engine": "v2"},
                },
                {"name": "control", "enabled": True, "attributeValues": {"engine": "v1"}},
            ],
        },
        "banner": {"enabled": True},
    },
}


class Now:
    """The local AppConfig's clock: the engine's virtual time, in seconds."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock

    def __call__(self) -> float:
        return self.clock.now().timestamp()


@dataclass
class Flag:
    """One application/environment/profile on the local AppConfig, seen by a test client."""

    local: LocalAppConfig
    app: str
    env: str
    profile: str
    strategy: str

    @property
    def client(self) -> Any:
        return boto3.client("appconfig", endpoint_url=self.local.url, region_name=REGION, **DUMMY)

    def put(self, document: dict[str, Any]) -> str:
        made = self.client.create_hosted_configuration_version(
            ApplicationId=self.app,
            ConfigurationProfileId=self.profile,
            Content=json.dumps(document).encode(),
            ContentType="application/json",
        )
        return str(made["VersionNumber"])

    def deploy(self, version: str, strategy: str | None = None) -> int:
        started = self.client.start_deployment(
            ApplicationId=self.app,
            EnvironmentId=self.env,
            DeploymentStrategyId=strategy or self.strategy,
            ConfigurationProfileId=self.profile,
            ConfigurationVersion=version,
        )
        return int(started["DeploymentNumber"])

    def deployments(self) -> list[dict[str, Any]]:
        return self.client.list_deployments(ApplicationId=self.app, EnvironmentId=self.env)["Items"]

    def live(self) -> dict[str, Any]:
        """The document of the newest COMPLETE deployment of the profile, parsed."""
        served = self.local.served(self.app, self.env, self.profile)
        assert served is not None
        return served

    def version(self, number: str) -> dict[str, Any]:
        found = self.client.get_hosted_configuration_version(
            ApplicationId=self.app, ConfigurationProfileId=self.profile, VersionNumber=int(number)
        )
        return dict(json.loads(found["Content"].read()))


def make_flag(
    local: LocalAppConfig, document: dict[str, Any] | None = None, monitors: list[Any] | None = None
) -> Flag:
    """storefront/production/flags with ``document`` (BASELINE) deployed as version 1."""
    c = boto3.client("appconfig", endpoint_url=local.url, region_name=REGION, **DUMMY)
    app = c.create_application(Name="storefront")["Id"]
    env = c.create_environment(ApplicationId=app, Name="production", Monitors=monitors or [])["Id"]
    profile = c.create_configuration_profile(
        ApplicationId=app, Name="flags", LocationUri="hosted", Type="AWS.AppConfig.FeatureFlags"
    )["Id"]
    strategy = c.create_deployment_strategy(
        Name="setup-now",
        DeploymentDurationInMinutes=0,
        FinalBakeTimeInMinutes=0,
        GrowthFactor=100,
        ReplicateTo="NONE",
    )["Id"]
    flag = Flag(local, app, env, profile, strategy)
    flag.deploy(flag.put(document or BASELINE))
    return flag


def target(**update: Any) -> dict[str, Any]:
    return {
        "kind": "appconfig-flag",
        "application": "storefront",
        "environment": "production",
        "profile": "flags",
        "flag": FLAG,
        "variant": "v2",
        "client_poll": "30s",
        **update,
    }


def spec(analysis: dict[str, Any] | None = None, **update: Any) -> RolloutDocument:
    return parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": "pricing"},
            "spec": {
                "targets": [target(**update)],
                "analysis": analysis
                or {
                    "interval": "1m",
                    "failure_limit": 0,
                    "gates": [
                        {"name": "errors", "provider": "cloudwatch", "query": "e", "max": 0.01}
                    ],
                },
            },
        }
    )


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.001, 1000)


def failing_from(weight: float) -> Callable[[MetricQuery], Measurement]:
    def script(q: MetricQuery) -> Measurement:
        return Measurement(0.05 if q.weight >= weight else 0.001, 1000)

    return script


class Rig:
    """The engine on virtual time, the real strategy through boto3, scripted gates."""

    def __init__(
        self,
        aws: AwsClients,
        clock: VirtualClock,
        script: Callable[[MetricQuery], Measurement] = healthy,
    ) -> None:
        self.clock = clock
        self.store = MemoryStore()
        self.engine = Engine(
            self.store,
            clock,
            factory(Clients(None, {from_settings: aws})),
            {"cloudwatch": ScriptedProvider(script)},
            options=EngineOptions(step_retry=1.0),
        )

    async def run(self, doc: RolloutDocument, scheduled: list[Scheduled] | None = None) -> Rollout:
        await self.engine.start()
        try:
            r = await self.engine.submit(doc, actor="ci")
            await drive(self.engine, self.clock, scheduled=scheduled)
            return await self.store.get(r.id)
        finally:
            await self.engine.stop()

    async def events(self, r: Rollout) -> list[Any]:
        return list(await self.store.events(r.id))


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)
