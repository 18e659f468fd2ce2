"""The kinds of target a rollout can move, and the fields each one needs.

One model per kind, chosen by ``kind``: an unknown kind is an error that lists the known
ones, never a silent default. Each target has a ``key`` naming the traffic it controls, so
the store can refuse a second live rollout on the same traffic.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
_VERSION = re.compile(r"^[0-9]{1,20}$")


class StrictModel(BaseModel):
    """Unknown fields are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _k8s_name(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise PydanticCustomError(
            "k8s_name",
            "{value} is not a Kubernetes name; use lower-case letters, digits, '-' and '.'",
            {"value": repr(value)},
        )
    return value


def _k8s_namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise PydanticCustomError(
            "k8s_namespace",
            "{value} is not a namespace name; use lower-case letters, digits and '-'",
            {"value": repr(value)},
        )
    return value


def _number_to_text(value: object) -> object:
    # `version: 42` in YAML is a number; a Lambda version number is meant, so take it.
    # JSON Schema's integer includes 42.0, so a whole float is the same number.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _lambda_version(value: str) -> str:
    if value == "$LATEST":
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


def _role_arn(value: str) -> str:
    if not _ROLE_ARN.match(value):
        raise PydanticCustomError(
            "role_arn",
            "{value} is not an IAM role ARN; expected arn:aws:iam::<account>:role/<name>",
            {"value": repr(value)},
        )
    return value


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise PydanticCustomError(
            "region",
            "{value} is not an AWS region name; expected e.g. eu-west-1",
            {"value": repr(value)},
        )
    return value


def _schema(pattern: re.Pattern[str], max_length: int | None = None) -> WithJsonSchema:
    """The JSON Schema of a checked string: the validator's own pattern (and length)."""
    found: dict[str, object] = {"type": "string", "pattern": pattern.pattern}
    return WithJsonSchema(found | ({"maxLength": max_length} if max_length else {}))


K8sName = Annotated[str, AfterValidator(_k8s_name), _schema(_DNS_SUBDOMAIN, 253)]
Namespace = Annotated[str, AfterValidator(_k8s_namespace), _schema(_DNS_LABEL, 63)]
NonEmpty = Annotated[str, Field(min_length=1)]
RoleArn = Annotated[str, AfterValidator(_role_arn), _schema(_ROLE_ARN)]
Region = Annotated[str, AfterValidator(_region), _schema(_REGION)]


class AwsTarget(StrictModel):
    region: Region | None = None
    role_arn: RoleArn | None = None

    def _region_key(self) -> str:
        return self.region or "default-region"


class LambdaAliasTarget(AwsTarget):
    kind: Literal["lambda-alias"]
    function: NonEmpty
    alias: NonEmpty
    version: Annotated[
        str,
        BeforeValidator(_number_to_text),
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

    def key(self) -> str:
        return f"lambda-alias/{self._region_key()}/{self.function}/{self.alias}"

    @property
    def canary_version(self) -> str:
        return self.version


class AppConfigFlagTarget(AwsTarget):
    kind: Literal["appconfig-flag"]
    application: NonEmpty
    environment: NonEmpty
    profile: NonEmpty
    flag: NonEmpty
    version: Annotated[str, BeforeValidator(_number_to_text), Field(min_length=1)]

    def key(self) -> str:
        return (
            f"appconfig-flag/{self._region_key()}/{self.application}/{self.environment}/"
            f"{self.profile}/{self.flag}"
        )

    @property
    def canary_version(self) -> str:
        return self.version


class K8sTarget(StrictModel):
    namespace: Namespace = "default"
    context: str | None = Field(default=None, description="kubeconfig context; default: current")

    def _prefix(self) -> str:
        return f"{self.context or 'current-context'}/{self.namespace}"


class K8sGatewayApiTarget(K8sTarget):
    kind: Literal["k8s-gateway-api"]
    route: K8sName = Field(description="HTTPRoute whose backendRefs carry the weights")
    stable_service: K8sName
    canary_service: K8sName

    def key(self) -> str:
        return f"k8s-gateway-api/{self._prefix()}/{self.route}"

    @property
    def canary_version(self) -> str:
        return self.canary_service


class K8sIstioTarget(K8sTarget):
    kind: Literal["k8s-istio"]
    virtual_service: K8sName
    host: NonEmpty = Field(description="destination host of the route, e.g. checkout")
    stable_subset: K8sName
    canary_subset: K8sName
    route: str | None = Field(default=None, description="named http route; default: the first")

    def key(self) -> str:
        return f"k8s-istio/{self._prefix()}/{self.virtual_service}/{self.route or '0'}"

    @property
    def canary_version(self) -> str:
        return self.canary_subset


class K8sNginxTarget(K8sTarget):
    kind: Literal["k8s-nginx"]
    ingress: K8sName = Field(description="the stable Ingress; a canary twin is managed beside it")
    canary_service: K8sName

    def key(self) -> str:
        return f"k8s-nginx/{self._prefix()}/{self.ingress}"

    @property
    def canary_version(self) -> str:
        return self.canary_service


class K8sSmiTarget(K8sTarget):
    kind: Literal["k8s-smi"]
    traffic_split: K8sName
    root_service: K8sName
    stable_service: K8sName
    canary_service: K8sName

    def key(self) -> str:
        return f"k8s-smi/{self._prefix()}/{self.traffic_split}"

    @property
    def canary_version(self) -> str:
        return self.canary_service


Target = Annotated[
    LambdaAliasTarget
    | AppConfigFlagTarget
    | K8sGatewayApiTarget
    | K8sIstioTarget
    | K8sNginxTarget
    | K8sSmiTarget,
    Field(discriminator="kind"),
]

TARGET_KINDS: tuple[str, ...] = (
    "lambda-alias",
    "appconfig-flag",
    "k8s-gateway-api",
    "k8s-istio",
    "k8s-nginx",
    "k8s-smi",
)
