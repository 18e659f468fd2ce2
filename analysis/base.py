"""Measurements, verdicts, and the one-method protocol every metric provider implements.

Two rules shape this module. A missing number is ``None``, never zero: "no data" must not
look like "no errors". A provider that cannot answer raises ``ProviderError`` and the gate
becomes ERROR, which can never count towards a promotion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # a gate option of the prometheus provider, passed through untouched
    from analysis.prometheus import PresetOptions


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class MetricQuery:
    """One question for a provider: a gate's expression or preset, for one version.

    ``variables`` fill templates: ``canary_version``, ``stable_version``, ``weight``, the
    target's fields. ``elapsed`` is seconds since the rollout started (for scripted runs).
    ``samples_expression`` counts the requests the value rests on (presets have their own),
    asked on the canary side only. ``series_step``, when set, also asks for the metric's
    values over the window, one per step, for the statistical judge.
    """

    gate: str
    side: Literal["canary", "stable"]
    expression: str | None
    preset: str | None
    variables: Mapping[str, str] = field(default_factory=dict)
    weight: float = 0.0
    elapsed: float = 0.0
    # The gate's named metric stats (cloudwatch ``metrics``): plain data, for the provider.
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    samples_expression: str | None = None
    series_step: float | None = None
    preset_options: PresetOptions | None = None


@dataclass(frozen=True)
class Measurement:
    """A value and how many samples it rests on; ``None`` when the provider had no data.

    ``values`` are the metric's values over the window, one per ``series_step`` (only when
    the query asked for them); slices without data are left out.
    """

    value: float | None
    samples: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    values: tuple[float, ...] = ()


class ProviderError(Exception):
    """The provider could not answer (down, timed out, refused the query)."""


@runtime_checkable
class MetricProvider(Protocol):
    """Answers a batch of queries over one window: one evaluation, one round trip."""

    kind: ClassVar[str]

    async def query(
        self, queries: Sequence[MetricQuery], window: Window
    ) -> Sequence[Measurement | ProviderError]:
        """One result per query, in order; a whole-batch failure raises ProviderError."""
