"""What every target in a spec shares, and the field types target kinds build on.

The kinds themselves are not declared here: each kind is one module beside its strategy
(``strategies/lambda_alias.py``), registered in ``strategies/registry.py``, and the spec's
union of targets is derived from that registry. This module stays below them: field types
(regions, role ARNs), ``StrictModel`` and ``TargetBase``, the interface the engine, the
store and the templates use without knowing the kind.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

_ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")

DEFAULT_REGION_KEY = "default-region"
"""Stands for the daemon's region in the key of a target that names none: only seen where
no daemon made the target canonical (``canary simulate``, tests)."""


class StrictModel(BaseModel):
    """Unknown fields are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def number_to_text(value: object) -> object:
    """``version: 42`` in YAML is a number; a version name is meant, so take it as text.
    JSON Schema's integer includes 42.0, so a whole float is the same number."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _role_arn(value: str) -> str:
    if not _ROLE_ARN.match(value):
        raise PydanticCustomError(
            "role_arn",
            "{value} is not an IAM role ARN; expected arn:aws:iam::<account>:role/<name>",
            {"value": repr(value)},
        )
    return value


def valid_region(value: str) -> bool:
    return bool(_REGION.match(value))


def _region(value: str) -> str:
    if not valid_region(value):
        raise PydanticCustomError(
            "region",
            "{value} is not an AWS region name; expected e.g. eu-west-1",
            {"value": repr(value)},
        )
    return value


def schema_of(pattern: re.Pattern[str], max_length: int | None = None) -> WithJsonSchema:
    """The JSON Schema of a checked string: the validator's own pattern (and length)."""
    found: dict[str, object] = {"type": "string", "pattern": pattern.pattern}
    return WithJsonSchema(found | ({"maxLength": max_length} if max_length else {}))


NonEmpty = Annotated[str, Field(min_length=1)]
RoleArn = Annotated[str, AfterValidator(_role_arn), schema_of(_ROLE_ARN)]
Region = Annotated[str, AfterValidator(_region), schema_of(_REGION)]


class TargetBase(StrictModel):
    """One target of a rollout, whatever its kind.

    ``key()`` names the traffic it controls: the store refuses a second live rollout on a
    key, so a kind's canonical form (``strategies.kind.TargetKind.canonical``) must give
    the same key to every way of naming the same traffic.
    """

    kind: str

    def key(self) -> str:
        raise NotImplementedError

    @property
    def canary_version(self) -> str:
        """The value of ``{{ canary_version }}`` in gate queries."""
        raise NotImplementedError


Target = TargetBase
"""What code outside the spec sees of a target (the union lives in ``strategies.registry``)."""


class AwsTarget(TargetBase):
    """Fields every AWS target has; the region is filled in from the daemon's at submit."""

    region: Region | None = None
    role_arn: RoleArn | None = None

    def _region_key(self) -> str:
        return self.region or DEFAULT_REGION_KEY
