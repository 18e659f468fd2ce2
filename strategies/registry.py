"""From a target in a spec to the strategy that drives it: one entry per kind.

Unlike Flagger's fallback to a default provider, an unknown kind is an error, and a kind
the spec accepts but no strategy implements yet says so plainly at preflight.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from config.targets import TARGET_KINDS, Target
from strategies.base import NotImplementedKind, Strategy

if TYPE_CHECKING:
    from strategies.aws import AwsClients


@dataclass(frozen=True)
class StrategyContext:
    """What every strategy may need from the daemon's settings."""

    aws_endpoint_url: str | None = None
    # The daemon's shared boto3 clients and thread pool; AWS strategies make their own
    # (from aws_endpoint_url) when this is None.
    aws: AwsClients | None = None


Builder = Callable[[Target, str | None, StrategyContext], Strategy]
StrategyFactory = Callable[[Target, str | None], Strategy]

# kind -> "module:function" of its builder, imported on first use so that a daemon (or a
# simulation) never pays for an SDK it does not drive.
BUILTIN: dict[str, str] = {
    "lambda-alias": "strategies.lambda_alias:build",
}

_BUILDERS: dict[str, Builder] = {}


def register(kind: str, builder: Builder) -> None:
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r}; known: {', '.join(TARGET_KINDS)}")
    _BUILDERS[kind] = builder


def implemented_kinds() -> list[str]:
    return [k for k in TARGET_KINDS if k in _BUILDERS or k in BUILTIN]


def _builder(kind: str) -> Builder | None:
    if kind not in _BUILDERS and kind in BUILTIN:
        module, _, name = BUILTIN[kind].partition(":")
        _BUILDERS[kind] = getattr(importlib.import_module(module), name)
    return _BUILDERS.get(kind)


def create_strategy(
    target: Target, stable: str | None, context: StrategyContext | None = None
) -> Strategy:
    """The strategy for ``target``; ``stable`` is the version recorded at the rollout's start."""
    builder = _builder(target.kind)
    if builder is None:
        raise NotImplementedKind(
            f"target kind {target.kind} is not implemented yet in this canary version "
            f"(implemented: {', '.join(implemented_kinds()) or 'none'})"
        )
    return builder(target, stable, context or StrategyContext())


def factory(context: StrategyContext) -> StrategyFactory:
    def build(target: Target, stable: str | None) -> Strategy:
        return create_strategy(target, stable, context)

    return build
