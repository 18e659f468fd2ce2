"""Judges: pure functions from measurements to a verdict and the sentence that explains it.

A verdict nobody can explain will not be trusted with production traffic, so every result
carries the numbers it was made on, in words: ``p95 0.61s vs stable 0.32s: +91% > allowed
+20% → FAIL``. Too few samples or no data is INCONCLUSIVE, never PASS.

A gate can hold up to three checks on the same measurement; each gives its own verdict and
clause, and the gate takes the worst: any FAIL fails it, then any INCONCLUSIVE.

* threshold: ``max``/``min`` on the canary's value;
* relative: the canary's value against the stable version's, an allowed increase in % and/or
  absolute (the larger allowance wins, so a tiny stable error rate does not turn +0.01
  points into +100%). A point estimate is not evidence: one slow minute lifts a 5-minute
  p95 by 30% on a healthy release. So a breach fails only when a 99% lower bound of the
  increase is beyond the allowance (``p95 +31% (99% bound +24%) > allowed +20%``), the
  Hodges-Lehmann bound from both versions' values over the window;
* statistical: Mann-Whitney U of the canary's values against the stable's over the window,
  one-sided (is the canary higher?), failing only when significant at the gate's confidence
  *and* the lower bound of the shift is at least the effect-size floor, so a
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
from functools import lru_cache
from statistics import NormalDist, median
from typing import Any

from analysis.base import Measurement, Verdict
from analysis.registry import BY_NAME as PROVIDERS
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
    starved: bool = False
    """INCONCLUSIVE for lack of samples or values: more traffic would decide it."""
    target: str | None = None
    """The key of the target judged (analysis.gates expands a gate per target); None when
    one question covers several targets (a query naming nothing that differs between them)."""

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
    starved: bool = False  # INCONCLUSIVE for lack of samples or values


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
    rel: Relative,
    value: float,
    stable: float | None,
    unit: str,
    counts: Counts | None = None,
    series: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Clause:
    """The canary's value against the stable's; a breach fails only on evidence.

    Shares of requests (``counts``) are tested with the binomial test. Other values are
    bounded with their values over the window (``series``, canary and stable): the increase
    fails only when its lower confidence bound is beyond the allowance. Without any values
    (a provider that gives one number per window) the point estimate decides, and says so.
    """
    if stable is None:
        return Clause(
            Verdict.INCONCLUSIVE, "vs stable: no data for the stable version", mentions_stable=True
        )
    increase = value - stable
    by_percent = rel.max_increase_percent / 100 * abs(stable) if rel.max_increase_percent else 0.0
    allowed = max(by_percent, rel.max_increase or 0.0)

    def said(delta: float) -> str:
        percent = _percent_over(stable + delta, stable)
        if rel.max_increase is None:  # only a percentage allowed: speak in percent
            return fmt_percent(percent)
        if rel.max_increase_percent is None:
            return f"{delta:+.4g}{unit}"
        return f"{delta:+.4g}{unit} ({fmt_percent(percent)})"

    if rel.max_increase is None:
        limit = fmt_percent(rel.max_increase_percent or 0.0)
    elif rel.max_increase_percent is None:
        limit = f"+{fmt(allowed)}{unit}"
    else:
        limit = (
            f"+{fmt(allowed)}{unit} ({fmt_percent(rel.max_increase_percent)} or "
            f"+{fmt(rel.max_increase)}{unit}, whichever is larger)"
        )
    head = f"vs stable {fmt(stable)}{unit}: {said(increase)}"
    detail: dict[str, Any] = {"increase": increase, "allowed_increase": allowed}
    if increase <= allowed:
        return Clause(
            Verdict.PASS, f"{head} ≤ allowed {limit}", mentions_stable=True, detail=detail
        )
    if counts is not None:
        p = counts.p_above(stable + allowed)
        breach = _breach(f"{head} > allowed {limit}", counts, p)
        return Clause(
            breach.verdict,
            breach.text,
            mentions_stable=True,
            detail=detail | breach.detail,
            significant=breach.significant,
        )
    if series is None:
        return Clause(
            Verdict.FAIL,
            f"{head} > allowed {limit} (one value per window: no values over it to bound it)",
            mentions_stable=True,
            detail=detail,
        )
    ours, theirs = _finite(series[0]), _finite(series[1])
    level = f"{EVIDENCE * 100:g}%"
    low = shift_lower_bound(ours, theirs, EVIDENCE)
    values = f"{len(ours)} and {len(theirs)} values over the window"
    if low is None:
        return Clause(
            Verdict.INCONCLUSIVE,
            f"{head} > allowed {limit}, but {values} are too few to bound it at {level}",
            mentions_stable=True,
            detail=detail,
            starved=True,
        )
    detail |= {"increase_bound": low, "bound_confidence": EVIDENCE}
    if low > allowed:
        return Clause(
            Verdict.FAIL,
            f"{head} ({level} bound {said(low)}) > allowed {limit}",
            mentions_stable=True,
            detail=detail,
            significant=True,
        )
    return Clause(
        Verdict.INCONCLUSIVE,
        f"{head} > allowed {limit}, not beyond chance yet ({level} bound {said(low)}, {values})",
        mentions_stable=True,
        detail=detail,
    )


# Up to this many canary x stable pairs the rank of the bound comes from the exact
# distribution of the Mann-Whitney U statistic; beyond it from its normal approximation.
EXACT_PAIRS = 2500


def _u_counts(n: int, m: int) -> list[int]:
    """How many of the C(n+m, n) orderings give U = 0, 1, ..., n*m (no ties).

    The coefficients of the Gaussian binomial [n+m choose n]: built as the product over
    i = 1..n of (1 - q^(m+i)) / (1 - q^i), in exact integers.
    """
    size = n * m + 1
    poly = [1] + [0] * (size - 1)
    for i in range(1, n + 1):
        shift = m + i
        for u in range(size - 1, shift - 1, -1):  # times (1 - q^(m+i))
            poly[u] -= poly[u - shift]
        for u in range(i, size):  # divided by (1 - q^i)
            poly[u] += poly[u - i]
    return poly


@lru_cache(maxsize=512)
def bound_rank(n: int, m: int, alpha: float) -> int:
    """k such that the k-th smallest of the n*m differences is a lower confidence bound
    on the shift at 1 - alpha; 0 when n and m are too few for any bound."""
    pairs = n * m
    if pairs <= EXACT_PAIRS:
        total = math.comb(n + m, n)
        cumulative, k = 0, 0
        for u, count in enumerate(_u_counts(n, m)):
            cumulative += count
            if cumulative / total > alpha:
                break
            k = u + 1
        return k
    z = NormalDist().inv_cdf(1 - alpha)
    sigma = math.sqrt(pairs * (n + m + 1) / 12)
    return max(0, math.floor(pairs / 2 - z * sigma + 0.5))


def shift_lower_bound(
    canary: Sequence[float], stable: Sequence[float], confidence: float
) -> float | None:
    """How much higher the canary's values are than the stable's, at least, at ``confidence``.

    The distribution-free bound that goes with Mann-Whitney (Hodges-Lehmann): the k-th
    smallest of the canary-minus-stable differences. None when too few values for any bound.
    """
    k = bound_rank(len(canary), len(stable), round(1 - confidence, 10))
    if k == 0:
        return None
    diffs = sorted(c - s for c in canary for s in stable)
    return diffs[k - 1]


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
            starved=True,
        )
    alpha = significance(stat.confidence)
    p = mann_whitney_greater(ours, theirs)
    med_c, med_s = median(ours), median(theirs)
    effect = _percent_over(med_c, med_s)
    detail: dict[str, Any] = {
        "p_value": p,
        "canary_median": med_c,
        "stable_median": med_s,
        "n": len(ours),
    }
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
    # The floor applies to the bound of the shift, not to the medians' gap.
    low = shift_lower_bound(ours, theirs, stat.confidence)
    low_percent = _percent_over(med_s + low, med_s) if low is not None else -math.inf
    level = f"{stat.confidence * 100:g}%"
    bound = f"{level} bound {fmt_percent(low_percent)}"
    detail |= {"shift_bound": low, "bound_confidence": stat.confidence}
    if low_percent < stat.min_increase_percent:
        return Clause(
            Verdict.INCONCLUSIVE,
            f"{medians}: higher beyond chance (Mann-Whitney p={p:.2g} < {alpha:g}), but not "
            f"yet by the floor {floor} ({bound})",
            mentions_stable=True,
            detail=detail,
        )
    return Clause(
        Verdict.FAIL,
        f"{medians}: higher beyond chance (Mann-Whitney p={p:.2g} < {alpha:g}) and by at "
        f"least {floor} ({bound})",
        mentions_stable=True,
        detail=detail,
        significant=True,
    )


def _series(
    gate: Gate, canary: Measurement, stable: Measurement | None
) -> tuple[Sequence[float], Sequence[float]] | None:
    """Both versions' values over the window; None when the provider has none to give."""
    kind = PROVIDERS.get(gate.provider)
    if kind is not None and not kind.series:
        return None
    return canary.values, stable.values if stable is not None else ()


