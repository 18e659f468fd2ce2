"""Every metric provider this canary can ask: one line per provider, everything else derived.

From ``PROVIDERS`` come a gate's ``provider`` choices and presets (``config.spec``), the
units and rate rules of the presets (``analysis.judges``), the daemon settings of each
provider (``config.settings``), the providers the daemon builds (``canary.daemon``) and the
README's table of providers.

To add a provider: write its module (its provider class with ``query`` and ``health``, its
presets, settings and ``PROVIDER = ProviderKind(...)``; see ``analysis/prometheus.py`` and
docs/architecture.md, "Adding a metric provider") and add its line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis import cloudwatch, prometheus
from analysis.kind import Preset, ProviderKind

PROVIDERS: tuple[ProviderKind[Any], ...] = (
    cloudwatch.PROVIDER,
    prometheus.PROVIDER,
)

BY_NAME: Mapping[str, ProviderKind[Any]] = {p.name: p for p in PROVIDERS}


def provider_names() -> tuple[str, ...]:
    return tuple(BY_NAME)


def preset(provider: str, name: str | None) -> Preset | None:
    """The preset ``name`` of ``provider``; None for no preset (or an unknown one)."""
    kind = BY_NAME.get(provider)
    return kind.preset(name) if kind is not None and name is not None else None
