"""Judges: pure functions from measurements to a verdict and the sentence that explains it.

A verdict nobody can explain will not be trusted with production traffic, so every result
carries the numbers it was made on, in words: ``p95 0.61s vs stable 0.32s: +91% > allowed
+20% → FAIL``. Too few samples or no data is INCONCLUSIVE, never PASS.

A gate can hold up to three checks on the same measurement; each gives its own verdict and
clause, and the gate takes the worst: any FAIL fails it, then any INCONCLUSIVE.

* threshold: ``max``/``min`` on the canary's value;
* relative: the canary's value against the stable version's, an allowed increase in % and/or
  absolute (the larger allowance wins, so a tiny stable error rate does not turn +0.01
  points into +100%);
* statistical: Mann-Whitney U of the canary's values against the stable's over the window,
  one-sided (is the canary higher?), failing only when significant at the gate's confidence
  *and* the canary's median is higher by at least the effect-size floor, so a
  significant-but-negligible shift on a busy service is not a rollback.

Error-rate presets measure a share of requests and know how many requests it rests on, so
their threshold and relative checks ask whether a breach is beyond chance (one-sided
binomial test at 99%): 3 errors in 200 requests is not evidence of a rate above 1%. A
breach that is not yet beyond chance is INCONCLUSIVE (keep watching), never PASS. And
``min_samples`` guards PASS, not FAIL: below it a gate is INCONCLUSIVE unless a check
fails beyond chance (binomial or Mann-Whitney), which is evidence however few the samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from analysis.base import Measurement, Verdict
from analysis.registry import preset
from config.spec import Gate, Relative, Statistical, significance, values_needed

# Confidence of the binomial tests on those shares. 99%, not 95%: a gate is tested at every
# interval (60 times in the default plan), and every test is a chance of a false alarm.
EVIDENCE = 0.99


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: Verdict
    explanation: str
    value: float | None = None
    stable_value: float | None = None
    samples: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

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


def fmt_percent(value: float) -> str:
    if math.isinf(value):
        return "+∞%" if value > 0 else "-∞%"
    text = f"{value:+.0f}" if abs(value) >= 10 else f"{value:+.2g}"
    return f"{text}%"


def usable(value: float | None) -> float | None:
    """A finite number, or None: NaN and infinities (0/0 rates) are no data."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


@dataclass(frozen=True)
class Clause:
    """One check's verdict and its words (without the gate name or the arrow).

    ``significant``: a FAIL backed by a statistical test, which stands even below
    ``min_samples``.
    """

    verdict: Verdict
    text: str
    mentions_stable: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    significant: bool = False


@dataclass(frozen=True)
class Counts:
    """A share of requests as counts: ``errors`` of ``requests``."""

    errors: int
    requests: int

    def p_above(self, rate: float) -> float:
        """P(at least this many errors | the true share is ``rate``): small is evidence."""
        from scipy.stats import binom  # imported here: scipy is slow to load

        return float(binom.sf(self.errors - 1, self.requests, min(1.0, max(0.0, rate))))

    def p_below(self, rate: float) -> float:
        from scipy.stats import binom

        return float(binom.cdf(self.errors, self.requests, min(1.0, max(0.0, rate))))


def fmt_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _breach(text: str, counts: Counts | None, p: float | None) -> Clause:
    """A value beyond its limit: FAIL, or INCONCLUSIVE when the counts say it may be chance."""
    if counts is None or p is None:
        return Clause(Verdict.FAIL, text)
    alpha = significance(EVIDENCE)
    evidence = f"{counts.errors} of {counts.requests} requests"
    if p < alpha:
        return Clause(
            Verdict.FAIL,
            f"{text}: {evidence}, beyond chance ({fmt_p(p)})",
            detail={"p_value": p},
            significant=True,
        )
    return Clause(
        Verdict.INCONCLUSIVE,
        f"{text}: {evidence}, not beyond chance yet ({fmt_p(p)} ≥ {alpha:g})",
        detail={"p_value": p},
    )


