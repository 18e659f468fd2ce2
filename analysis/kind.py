"""What a metric provider declares: the one place a new provider is described.

A provider is one module (``analysis/prometheus.py`` is the model) ending in a ``PROVIDER =
ProviderKind(...)`` line, and one line in ``analysis/registry.py``. From these declarations
come the gate's ``provider`` choices, the presets each provider offers (and the units their
values are shown in), the daemon settings it reads, which checks it can serve, and the
README's table of providers.

Like a target kind, a provider names its own ``clients`` factory (the CloudWatch provider
names the AWS one, so it shares the daemon's ``AwsClients`` with the AWS kinds) and builds
nothing until the daemon asks; a provider that is not configured (no URL) builds to
``None`` and ``unconfigured`` says which setting turns it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from analysis.base import MetricProvider

C = TypeVar("C")


@runtime_checkable
class CheckedProvider(MetricProvider, Protocol):
    """A provider that can also say, cheaply, whether it can be reached."""

    async def health(self) -> None:
        """Return when the provider answers; raise ``ProviderError`` saying why not."""


@dataclass(frozen=True)
class Preset:
    """A ready-made gate metric of one provider."""

    name: str
    summary: str
    unit: str = ""
    """What the value is measured in, for verdicts a person can read ("0.61s")."""
    rate: bool = False
    """A share of requests with a known request count: a breach fails only beyond chance."""
    needs: tuple[str, ...] = ()
    """Target fields its queries read (``function``, ``alias``): every target a gate with
    this preset judges must have them, besides ``canary_version`` and ``stable_version``."""


@dataclass(frozen=True)
class ProviderKind(Generic[C]):
    """One metric provider: its name, presets, settings, health and builder."""

    name: str
    """What a gate's ``provider`` says."""
    summary: str
    """One line for the README's table of providers."""
    presets: tuple[Preset, ...]
    series: bool
    """Answers a metric's values over the window (what a ``statistical`` check needs)."""
    settings: type[BaseModel] | None
    """Its daemon settings (fields ``<name>_*``, read as ``CANARY_<NAME>_*``), or None."""
    clients: Callable[[Any], C]
    build: Callable[[Any, C], CheckedProvider | None]
    """(settings, clients) -> the provider, or None when the settings do not turn it on."""
    unconfigured: str = ""
    """Why ``build`` gave None, with the setting that fixes it."""
    delay: float = 0.0
    """How late its metrics arrive, in seconds: a gate's windows end this long before now
    (the gate's ``delay`` overrides it), so the newest part of a window is not half empty."""

    resolution: float = 0.0
    """The step of the values a relative check is bounded with is at least this (CloudWatch:
    60 s, the period AWS services publish at); a statistical check names its own step."""
    routed_by: tuple[str, ...] = ()
    """Target fields that say where its queries go (cloudwatch: ``region``, ``role_arn``):
    targets that differ in them are asked apart, even by a gate that names none of them."""

    def preset(self, name: str) -> Preset | None:
        return next((p for p in self.presets if p.name == name), None)


def no_clients(settings: Any) -> None:
    """For a provider or kind that needs nothing from the daemon beyond its settings."""
    return None
