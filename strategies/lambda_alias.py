"""Lambda alias weights: the stable version stays primary, the canary gets the extra weight.

This module is the whole ``lambda-alias`` kind: its spec model (``LambdaAliasTarget``), its
canonical form, its strategy and its declaration (``KIND``, registered in
``strategies/registry.py``).

What AWS allows shapes every write. An alias routes to at most two published versions
(never ``$LATEST``): its ``FunctionVersion`` and one entry in
``RoutingConfig.AdditionalVersionWeights`` (a fraction, 0.0-1.0). Both versions need the
same execution role and the same dead-letter config. So ``shift(w)`` keeps the stable
version primary and weights the canary ``w/100``; ``shift(0)`` and ``rollback()`` empty the
routing; ``promote()`` makes the canary primary with empty routing.

``UpdateAlias`` takes the ``RevisionId`` this strategy last read and fails with 412
(PreconditionFailedException) when someone changed the alias since: that is a
``ConflictError``, and the engine looks before writing again (drift if the split is not
ours). Every write is read back with ``GetAlias``: what the alias serves is what counts.

One alias has one key, however it is named: a function ARN (``arn:aws:lambda:us-east-1:
123456789012:function:checkout-api``, optionally ``:live``) is reduced to its name, region,
account and alias when the spec is read, and the daemon's region is filled in at submit
(``canonical``), so ``lambda-alias/us-east-1/checkout-api/live`` is the only key of it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from config.targets import AwsTarget, Target, number_to_text, valid_region
from strategies.aws import AwsClients, AwsNotFound, from_settings
from strategies.base import ConflictError, PermanentError, TrafficSplit
from strategies.kind import TargetKind

LATEST = "$LATEST"

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FUNCTION_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[^:]+):(?P<account>[0-9]{12}):"
    r"function:(?P<name>[^:]+)(?::(?P<qualifier>[^:]+))?$"
)
_ARN_EXAMPLE = "arn:aws:lambda:us-east-1:123456789012:function:checkout-api"


_VERSION = re.compile(r"^[0-9]{1,20}$")


def _lambda_version(value: str) -> str:
    if value == LATEST:
        raise PydanticCustomError(
            "lambda_latest",
            "$LATEST cannot take weighted traffic; publish a version "
            "(aws lambda publish-version) and give its number",
        )
    if not _VERSION.match(value):  # ASCII digits: "４２".isdigit() is true
        raise PydanticCustomError(
            "lambda_version",
            "{value} is not a published version number; give the number that "
            'publish-version returned, e.g. "42"',
            {"value": repr(value)},
        )
    return value


def _problems(*found: tuple[str, str]) -> PydanticCustomError:
    """Several located problems at once (``config.errors`` reports each at its path)."""
    return PydanticCustomError(
        "spec_problems",
        "; ".join(message for _, message in found),
        {"problems": [([field], message) for field, message in found]},
    )


def _from_arn(data: dict[str, Any]) -> dict[str, Any]:
    """A target naming its function by ARN, reduced to its name, region and account.

    The ARN may carry the alias as its qualifier (``...:function:checkout-api:live``); it
    must then be the target's ``alias``. A version qualifier names no alias: refused.
    """
    function = str(data["function"])
    match = _FUNCTION_ARN.match(function)
    if match is None:
        raise _problems(
            (
                "function",
                f"{function!r} is not a Lambda function ARN; give the function's name "
                f"(checkout-api) or its ARN ({_ARN_EXAMPLE}, optionally :<alias>)",
            )
        )
    found: list[tuple[str, str]] = []
    region, account, qualifier = match["region"], match["account"], match["qualifier"]
    if not valid_region(region):
        found.append(("function", f"the ARN's region {region!r} is not an AWS region name"))
    if data.get("region") not in (None, region):
        found.append(
            (
                "region",
                f"{data['region']!r} differs from the function ARN's region {region!r}; "
                "remove region or make them agree",
            )
        )
    if qualifier is not None and (qualifier == LATEST or _VERSION.match(qualifier) is not None):
        found.append(
            (
                "function",
                f"the ARN is qualified with version {qualifier}, not an alias; name the "
                "alias (...:function:<name>:<alias>) or leave the qualifier out",
            )
        )
    elif qualifier is not None and data.get("alias") != qualifier:
        found.append(
            (
                "alias",
                f"{data.get('alias')!r} differs from the alias in the function ARN "
                f"({qualifier!r}); set alias: {qualifier}, or drop the ARN's qualifier",
            )
        )
    role = data.get("role_arn")
    role_account = (
        str(role).split(":")[4] if isinstance(role, str) and role.count(":") >= 5 else None
    )
    if role_account is not None and role_account != account:
        found.append(
            (
                "role_arn",
                f"is in account {role_account} but the function ARN in account {account}; "
                "assume a role in the function's account",
            )
        )
    if found:
        raise _problems(*found)
    return data | {"function": match["name"], "region": region, "account": account}


class LambdaAliasTarget(AwsTarget):
    """A Lambda alias: its weights move between the stable version and ``version``."""

    kind: Literal["lambda-alias"]
    function: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "anyOf": [
                    {"pattern": _FUNCTION_NAME.pattern},
                    {"pattern": re.sub(r"\?P<\w+>", "", _FUNCTION_ARN.pattern)},  # ECMA regex
                ],
            }
        ),
    ] = Field(
        description="the function's name, or its ARN (the region, account and an :alias "
        "qualifier are taken from it)"
    )
    alias: str = Field(min_length=1, description="the alias your callers invoke")
    version: Annotated[
        str,
        BeforeValidator(number_to_text),
        AfterValidator(_lambda_version),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "pattern": _VERSION.pattern},
                    {"type": "integer", "minimum": 0, "maximum": 10**20 - 1},
                ],
                "description": 'a published version number, e.g. "42" ($LATEST cannot be one)',
            }
        ),
    ]
    account: str | None = Field(
        default=None,
        pattern=r"^[0-9]{12}$",
        description="the function's AWS account (taken from an ARN); checked at preflight",
    )

    @model_validator(mode="before")
    @classmethod
    def _arn(cls, data: Any) -> Any:
        if isinstance(data, dict) and str(data.get("function", "")).startswith("arn:"):
            return _from_arn(data)
        return data

    @model_validator(mode="after")
    def _function_name(self) -> LambdaAliasTarget:
        if not _FUNCTION_NAME.match(self.function):
            raise _problems(
                (
                    "function",
                    f"{self.function!r} is not a Lambda function name (1-64 letters, digits, "
                    f"'-' and '_'); give the name or the full ARN ({_ARN_EXAMPLE})",
                )
            )
        return self

    def key(self) -> str:
        return f"lambda-alias/{self._region_key()}/{self.function}/{self.alias}"

    @property
    def canary_version(self) -> str:
        return self.version


def canonical(target: LambdaAliasTarget, aws: AwsClients) -> LambdaAliasTarget:
    """The daemon's region filled in: an alias named with or without it has one key."""
    if target.region is not None:
        return target
    return target.model_copy(update={"region": aws.region_for_unnamed()})