def _percent_over(value: float, base: float) -> float:
    if base > 0:
        return (value - base) / base * 100
    return 0.0 if value <= base else math.inf


def check_threshold(gate: Gate, value: float, unit: str, counts: Counts | None = None) -> Clause:
    if gate.max is not None and value > gate.max:
        p = counts.p_above(gate.max) if counts else None
        return _breach(f"> max {fmt(gate.max)}{unit}", counts, p)
    if gate.min is not None and value < gate.min:
        p = counts.p_below(gate.min) if counts else None
        return _breach(f"< min {fmt(gate.min)}{unit}", counts, p)
    bounds = []
    if gate.min is not None:
        bounds.append(f"≥ min {fmt(gate.min)}{unit}")
    if gate.max is not None:
        bounds.append(f"≤ max {fmt(gate.max)}{unit}")
    return Clause(Verdict.PASS, " and ".join(bounds))


def check_relative(
    rel: Relative, value: float, stable: float | None, unit: str, counts: Counts | None = None
) -> Clause:
    if stable is None:
        return Clause(
            Verdict.INCONCLUSIVE, "vs stable: no data for the stable version", mentions_stable=True
        )
    increase = value - stable
    by_percent = rel.max_increase_percent / 100 * abs(stable) if rel.max_increase_percent else 0.0
    allowed = max(by_percent, rel.max_increase or 0.0)
    percent = _percent_over(value, stable)
    if rel.max_increase is None:  # only a percentage allowed: speak in percent
        said, limit = fmt_percent(percent), fmt_percent(rel.max_increase_percent or 0.0)
    elif rel.max_increase_percent is None:
        said, limit = f"{increase:+.4g}{unit}", f"+{fmt(allowed)}{unit}"
    else:
        said = f"{increase:+.4g}{unit} ({fmt_percent(percent)})"
        limit = (
            f"+{fmt(allowed)}{unit} ({fmt_percent(rel.max_increase_percent)} or "
            f"+{fmt(rel.max_increase)}{unit}, whichever is larger)"
        )
    detail = {"increase": increase, "allowed_increase": allowed}
    if increase <= allowed:
        return Clause(
            Verdict.PASS,
            f"vs stable {fmt(stable)}{unit}: {said} ≤ allowed {limit}",
            mentions_stable=True,
            detail=detail,
        )
    p = counts.p_above(stable + allowed) if counts else None
    breach = _breach(f"vs stable {fmt(stable)}{unit}: {said} > allowed {limit}", counts, p)
    return Clause(
        breach.verdict,
        breach.text,
        mentions_stable=True,
        detail=detail | breach.detail,
        significant=breach.significant,
    )


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if usable(v) is not None]


def mann_whitney_greater(canary: Sequence[float], stable: Sequence[float]) -> float:
    """One-sided p-value that the canary's values are higher than the stable's."""
    from scipy.stats import mannwhitneyu  # imported here: scipy is slow to load

    return float(mannwhitneyu(canary, stable, alternative="greater").pvalue)


