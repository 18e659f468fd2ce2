"""How long a plan takes at a stated request rate, and whether its gates can judge at all.

A low-traffic service can write a spec that never decides: ``min_samples: 200`` at 20
requests a minute and 10% is 2 canary requests a minute, so a 5-minute window holds 10.
``canary validate --rate`` and ``canary simulate --rate`` answer that before any traffic
moves, from the spec alone: the plan's weights, bakes, ``max_bake``, the interval, and
what each counted gate needs in its window (its ``delay`` included):

* ``min_samples``: the canary's requests in the window;
* a ``statistical`` check, or a ``relative`` one bounded with values over the window
  (``analysis.gates.series_step``): that many slices of the window holding at least one
  request of each version (Mann-Whitney needs ``values_needed(confidence)`` of each; the
  relative bound is taken at 99%);
* a preset's value: at least one request.

The rate is the traffic of one target, all versions together, assumed steady; a step's
canary gets its weight's share, the stable version the rest. Evaluations follow the
machine's rule: the one at the bake's end, then one per interval while a ``max_bake``
allows (or while ``inconclusive_limit`` does, without one). Expected counts, not a
simulation of chance: a step judged "just in time" may take an interval longer.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from analysis.gates import delay_of, series_step
from analysis.judges import EVIDENCE
from config.durations import display_duration
from config.spec import Gate, RolloutDocument, values_needed

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/|per\s*)(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """Requests per second from ``20/min``, ``0.5/s`` or ``1200/h``; ValueError otherwise."""
    match = _RATE.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(
            f"{text!r} is not a request rate; write it like 20/min, 0.5/s or 1200/h (above 0)"
        )
    return float(match.group(1)) / _PER[match.group(2)]


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def per_minute(rate: float) -> str:
    return f"{_num(rate * 60)}/min"


@dataclass(frozen=True)
class Need:
    """What one gate needs in its window, and what it has at the step's evaluations."""

    gate: str
    what: str  # "samples" (canary requests) or "values" (slices with data, per version)
    needed: int
    at_bake: float
    at_last: float
    ready_at: float | None  # seconds into the step; None: not within the step


@dataclass(frozen=True)
class StepEstimate:
    step: int  # 1-based
    weight: float
    bake: float
    last_look: float  # the last evaluation the step allows (max_bake, or the limit)
    held: float  # expected time at this weight
    judged: bool | None  # None: nothing to judge (no bake, or no counted gates)
    approval: bool
    needs: list[Need] = field(default_factory=list)

    def line(self, rate: float) -> str:
        share = per_minute(rate * self.weight / 100)
        head = f"step {self.step}: {self.weight:g}% ({share} to the canary)"
        if self.bake == 0:
            return f"{head}: no bake, moves on at once (not judged)"
        parts = [f"bake {display_duration(self.bake)}"]
        if self.judged is None:
            parts.append("no counted gates: nothing to judge")
        elif self.judged:
            extra = self.held - self.bake
            parts.append(
                f"judged at {display_duration(self.held)}"
                + (f", {display_duration(extra)} after the bake's end" if extra > 0 else "")
            )
        else:
            parts.append(f"cannot judge by {display_duration(self.last_look)}")
        for need in self.needs:
            if self.judged and need.ready_at is not None and need.ready_at <= self.bake:
                continue
            unit = "canary request(s)" if need.what == "samples" else "values per version"
            parts.append(
                f"{need.gate} needs {need.needed} {unit} in its window, has ~{_num(need.at_bake)} "
                f"at the bake's end and ~{_num(need.at_last)} at "
                f"{display_duration(self.last_look)}"
            )
        if self.approval:
            parts.append("then waits for a person's approval")
        return f"{head}: " + "; ".join(parts)


@dataclass(frozen=True)
class PlanEstimate:
    rate: float  # requests per second, per target
    steps: list[StepEstimate]
    total: float  # seconds, approvals not counted
    can_judge: bool
    stops_at: int | None  # the 1-based step where on_inconclusive acts, if any
    on_inconclusive: str

    def lines(self) -> list[str]:
        out = [f"estimate at {per_minute(self.rate)} per target (all versions, steady):"]
        out += [f"  {s.line(self.rate)}" for s in self.steps]
        if self.can_judge:
            out.append(f"  plan: about {display_duration(self.total)}, every step can be judged")
        else:
            stuck = self.stops_at
            then = {
                "pause": "it pauses there for a person",
                "rollback": "it rolls back there",
                "continue": "on_inconclusive is continue: it moves on unjudged",
            }[self.on_inconclusive]
            out.append(
                f"  plan: cannot judge at step {stuck}; {then} (about "
                f"{display_duration(self.total)} in). Fix: set or raise max_bake, lengthen the "
                "gates' window, lower min_samples, or start at a higher weight"
            )
        return out

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate_per_minute"] = self.rate * 60
        return data