def routing(alias: dict[str, Any]) -> dict[str, float]:
    """The alias's additional version weights (fractions), ``{}`` when there are none."""
    config = alias.get("RoutingConfig") or {}
    weights = config.get("AdditionalVersionWeights") or {}
    return {str(version): float(weight) for version, weight in weights.items()}


def describe_alias(alias: dict[str, Any]) -> str:
    """``1 + 2 at 10%``: the primary version and any weighted one."""
    text = str(alias["FunctionVersion"])
    for version, weight in routing(alias).items():
        text += f" + {version} at {weight * 100:g}%"
    return text


class LambdaAliasStrategy:
    kind: ClassVar[str] = "lambda-alias"

    def __init__(self, target: LambdaAliasTarget, stable: str | None, aws: AwsClients) -> None:
        self.target = target
        self.canary = target.version
        self.stable = stable
        self.aws = aws
        self._revision: str | None = None  # RevisionId of the alias as last read

    # ------------------------------------------------------------ reads

    @property
    def _where(self) -> str:
        region = self.target.region or self.aws.region
        return f" in {region}" if region else ""

    async def _lambda(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.aws.call(
            "lambda",
            method,
            region=self.target.region,
            role_arn=self.target.role_arn,
            FunctionName=self.target.function,
            **params,
        )

    async def _get_alias(self) -> dict[str, Any]:
        t = self.target
        try:
            alias = await self._lambda("get_alias", Name=t.alias)
        except AwsNotFound:
            raise PermanentError(
                f"alias {t.alias} of function {t.function} does not exist{self._where}; create "
                f"it on the stable version (aws lambda create-alias --function-name {t.function} "
                f"--name {t.alias} --function-version <stable version>), or check the function "
                "and region"
            ) from None
        self._revision = alias.get("RevisionId")
        return alias

    async def _version(self, version: str, which: str) -> dict[str, Any]:
        t = self.target
        try:
            return await self._lambda("get_function_configuration", Qualifier=version)
        except AwsNotFound:
            raise PermanentError(
                f"the {which} version {version} of function {t.function} does not exist"
                f"{self._where}; publish it (aws lambda publish-version --function-name "
                f"{t.function}) and give the version number it returns"
            ) from None

    def _split(self, alias: dict[str, Any]) -> TrafficSplit:
        primary = str(alias["FunctionVersion"])
        weights = routing(alias)
        stable = self.stable or primary
        detail = describe_alias(alias)
        if not {primary, *weights} <= {stable, self.canary}:
            return TrafficSplit(None, stable=stable, detail=detail)  # a third version
        if primary == stable:
            share = weights.get(self.canary, 0.0) * 100
        else:  # the canary is primary: whatever is left goes to stable
            share = 100 - weights.get(stable, 0.0) * 100
        return TrafficSplit(share, stable=stable, detail=detail)

    # ------------------------------------------------------------ the protocol

    async def validate(self) -> None:
        t = self.target
        try:
            await self._lambda("get_function_configuration")
        except AwsNotFound:
            raise PermanentError(
                f"function {t.function} does not exist{self._where}; check the target's "
                "function and region"
            ) from None
        alias = await self._get_alias()
        stable = self.stable or str(alias["FunctionVersion"])
        self._check_account(alias)
        problems: list[str] = []
        if stable == LATEST:
            problems.append(
                f"alias {t.alias} points at $LATEST, which cannot take weighted traffic; point "
                f"it at a published version first (aws lambda update-alias --function-name "
                f"{t.function} --name {t.alias} --function-version <version>)"
            )
        if self.canary == LATEST:
            problems.append(
                "the canary is $LATEST, which cannot take weighted traffic; publish a version "
                "and give its number"
            )
        if self.canary == stable:
            problems.append(
                f"version {self.canary} is already the version alias {t.alias} serves (the "
                "stable version); publish the new code as a new version and give that number"
            )
        for version, weight in routing(alias).items():
            if version != self.canary:
                problems.append(
                    f"alias {t.alias} already routes {weight * 100:g}% to version {version}, a "
                    "third version; finish or undo that first (aws lambda update-alias "
                    f"--function-name {t.function} --name {t.alias} --routing-config "
                    "AdditionalVersionWeights={})"
                )
        if problems:
            raise PermanentError("; ".join(problems))
        canary = await self._version(self.canary, "canary")
        current = await self._version(stable, "stable")
        if canary.get("Role") != current.get("Role"):
            problems.append(
                f"the canary version {self.canary} runs as {canary.get('Role')} but the stable "
                f"version {stable} as {current.get('Role')}; an alias can only split traffic "
                "between versions with the same execution role: publish the canary with the "
                "stable version's role"
            )
        dlq = [(c.get("DeadLetterConfig") or {}).get("TargetArn") for c in (canary, current)]
        if dlq[0] != dlq[1]:
            problems.append(
                f"the canary version {self.canary} has dead-letter queue {dlq[0] or 'none'} but "
                f"the stable version {stable} has {dlq[1] or 'none'}; an alias can only split "
                "traffic between versions with the same dead-letter config: publish the canary "
                "with the stable version's DeadLetterConfig"
            )
        if problems:
            raise PermanentError("; ".join(problems))

    def _check_account(self, alias: dict[str, Any]) -> None:
        """An ARN's account is checked, never dropped: the daemon may reach another one."""
        arn = str(alias.get("AliasArn", ""))
        found = arn.split(":")[4] if arn.count(":") >= 5 else None
        if self.target.account is not None and found and found != self.target.account:
            raise PermanentError(
                f"function {self.target.function}{self._where} is in account {found}, not "
                f"{self.target.account} as its ARN says; run the daemon with credentials (or a "
                "role_arn) of the function's account"
            )

    async def observe(self) -> TrafficSplit:
        alias = await self._get_alias()
        if self.stable is None:  # the rollout's start: the alias's version is the stable one
            self.stable = str(alias["FunctionVersion"])
        return self._split(alias)

    async def shift(self, canary_percent: float) -> TrafficSplit:
        stable = self._known_stable()
        if canary_percent <= 0:
            return await self._write(stable, {})
        return await self._write(stable, {self.canary: round(canary_percent / 100, 4)})

    async def promote(self) -> TrafficSplit:
        return await self._write(self.canary, {})

    async def rollback(self) -> TrafficSplit:
        stable = self._known_stable()
        try:
            return await self._write(stable, {})
        except ConflictError:
            # Restoring stable is the safe action even over a change made meanwhile: read
            # the new revision and write once more.
            await self._get_alias()
            return await self._write(stable, {})

    # ------------------------------------------------------------ writes

    def _known_stable(self) -> str:
        if self.stable is None:
            raise PermanentError(
                "the stable version of this rollout was never recorded; abort the rollout "
                "and start a new one"
            )
        return self.stable

    async def _write(self, primary: str, weights: dict[str, float]) -> TrafficSplit:
        if self._revision is None:
            await self._get_alias()
        params: dict[str, Any] = {
            "Name": self.target.alias,
            "FunctionVersion": primary,
            "RoutingConfig": {"AdditionalVersionWeights": weights},
        }
        if self._revision is not None:
            params["RevisionId"] = self._revision
        try:
            await self._lambda("update_alias", **params)
        except ConflictError as exc:
            self._revision = None  # stale: the next write reads the alias first
            raise ConflictError(
                f"alias {self.target.alias} of {self.target.function} was changed by someone "
                f"else since canary last read it ({exc})"
            ) from None
        return self._split(await self._get_alias())  # the read-back


def build(target: Target, stable: str | None, aws: AwsClients) -> LambdaAliasStrategy:
    if not isinstance(target, LambdaAliasTarget):
        raise TypeError(f"not a lambda-alias target: {target.kind}")
    return LambdaAliasStrategy(target, stable, aws)


KIND = TargetKind(
    name="lambda-alias",
    spec=LambdaAliasTarget,
    summary="AWS Lambda alias weights between the alias's version and a published canary",
    clients=from_settings,
    build=build,
    canonical=canonical,
)