def judge(gate: Gate, canary: Measurement, stable: Measurement | None) -> GateResult:
    """The verdict of ``gate`` on one evaluation's measurements."""
    # A preset's unit, and whether it is a share of requests (``samples`` the requests).
    declared = preset(gate.provider, gate.preset)
    unit = declared.unit if declared is not None else ""
    value = usable(canary.value)
    stable_value = usable(stable.value) if stable is not None else None

    def result(
        verdict: Verdict, clauses: str, detail: dict[str, Any], starved: bool = False
    ) -> GateResult:
        return GateResult(
            gate=gate.name,
            verdict=verdict,
            explanation=f"{gate.name} {clauses} → {verdict.value}",
            value=value,
            stable_value=stable_value,
            samples=canary.samples,
            detail=detail,
            starved=starved,
        )

    vs = f" (stable {fmt(stable_value)}{unit})" if stable_value is not None else ""
    if value is None:
        return result(Verdict.INCONCLUSIVE, f"has no data for the canary{vs}", {}, True)
    shown = f"{fmt(value)}{unit}"
    samples = canary.samples
    counts = None
    if declared is not None and declared.rate and samples is not None and samples >= 1:
        counts = Counts(errors=round(value * samples), requests=round(samples))

    clauses: list[Clause] = []
    if gate.max is not None or gate.min is not None:
        clauses.append(check_threshold(gate, value, unit, counts))
    if gate.relative is not None:
        clauses.append(
            check_relative(
                gate.relative, value, stable_value, unit, counts, _series(gate, canary, stable)
            )
        )
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
        return result(Verdict.INCONCLUSIVE, f"{shown} {why}{vs}", {}, True)

    verdicts = {c.verdict for c in clauses}
    verdict = next((v for v in (Verdict.FAIL, Verdict.INCONCLUSIVE) if v in verdicts), Verdict.PASS)
    text = shown + ("," if clauses[0].text.startswith("over") else "") + " "
    text += "; ".join(c.text for c in clauses)
    if not any(c.mentions_stable for c in clauses):
        text += vs
    detail = {k: v for c in clauses for k, v in c.detail.items()}
    stuck = [c for c in clauses if c.verdict == Verdict.INCONCLUSIVE]
    starved = verdict == Verdict.INCONCLUSIVE and all(c.starved for c in stuck)
    return result(verdict, text, detail, starved)


def error_result(gate: str, why: str) -> GateResult:
    return GateResult(gate=gate, verdict=Verdict.ERROR, explanation=f"{gate} {why} → ERROR")