class _Traffic:
    """The canary's share over time: (start, weight) of each step so far."""

    def __init__(self) -> None:
        self.segments: list[tuple[float, float]] = []

    def requests(self, rate: float, start: float, end: float, canary: bool) -> float:
        """Expected requests of one version in [start, end)."""
        total = 0.0
        bounds = [*self.segments, (math.inf, 0.0)]
        for (s0, w), (s1, _) in itertools.pairwise(bounds):
            lo, hi = max(start, s0), min(end, s1)
            if hi > lo:
                share = w / 100 if canary else 1 - w / 100
                total += rate * share * (hi - lo)
        return total


def _gate_needs(gate: Gate) -> list[tuple[str, int, float | None]]:
    """(what, how many, slice step) the gate needs to decide."""
    needs: list[tuple[str, int, float | None]] = []
    if gate.min_samples:
        needs.append(("samples", gate.min_samples, None))
    elif gate.preset is not None:
        needs.append(("samples", 1, None))
    step = series_step(gate)
    if step:
        confidence = gate.statistical.confidence if gate.statistical else EVIDENCE
        needs.append(("values", values_needed(confidence), step))
    return needs


def _have(
    traffic: _Traffic, rate: float, gate: Gate, what: str, step: float | None, now: float
) -> float:
    end = now - delay_of(gate)
    start = end - gate.window
    if what == "samples":
        return traffic.requests(rate, start, end, canary=True)
    assert step is not None
    slices = int(gate.window // step)
    full = 0
    for i in range(slices):
        s0 = start + i * step
        canary = traffic.requests(rate, s0, s0 + step, canary=True)
        stable = traffic.requests(rate, s0, s0 + step, canary=False)
        full += canary >= 1 and stable >= 1
    return float(full)


def estimate(document: RolloutDocument, rate: float) -> PlanEstimate:
    """The plan of ``document`` at ``rate`` requests per second per target."""
    a = document.spec.analysis
    gates = [g for g in a.gates if not g.dry_run]
    traffic = _Traffic()
    clock = 0.0
    steps: list[StepEstimate] = []
    stops_at: int | None = None
    for index, step in enumerate(document.spec.steps):
        traffic.segments.append((clock, step.weight))
        max_bake = step.max_bake if step.max_bake is not None else a.max_bake
        if step.bake == 0:
            steps.append(StepEstimate(index + 1, step.weight, 0, 0, 0, None, step.approval))
            continue
        # The evaluations that can end the step: the bake's end, then one per interval.
        if max_bake is not None and max_bake > step.bake:
            looks = math.ceil((max_bake - step.bake) / a.interval)
        elif max_bake is not None:
            looks = 0
        else:
            looks = a.inconclusive_limit
        times = [step.bake + k * a.interval for k in range(looks + 1)]
        needs: list[Need] = []
        ready = [0.0]
        for gate in gates:
            for what, needed, slice_step in _gate_needs(gate):
                have = [_have(traffic, rate, gate, what, slice_step, clock + t) for t in times]
                at = next((t for t, h in zip(times, have, strict=True) if h >= needed), None)
                needs.append(Need(gate.name, what, needed, have[0], have[-1], at))
                ready.append(at if at is not None else math.inf)
        when = max(ready)
        judged: bool | None = None if not gates else when != math.inf
        held = when if judged else times[-1] if judged is False else step.bake
        steps.append(
            StepEstimate(
                index + 1, step.weight, step.bake, times[-1], held, judged, step.approval, needs
            )
        )
        clock += held
        if judged is False and stops_at is None:
            stops_at = index + 1
            if a.on_inconclusive != "continue":
                break
    return PlanEstimate(
        rate=rate,
        steps=steps,
        total=clock,
        can_judge=stops_at is None,
        stops_at=stops_at,
        on_inconclusive=a.on_inconclusive,
    )
