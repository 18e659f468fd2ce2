"""Judges: pure functions from measurements to a verdict and the sentence that explains it.

A verdict nobody can explain will not be trusted with production traffic, so every result
carries the numbers it was made on, in words: ``error-rate 0.05 > max 0.01 → FAIL``.
Too few samples or no data is INCONCLUSIVE, never PASS.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from analysis.base import Measurement, Verdict
from config.spec import Gate


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: Verdict
    explanation: str
    value: float | None = None
    stable_value: float | None = None
    samples: float | None = None

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> GateResult:
        return cls(**{**data, "verdict": Verdict(data["verdict"])})


def fmt(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:.4g}"


def usable(value: float | None) -> float | None:
    """A finite number, or None: NaN and infinities (0/0 rates) are no data."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


def judge_threshold(gate: Gate, canary: Measurement, stable: Measurement | None) -> GateResult:
    value = usable(canary.value)
    stable_value = usable(stable.value) if stable is not None else None
    vs = f" (stable {fmt(stable_value)})" if stable_value is not None else ""

    def result(verdict: Verdict, because: str) -> GateResult:
        return GateResult(
            gate=gate.name,
            verdict=verdict,
            explanation=f"{gate.name} {because}{vs} → {verdict.value}",
            value=value,
            stable_value=stable_value,
            samples=canary.samples,
        )

    if value is None:
        return result(Verdict.INCONCLUSIVE, "has no data for the canary")
    if gate.min_samples:
        samples = canary.samples
        if samples is None:
            return result(
                Verdict.INCONCLUSIVE,
                f"{fmt(value)} comes without a sample count, and min_samples is {gate.min_samples}",
            )
        if samples < gate.min_samples:
            return result(
                Verdict.INCONCLUSIVE,
                f"{fmt(value)} rests on {fmt(samples)} samples < min_samples {gate.min_samples}",
            )
    if gate.max is not None and value > gate.max:
        return result(Verdict.FAIL, f"{fmt(value)} > max {fmt(gate.max)}")
    if gate.min is not None and value < gate.min:
        return result(Verdict.FAIL, f"{fmt(value)} < min {fmt(gate.min)}")
    bounds = []
    if gate.min is not None:
        bounds.append(f"≥ min {fmt(gate.min)}")
    if gate.max is not None:
        bounds.append(f"≤ max {fmt(gate.max)}")
    return result(Verdict.PASS, f"{fmt(value)} {' and '.join(bounds)}")


def judge(gate: Gate, canary: Measurement, stable: Measurement | None) -> GateResult:
    """The verdict of ``gate`` on one evaluation's measurements."""
    return judge_threshold(gate, canary, stable)


def error_result(gate: str, why: str) -> GateResult:
    return GateResult(gate=gate, verdict=Verdict.ERROR, explanation=f"{gate} {why} → ERROR")