def check_statistical(
    stat: Statistical, canary: Measurement, stable: Measurement | None, unit: str
) -> Clause:
    ours = _finite(canary.values)
    theirs = _finite(stable.values) if stable is not None else []
    needed = values_needed(stat.confidence)
    if len(ours) < needed or len(theirs) < needed:
        return Clause(
            Verdict.INCONCLUSIVE,
            f"only {len(ours)} canary and {len(theirs)} stable value(s); Mann-Whitney needs "
            f"{needed} of each for confidence {stat.confidence:g}",
            mentions_stable=True,
        )
    alpha = significance(stat.confidence)
    p = mann_whitney_greater(ours, theirs)
    med_c, med_s = median(ours), median(theirs)
    effect = _percent_over(med_c, med_s)
    detail = {"p_value": p, "canary_median": med_c, "stable_median": med_s, "n": len(ours)}
    medians = (
        f"over the window median {fmt(med_c)}{unit} vs stable {fmt(med_s)}{unit} "
        f"({fmt_percent(effect)}, {len(ours)} and {len(theirs)} values)"
    )
    floor = fmt_percent(stat.min_increase_percent)
    if p >= alpha:
        return Clause(
            Verdict.PASS,
            f"{medians}, not higher beyond chance: Mann-Whitney p={p:.2g} ≥ {alpha:g}",
            mentions_stable=True,
            detail=detail,
        )
    if effect < stat.min_increase_percent:
        return Clause(
            Verdict.PASS,
            f"{medians}: higher (Mann-Whitney p={p:.2g} < {alpha:g}) but by less than the "
            f"floor {floor}",
            mentions_stable=True,
            detail=detail,
        )
    return Clause(
        Verdict.FAIL,
        f"{medians}: higher beyond chance (Mann-Whitney p={p:.2g} < {alpha:g}) and by at "
        f"least {floor}",
        mentions_stable=True,
        detail=detail,
        significant=True,
    )


def judge(gate: Gate, canary: Measurement, stable: Measurement | None) -> GateResult:
    """The verdict of ``gate`` on one evaluation's measurements."""
    # A preset's unit, and whether it is a share of requests (``samples`` the requests).
    declared = preset(gate.provider, gate.preset)
    unit = declared.unit if declared is not None else ""
    value = usable(canary.value)
    stable_value = usable(stable.value) if stable is not None else None

    def result(verdict: Verdict, clauses: str, detail: dict[str, Any]) -> GateResult:
        return GateResult(
            gate=gate.name,
            verdict=verdict,
            explanation=f"{gate.name} {clauses} → {verdict.value}",
            value=value,
            stable_value=stable_value,
            samples=canary.samples,
            detail=detail,
        )

    vs = f" (stable {fmt(stable_value)}{unit})" if stable_value is not None else ""
    if value is None:
        return result(Verdict.INCONCLUSIVE, f"has no data for the canary{vs}", {})
    shown = f"{fmt(value)}{unit}"
    samples = canary.samples
    counts = None
    if declared is not None and declared.rate and samples is not None and samples >= 1:
        counts = Counts(errors=round(value * samples), requests=round(samples))

    clauses: list[Clause] = []
    if gate.max is not None or gate.min is not None:
        clauses.append(check_threshold(gate, value, unit, counts))
    if gate.relative is not None:
        clauses.append(check_relative(gate.relative, value, stable_value, unit, counts))
    if gate.statistical is not None:
        clauses.append(check_statistical(gate.statistical, canary, stable, unit))

    if gate.min_samples and (samples is None or samples < gate.min_samples):
        strong = [c for c in clauses if c.verdict == Verdict.FAIL and c.significant]
        if strong:  # evidence however few the samples
            text = f"{shown} " + "; ".join(c.text for c in strong)
            return result(Verdict.FAIL, text, {k: v for c in strong for k, v in c.detail.items()})
        if samples is None:
            why = f"comes without a sample count, and min_samples is {gate.min_samples}"
        else:
            why = f"rests on {fmt(samples)} samples < min_samples {gate.min_samples}"
        return result(Verdict.INCONCLUSIVE, f"{shown} {why}{vs}", {})

    verdicts = {c.verdict for c in clauses}
    verdict = next((v for v in (Verdict.FAIL, Verdict.INCONCLUSIVE) if v in verdicts), Verdict.PASS)
    text = shown + ("," if clauses[0].text.startswith("over") else "") + " "
    text += "; ".join(c.text for c in clauses)
    if not any(c.mentions_stable for c in clauses):
        text += vs
    detail = {k: v for c in clauses for k, v in c.detail.items()}
    return result(verdict, text, detail)


def error_result(gate: str, why: str) -> GateResult:
    return GateResult(gate=gate, verdict=Verdict.ERROR, explanation=f"{gate} {why} → ERROR")
