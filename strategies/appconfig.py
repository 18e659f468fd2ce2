"""AWS AppConfig feature flags: one variant of one flag served to a growing share of users.

This module is the whole ``appconfig-flag`` kind: its spec model, its strategy and its
declaration (``KIND``, registered in ``strategies/registry.py``).

What AppConfig allows shapes every write. A feature-flag profile (``AWS.AppConfig.
FeatureFlags``) holds one JSON document, ``{"version": "1", "flags": ..., "values": ...}``;
a flag with variants keeps them in ``values[flag]["_variants"]``, an ordered list whose last
entry is the default (no rule). Only the AppConfig Agent evaluates rules, first match wins;
``(split by::$userId pct::10)`` matches 10% of users by a consistent hash of the context
value, so the users on the canary at 10% are still on it at 25%. A change is a new hosted
configuration version followed by ``StartDeployment``, and an environment runs one
deployment at a time (``ConflictException``).

So ``shift(w)`` writes the document that was live before the rollout (the *stable*
configuration version, recorded at the start) with only the variant's rule replaced by
``(split by::$<split_by> pct::w)``, deploys it with an all-at-once strategy and waits for
COMPLETE; ``shift(0)`` and ``rollback()`` deploy the stable version itself (stopping a
deployment in flight first), so a rollback restores the exact previous document;
``promote()`` makes the variant the flag's default. What counts is what is deployed: every
read compares the deployed document with the ones this strategy writes, so a deployment
someone else made (another document) is a foreign split, which the engine calls drift.

A deployment in progress refuses ours (AppConfig's ConflictException), and ours takes as
long as its strategy says: both are a ``ConflictError``, which the engine waits out with
backoff, each wait recorded, without the retry budget that ends in a rollback.
Clients see a deployed change only at their next poll (45 s by default with the Agent), so
a split reports ``settle = client_poll`` and the engine starts the bake that much later.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from config.durations import Delay
from config.targets import AwsTarget, NonEmpty, Target, schema_of
from strategies.aws import AwsClients, AwsNotFound, from_settings
from strategies.base import (
    ConflictError,
    PermanentError,
    StrategyError,
    TemporaryError,
    TrafficSplit,
)
from strategies.kind import TargetKind

FEATURE_FLAGS = "AWS.AppConfig.FeatureFlags"
OWN_STRATEGY = "canary-all-at-once"
"""The deployment strategy the daemon creates when a target names none: all at once, no
bake (AppConfig's own AppConfig.AllAtOnce bakes 10 minutes; the rollout's steps bake)."""
IN_FLIGHT = frozenset({"BAKING", "VALIDATING", "DEPLOYING", "ROLLING_BACK"})
WAIT_IN_CALL = 3.0  # seconds a write waits for its deployment before handing back
LOOK_EVERY = 0.25
NEXT_LOOK = 5.0  # the delay a still-running deployment asks of the engine

_SPLIT = re.compile(
    r"^\(\s*split\s+(?:by::\$(?P<by1>[A-Za-z0-9_.-]+)\s+pct::(?P<pct1>[0-9]+(?:\.[0-9]+)?)"
    r"|pct::(?P<pct2>[0-9]+(?:\.[0-9]+)?)\s+by::\$(?P<by2>[A-Za-z0-9_.-]+))\s*\)$"
)


def split_rule(by: str, pct: float) -> str:
    return f"(split by::${by} pct::{pct:g})"


def parse_split(rule: str | None) -> tuple[str, float] | None:
    """(context key, percent) of a ``(split by::$key pct::n)`` rule; None for any other."""
    if rule is None:
        return None
    found = _SPLIT.match(rule.strip())
    if found is None:
        return None
    return (found["by1"] or found["by2"], float(found["pct1"] or found["pct2"]))


_FLAG_KEY = re.compile(r"^[a-z][a-zA-Z\d_-]{0,63}$")


def _flag_key(value: str) -> str:
    if not _FLAG_KEY.match(value):
        raise PydanticCustomError(
            "flag_key",
            "{value} is not an AppConfig flag key; a key starts with a lowercase letter, then "
            "up to 63 letters, digits, '_' or '-' (e.g. new-pricing-engine)",
            {"value": repr(value)},
        )
    return value


FlagKey = Annotated[str, AfterValidator(_flag_key), schema_of(_FLAG_KEY)]


class AppConfigFlagTarget(AwsTarget):
    """One variant of one feature flag, served to a growing share of an environment's users."""

    kind: Literal["appconfig-flag"]
    application: NonEmpty = Field(description="the AppConfig application (name or id)")
    environment: NonEmpty = Field(description="the AppConfig environment (name or id)")
    profile: NonEmpty = Field(
        description="the feature-flag configuration profile (name or id), of type "
        "AWS.AppConfig.FeatureFlags"
    )
    flag: FlagKey = Field(description="the flag's key inside the profile")
    variant: str = Field(
        min_length=1,
        max_length=64,
        description="the flag's variant to roll out; it is the canary version gates see "
        "({{ canary_version }})",
    )
    split_by: str = Field(
        default="userId",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the context key users are split by (the Agent's Context header)",
    )
    deployment_strategy: str | None = Field(
        default=None,
        min_length=1,
        description="the AppConfig deployment strategy (name or id) each step deploys with; "
        f"default: {OWN_STRATEGY}, all at once without bake, created once if missing",
    )
    client_poll: Delay = Field(
        default=45.0,
        description="how often your clients poll AppConfig (the Agent's default is 45s); each "
        "step's bake starts this much after its deployment is complete",
    )

    def key(self) -> str:
        return (
            f"appconfig-flag/{self._region_key()}/{self.application}/{self.environment}/"
            f"{self.profile}/{self.flag}"
        )

    @property
    def canary_version(self) -> str:
        return self.variant


def canonical(target: AppConfigFlagTarget, aws: AwsClients) -> AppConfigFlagTarget:
    """The daemon's region filled in: a flag named with or without it has one key."""
    if target.region is not None:
        return target
    return target.model_copy(update={"region": aws.region_for_unnamed()})


# ---------------------------------------------------------------- the document


_STAMPS = frozenset({"_createdAt", "_updatedAt"})


def comparable(value: Any) -> Any:
    """``value`` without AppConfig's own timestamps, which the console and the service may
    add or renew: two documents that differ only there serve the same flags."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in _STAMPS}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    return bool(comparable(a) == comparable(b))


def variants(document: dict[str, Any], flag: str) -> list[dict[str, Any]]:
    value = (document.get("values") or {}).get(flag) or {}
    found = value.get("_variants")
    return found if isinstance(found, list) else []


def with_rule(
    document: dict[str, Any], flag: str, variant: str, rule: str | None
) -> dict[str, Any]:
    """``document`` with only ``variant``'s rule of ``flag`` set to ``rule`` (None: no rule)."""
    out = copy.deepcopy(document)
    for entry in variants(out, flag):
        if entry.get("name") == variant:
            if rule is None:
                entry.pop("rule", None)
            else:
                entry["rule"] = rule
    return out


def promoted(document: dict[str, Any], flag: str, variant: str) -> dict[str, Any]:
    """``variant`` as the flag's default: last, without a rule; the old default goes."""
    out = copy.deepcopy(document)
    entries = variants(out, flag)
    chosen = next(e for e in entries if e.get("name") == variant)
    chosen.pop("rule", None)
    kept = [e for e in entries[:-1] if e.get("name") != variant]
    out["values"][flag]["_variants"] = [*kept, chosen]
    return out


def flag_problems(document: Any, flag: str, variant: str) -> list[str]:
    """Why ``document`` cannot carry this rollout; [] when it can."""
    if not isinstance(document, dict) or "values" not in document:
        return ["its content is not a feature-flag document ({version, flags, values})"]
    if flag not in (document.get("flags") or {}):
        known = ", ".join(sorted(document.get("flags") or {})) or "none"
        return [f"it has no flag {flag!r} (flags: {known})"]
    entries = variants(document, flag)
    names = [e.get("name") for e in entries]
    if variant not in names:
        return [
            f"flag {flag!r} has no variant {variant!r} (variants: {', '.join(map(str, names))}"
            " ); add it in AppConfig (a variant and a default variant) and deploy that first"
            if names
            else f"flag {flag!r} has no variants; add variant {variant!r} and a default "
            "variant in AppConfig and deploy that first"
        ]
    if names[-1] == variant:
        return [
            f"variant {variant!r} is already the default of flag {flag!r} (the last variant): "
            "it is served to everyone not matched before it; there is nothing to roll out"
        ]
    return []


class AppConfigFlagStrategy:
    kind: ClassVar[str] = "appconfig-flag"

    def __init__(self, target: AppConfigFlagTarget, stable: str | None, aws: AwsClients) -> None:
        self.target = target
        self.stable = stable
        self.aws = aws
        self._ids: dict[str, str] = {}  # application, environment, profile, strategy -> id
        self._documents: dict[str, dict[str, Any]] = {}  # version -> parsed content
        self._ours: set[int] = set()  # deployment numbers this strategy started

    # ------------------------------------------------------------ calls

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.aws.call(
            "appconfig",
            method,
            region=self.target.region,
            role_arn=self.target.role_arn,
            **params,
        )

    async def _find(self, what: str, method: str, fix: str, **params: Any) -> str:
        """The id of the item named (by name or id) ``getattr(target, what)``."""
        if what in self._ids:
            return self._ids[what]
        wanted = getattr(self.target, what)
        token: str | None = None
        while True:
            page = await self._call(method, **params, **({"NextToken": token} if token else {}))
            for item in page.get("Items", []):
                if wanted in (item.get("Id"), item.get("Name")):
                    self._ids[what] = str(item["Id"])
                    return self._ids[what]
            token = page.get("NextToken")
            if not token:
                break
        raise PermanentError(fix)

    async def _application(self) -> str:
        t = self.target
        return await self._find(
            "application",
            "list_applications",
            f"AppConfig application {t.application!r} does not exist{self._where}; check the "
            "target's application (a name or an id) and region",
        )

    async def _environment(self) -> str:
        t = self.target
        return await self._find(
            "environment",
            "list_environments",
            f"environment {t.environment!r} of AppConfig application {t.application!r} does "
            "not exist; check the target's environment (a name or an id)",
            ApplicationId=await self._application(),
        )

    async def _profile(self) -> str:
        t = self.target
        return await self._find(
            "profile",
            "list_configuration_profiles",
            f"configuration profile {t.profile!r} of AppConfig application {t.application!r} "
            "does not exist; check the target's profile (a name or an id)",
            ApplicationId=await self._application(),
        )

    async def _strategy(self) -> str:
        t = self.target
        if t.deployment_strategy is not None:
            return await self._find(
                "deployment_strategy",
                "list_deployment_strategies",
                f"deployment strategy {t.deployment_strategy!r} does not exist{self._where}; "
                "name an existing one, or leave deployment_strategy out for canary's own",
            )
        if "deployment_strategy" in self._ids:
            return self._ids["deployment_strategy"]
        page: dict[str, Any] = {}
        token: str | None = None
        while True:
            page = await self._call(
                "list_deployment_strategies", **({"NextToken": token} if token else {})
            )
            for item in page.get("Items", []):
                if item.get("Name") == OWN_STRATEGY:
                    self._ids["deployment_strategy"] = str(item["Id"])
                    return self._ids["deployment_strategy"]
            token = page.get("NextToken")
            if not token:
                break
        made = await self._call(
            "create_deployment_strategy",
            Name=OWN_STRATEGY,
            Description="canary: all at once, no bake (each rollout step bakes instead)",
            DeploymentDurationInMinutes=0,
            FinalBakeTimeInMinutes=0,
            GrowthFactor=100.0,
            GrowthType="LINEAR",
            ReplicateTo="NONE",
        )
        self._ids["deployment_strategy"] = str(made["Id"])
        return self._ids["deployment_strategy"]

    @property
    def _where(self) -> str:
        region = self.target.region or self.aws.region
        return f" in {region}" if region else ""

    async def _document(self, version: str) -> dict[str, Any]:
        if version in self._documents:
            return self._documents[version]
        t = self.target
        try:
            found = await self._call(
                "get_hosted_configuration_version",
                ApplicationId=await self._application(),
                ConfigurationProfileId=await self._profile(),
                VersionNumber=int(version),
            )
        except AwsNotFound:
            raise PermanentError(
                f"configuration version {version} of profile {t.profile!r} does not exist; it "
                "was deleted, so this rollout cannot restore or compare with it"
            ) from None
        body: Any = found.get("Content")
        raw = await self.aws.run(body.read) if hasattr(body, "read") else body
        try:
            document = json.loads(raw or b"")
            if not isinstance(document, dict):
                raise ValueError(document)
        except ValueError:
            raise PermanentError(
                f"configuration version {version} of profile {t.profile!r} is not JSON; a "
                f"feature-flag profile holds a JSON document ({FEATURE_FLAGS})"
            ) from None
        self._documents[version] = document
        return document

    async def _deployments(self) -> list[dict[str, Any]]:
        """This environment's deployments, newest first (summaries: any profile)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self._call(
                "list_deployments",
                ApplicationId=await self._application(),
                EnvironmentId=await self._environment(),
                **({"NextToken": token} if token else {}),
            )
            items += page.get("Items", [])
            token = page.get("NextToken")
            if not token or len(items) >= 50:
                break
        return sorted(items, key=lambda d: int(d["DeploymentNumber"]), reverse=True)

    async def _deployment(self, number: int) -> dict[str, Any]:
        return await self._call(
            "get_deployment",
            ApplicationId=await self._application(),
            EnvironmentId=await self._environment(),
            DeploymentNumber=number,
        )

    async def _latest(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the newest deployment of our profile that was not rolled back, any deployment
        of the environment in flight), as full deployments."""
        profile = await self._profile()
        ours: dict[str, Any] | None = None
        flying: dict[str, Any] | None = None
        for summary in await self._deployments():
            state = summary.get("State")
            if flying is None and state in IN_FLIGHT:
                flying = await self._deployment(int(summary["DeploymentNumber"]))
            if ours is None and state not in ("ROLLED_BACK", "REVERTED"):
                full = await self._deployment(int(summary["DeploymentNumber"]))
                if full.get("ConfigurationProfileId") == profile:
                    ours = full
            if ours is not None and (flying is not None or state not in IN_FLIGHT):
                break
        return ours, flying

    # ------------------------------------------------------------ the split

    def _stable(self) -> str:
        if self.stable is None:
            raise PermanentError(
                "the configuration version live before this rollout was never recorded; abort "
                "the rollout and start a new one"
            )
        return self.stable

    async def _expected(self) -> tuple[dict[str, Any], str | None]:
        baseline = await self._document(self._stable())
        t = self.target
        rule = next(
            (e.get("rule") for e in variants(baseline, t.flag) if e.get("name") == t.variant),
            None,
        )
        return baseline, rule

    async def _split_of(self, deployment: dict[str, Any]) -> TrafficSplit:
        t = self.target
        version = str(deployment["ConfigurationVersion"])
        document = await self._document(version)
        baseline, base_rule = await self._expected()
        state = deployment.get("State")
        detail = f"deployment #{deployment['DeploymentNumber']} of version {version}, {state}" + (
            f" {deployment.get('PercentageComplete', 0):g}%" if state in IN_FLIGHT else ""
        )
        settle = self.target.client_poll
        if same(document, baseline):
            base = parse_split(base_rule)
            weight = base[1] if base and base[0] == t.split_by else 0.0
            return TrafficSplit(weight, stable=self.stable, detail=detail, settle=settle)
        if same(document, promoted(baseline, t.flag, t.variant)):
            return TrafficSplit(100.0, stable=self.stable, detail=detail, settle=settle)
        rule = next(
            (e.get("rule") for e in variants(document, t.flag) if e.get("name") == t.variant),
            None,
        )
        parsed = parse_split(rule)
        if (
            parsed is not None
            and parsed[0] == t.split_by
            and same(document, with_rule(baseline, t.flag, t.variant, rule))
        ):
            return TrafficSplit(parsed[1], stable=self.stable, detail=detail, settle=settle)
        return TrafficSplit(None, stable=self.stable, detail=f"{detail}: not canary's document")

    # ------------------------------------------------------------ the protocol

    async def validate(self) -> None:
        t = self.target
        await self._application()
        await self._environment()
        profile = await self._call(
            "get_configuration_profile",
            ApplicationId=await self._application(),
            ConfigurationProfileId=await self._profile(),
        )
        if profile.get("Type") != FEATURE_FLAGS:
            raise PermanentError(
                f"configuration profile {t.profile!r} is of type "
                f"{profile.get('Type') or 'freeform'}, not {FEATURE_FLAGS}; name a feature-flag "
                "profile"
            )
        if profile.get("LocationUri") != "hosted":
            raise PermanentError(
                f"configuration profile {t.profile!r} is stored in {profile.get('LocationUri')}, "
                "not in AppConfig's hosted store; canary writes hosted configuration versions"
            )
        await self._strategy()
        live, _ = await self._latest()
        if live is None:
            raise PermanentError(
                f"profile {t.profile!r} was never deployed to environment {t.environment!r}; "
                "deploy the configuration your users get today first (the rollout starts from "
                "it and returns to it on rollback)"
            )
        document = await self._document(str(live["ConfigurationVersion"]))
        problems = flag_problems(document, t.flag, t.variant)
        if problems:
            raise PermanentError(
                f"the live configuration of profile {t.profile!r} (version "
                f"{live['ConfigurationVersion']}): " + "; ".join(problems)
            )

    async def observe(self) -> TrafficSplit:
        live, _ = await self._latest()
        if live is None:
            raise PermanentError(
                f"profile {self.target.profile!r} has no deployment in environment "
                f"{self.target.environment!r}"
            )
        if self.stable is None:  # the rollout's start: what is live is the stable version
            if live.get("State") in IN_FLIGHT:
                raise TemporaryError(
                    f"deployment #{live['DeploymentNumber']} of profile {self.target.profile!r} "
                    f"is still {live.get('State')}; a rollout starts once it is complete",
                    delay=NEXT_LOOK,
                )
            self.stable = str(live["ConfigurationVersion"])
        return await self._split_of(live)

    async def shift(self, canary_percent: float) -> TrafficSplit:
        t = self.target
        baseline, _ = await self._expected()
        if canary_percent <= 0:
            return await self._deploy(baseline, self._stable(), "stable")
        rule = split_rule(t.split_by, round(canary_percent, 2))
        wanted = with_rule(baseline, t.flag, t.variant, rule)
        return await self._deploy(wanted, None, f"{t.variant} at {canary_percent:g}%")

    async def promote(self) -> TrafficSplit:
        t = self.target
        baseline, _ = await self._expected()
        wanted = promoted(baseline, t.flag, t.variant)
        return await self._deploy(wanted, None, f"{t.variant} as the default")

    async def rollback(self) -> TrafficSplit:
        _, flying = await self._latest()
        if flying is not None and flying.get("ConfigurationProfileId") == await self._profile():
            number = int(flying["DeploymentNumber"])
            seen = await self._split_of(flying)
            # Ours, whether this process started it or one before a restart did: a document
            # of this rollout's that is not the stable one.
            if number in self._ours or seen.canary_weight not in (None, 0.0):
                await self._stop(number)
        baseline, _ = await self._expected()
        return await self._deploy(baseline, self._stable(), "stable", restoring=True)

    # ------------------------------------------------------------ writes

    async def _stop(self, number: int) -> None:
        try:
            await self._call(
                "stop_deployment",
                ApplicationId=await self._application(),
                EnvironmentId=await self._environment(),
                DeploymentNumber=number,
            )
        except PermanentError as exc:
            if "BadRequest" not in str(exc):  # already ended: nothing to stop
                raise

    async def _deploy(
        self,
        wanted: dict[str, Any],
        version: str | None,
        what: str,
        *,
        restoring: bool = False,
    ) -> TrafficSplit:
        """Deploy ``wanted`` (as ``version`` if it exists, else a new hosted version), wait
        for it, and return the split read back."""
        t = self.target
        live, flying = await self._latest()
        if live is not None:
            current = await self._document(str(live["ConfigurationVersion"]))
            if same(current, wanted):
                return await self._settled(live, what)
            seen = await self._split_of(live)
            if seen.canary_weight is None and not restoring:
                return seen  # someone else's document: drift, never overwritten
        if flying is not None:
            raise ConflictError(
                f"environment {t.environment!r} is busy with deployment "
                f"#{flying['DeploymentNumber']} (profile {flying.get('ConfigurationName')}, "
                f"{flying.get('State')}); AppConfig runs one deployment per environment at a time"
            )
        if version is None:
            body = json.dumps(wanted, separators=(",", ":")).encode()
            made = await self._call(
                "create_hosted_configuration_version",
                ApplicationId=await self._application(),
                ConfigurationProfileId=await self._profile(),
                Content=body,
                ContentType="application/json",
                Description=f"canary: flag {t.flag}, {what}"[:1024],
            )
            version = str(made["VersionNumber"])
            self._documents[version] = json.loads(body)
        try:
            started = await self._call(
                "start_deployment",
                ApplicationId=await self._application(),
                EnvironmentId=await self._environment(),
                DeploymentStrategyId=await self._strategy(),
                ConfigurationProfileId=await self._profile(),
                ConfigurationVersion=version,
                Description=f"canary: flag {t.flag}, {what}"[:1024],
            )
        except PermanentError as exc:
            if "ConflictException" in str(exc):
                raise ConflictError(
                    f"environment {t.environment!r} already has a deployment in progress "
                    f"({exc}); AppConfig runs one deployment per environment at a time"
                ) from None
            raise
        number = int(started["DeploymentNumber"])
        self._ours.add(number)
        return await self._settled(started, what)

    async def _settled(self, deployment: dict[str, Any], what: str) -> TrafficSplit:
        """The split of ``deployment`` once it is COMPLETE; waits a little, then hands the
        wait back to the engine (a ConflictError: it looks again later)."""
        number = int(deployment["DeploymentNumber"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_IN_CALL
        while True:
            state = deployment.get("State")
            if state == "COMPLETE":
                return await self._split_of(deployment)
            if state in ("ROLLED_BACK", "ROLLING_BACK"):
                raise PermanentError(
                    f"AppConfig rolled deployment #{number} ({what}) back: "
                    f"{self._last_event(deployment)}; see the environment's monitors (alarms)"
                )
            if loop.time() >= deadline:
                # Waited for, like a conflict, without a retry budget: a named strategy may
                # take an hour, and AppConfig ends every deployment (COMPLETE or rolled back).
                raise ConflictError(
                    f"deployment #{number} ({what}) is still {state} "
                    f"{deployment.get('PercentageComplete', 0):g}%; waiting for it to complete"
                )
            await asyncio.sleep(LOOK_EVERY)
            deployment = await self._deployment(number)

    @staticmethod
    def _last_event(deployment: dict[str, Any]) -> str:
        for event in deployment.get("EventLog") or []:
            if event.get("EventType") in ("ROLLBACK_STARTED", "ROLLBACK_COMPLETED"):
                return str(event.get("Description") or event.get("EventType"))
        return "no reason given"


def build(target: Target, stable: str | None, aws: AwsClients) -> AppConfigFlagStrategy:
    if not isinstance(target, AppConfigFlagTarget):
        raise TypeError(f"not an appconfig-flag target: {target.kind}")
    return AppConfigFlagStrategy(target, stable, aws)


KIND = TargetKind(
    name="appconfig-flag",
    spec=AppConfigFlagTarget,
    summary="AWS AppConfig feature flag: a variant's split rule, deployed step by step",
    clients=from_settings,
    build=build,
    canonical=canonical,
)

__all__ = ["KIND", "AppConfigFlagStrategy", "AppConfigFlagTarget", "StrategyError"]
