"""Every target kind this canary drives: one line per kind, everything else derived.

``KINDS`` is the list. From it come the spec's union of targets (``TargetSpec``, which
``config.spec`` uses), the kind names in error messages, the JSON Schema and the README's
table of kinds. An unknown kind is an error, never a default (unlike Flagger's fallback to
a default provider), and a kind that is planned but not built yet is refused when the spec
is read, with the issue that will bring it.

To add a kind: write its module (spec model, strategy, ``KIND = TargetKind(...)``; see
``strategies/lambda_alias.py`` and docs/architecture.md, "Adding a target kind"), add its
line to ``KINDS``, and drop it from ``PLANNED``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from config.errors import shown
from config.targets import Target, TargetBase
from strategies import appconfig, k8s_gateway_api, k8s_istio, k8s_nginx, k8s_smi, lambda_alias
from strategies.base import NotImplementedKind, Strategy
from strategies.kind import CanonicalError, TargetKind

KINDS: tuple[TargetKind[Any, Any], ...] = (
    lambda_alias.KIND,
    k8s_gateway_api.KIND,
    k8s_istio.KIND,
    k8s_smi.KIND,
    k8s_nginx.KIND,
    appconfig.KIND,
)

PLANNED: Mapping[str, str] = {}
"""Kinds whose design exists (docs/planned-kinds.md) but no module yet -> the issue."""

BY_NAME: Mapping[str, TargetKind[Any, Any]] = {k.name: k for k in KINDS}


def kind_names() -> tuple[str, ...]:
    return tuple(BY_NAME)


if TYPE_CHECKING:
    TargetSpec = TargetBase
else:
    TargetSpec = Annotated[Union[tuple(k.spec for k in KINDS)], Field(discriminator="kind")]  # noqa: UP007


def unavailable(kind: object) -> str | None:
    """Why ``kind`` cannot be a target's kind here, or None when it can."""
    available = ", ".join(kind_names())
    if kind in BY_NAME:
        return None
    if isinstance(kind, str) and kind in PLANNED:
        return (
            f"target kind {kind!r} is not available in this version of canary (it is planned: "
            f"see the {PLANNED[kind]} issue); available: {available}"
        )
    if kind is None:
        return f"required field is missing; expected one of {available}"
    return f"unknown target kind {shown(kind)}; expected one of {available}"


StrategyFactory = Callable[[Target, str | None], Strategy]


class Clients:
    """What the daemon made for the kinds and providers: one object per client factory.

    Kinds and providers that name the same factory (``strategies.aws.from_settings``) share
    the object it makes. Nothing is made before it is asked for.
    """

    def __init__(
        self, settings: Any, made: Mapping[Callable[[Any], Any], Any] | None = None
    ) -> None:
        self.settings = settings
        # Objects made elsewhere, by the factory they stand for (the demo's and tests' own
        # AwsClients): ``Clients(None, {strategies.aws.from_settings: aws})``.
        self._made: dict[Callable[[Any], Any], Any] = dict(made or {})

    def get(self, factory: Callable[[Any], Any]) -> Any:
        if factory not in self._made:
            self._made[factory] = factory(self.settings)
        return self._made[factory]

    def close(self) -> None:
        for made in self._made.values():
            close = getattr(made, "close", None)
            if close is not None:
                close()
        self._made.clear()


def _kind(target: Target) -> TargetKind[Any, Any]:
    kind = BY_NAME.get(target.kind)
    if kind is None:
        raise NotImplementedKind(unavailable(target.kind) or target.kind)
    return kind


def create_strategy(target: Target, stable: str | None, clients: Clients) -> Strategy:
    """The strategy for ``target``; ``stable`` is the version recorded at the rollout's start."""
    kind = _kind(target)
    return kind.build(target, stable, clients.get(kind.clients))


def factory(clients: Clients) -> StrategyFactory:
    def build(target: Target, stable: str | None) -> Strategy:
        return create_strategy(target, stable, clients)

    return build


def canonical(target: Target, clients: Clients) -> Target:
    """``target`` in its kind's canonical form; raises ``CanonicalError`` naming the fix."""
    kind = _kind(target)
    result: Target = kind.canonical(target, clients.get(kind.clients))
    return result


__all__ = [
    "KINDS",
    "PLANNED",
    "CanonicalError",
    "Clients",
    "StrategyFactory",
    "TargetSpec",
    "canonical",
    "create_strategy",
    "factory",
    "kind_names",
    "unavailable",
]
