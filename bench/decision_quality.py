"""Decision quality: does a gate policy roll back healthy releases, and does it catch bad ones?

A seeded corpus of canary scenarios with known truth (healthy releases; error-rate
regressions from +0.5 to +10 points; p95 latency regressions from +10% to +200%; traffic
from 0.5 to 500 requests/s; common-mode bursts of errors and latency; metric gaps and
provider outages) is run through three policies over the same simulated traffic:

* ours: the real engine, state machine, judges and gate policy of this repository, on the
  virtual clock, with a scripted provider that answers from the simulated traffic
  (``analysis.scripted.ScriptedProvider``); the spec is ``OURS`` below: the spec's
  defaults (interval 30s, window 5m, failure_limit 1, inconclusive_limit 3,
  consecutive_error_limit 4, on_inconclusive pause) and the gates docs/analysis.md
  recommends;
* a Flagger-style rule, from Flagger's documentation: every metric checked each interval
  (1m) over a 1-minute window against a fixed threshold; a check with no data fails
  ("Halt advancement no values found"); the canary is rolled back when the failed checks
  reach ``threshold`` (1);
* an Argo-Rollouts-style rule, from the Argo Rollouts analysis documentation: background
  analysis measuring every 1m over a 5-minute window, ``successCondition: result <= max``
  and ``failureCondition: result > max``; a NaN result meets neither and is Inconclusive,
  which pauses the rollout (inconclusiveLimit 0); an empty result or a provider failure is
  an Error (consecutiveErrorLimit 4: the fifth in a row aborts); more than ``failureLimit``
  (3) failed measurements abort.

Every policy uses the same plan (10% for 5m, 25% for 10m, 50% for 15m, then 100%). The
references judge fixed thresholds (error rate 1%, p95 at 1.5 times the stable version's
normal p95); a fourth row runs our policy and judges on those same thresholds, to show what
the policy does apart from the choice of gates.

Usage::

    python bench/decision_quality.py [--per-kind 120] [--seed 20260101]

Results and what they mean: docs/analysis.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr

from analysis.base import Measurement, MetricQuery, ProviderError
from analysis.scripted import ScriptedProvider
from canary import logs
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.events import EventKind
from canary.model import Phase
from canary.simulate import drive
from canary.store.memory import MemoryStore
from config.spec import RolloutDocument, parse_document
from strategies.memory import MemoryFleet

PLAN = ((10.0, 300), (25.0, 600), (50.0, 900), (100.0, 0))
HORIZON = 2 * 3600  # seconds of traffic simulated; a policy undecided by then is "held"
SIGMA = 0.5  # lognormal spread of latency: p95 = median * exp(1.645 * SIGMA)
Z95 = 1.6448536269514722
ERROR_MAX = 0.01  # the fixed error-rate threshold every policy uses
P95_FACTOR = 1.5  # the fixed p95 threshold, as a multiple of the stable version's p95

Truth = Literal["healthy", "errors", "latency"]
Decision = Literal["promoted", "rolled_back", "held"]


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Burst:
    """A common-mode disturbance (a dependency blip) hitting stable and canary alike."""

    start: int
    length: int
    error_add: float
    latency_mult: float


@dataclass(frozen=True)
class Gap:
    """Prometheus without data (a scrape gap) or down (queries fail) for a while."""

    start: int
    length: int
    kind: Literal["nodata", "down"]


@dataclass(frozen=True)
class Scenario:
    id: int
    truth: Truth
    rps: float
    stable_error: float
    stable_median: float
    error_increase: float = 0.0  # absolute (0.005 is +0.5 points)
    latency_increase: float = 0.0  # relative (0.1 is +10%)
    onset_weight: float = 0.0  # the regression shows once the canary takes this share
    bursts: tuple[Burst, ...] = ()
    gaps: tuple[Gap, ...] = ()

    @property
    def stable_p95(self) -> float:
        return self.stable_median * math.exp(Z95 * SIGMA)

    def describe(self) -> str:
        what = {
            "healthy": "healthy",
            "errors": f"errors +{self.error_increase * 100:.2g} pts",
            "latency": f"p95 +{self.latency_increase * 100:.0f}%",
        }[self.truth]
        extra = [f"{self.rps:.3g} rps"]
        extra += [f"from {self.onset_weight:g}%"] if self.onset_weight else []
        extra += [f"{len(self.bursts)} bursts"] if self.bursts else []
        extra += [f"{g.kind} {g.length}s" for g in self.gaps]
        return f"#{self.id} {what} ({', '.join(extra)})"


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return 10 ** rng.uniform(math.log10(low), math.log10(high))


def corpus(per_kind: int, seed: int) -> list[Scenario]:
    """``per_kind`` healthy, error-regression and latency-regression scenarios."""
    rng = random.Random(seed)
    found: list[Scenario] = []
    for i in range(3 * per_kind):
        truth: Truth = ("healthy", "errors", "latency")[i % 3]
        bursts: tuple[Burst, ...] = ()
        if rng.random() < 0.4:
            bursts = tuple(
                Burst(
                    start=rng.randrange(0, 1800),
                    length=rng.randrange(20, 120),
                    error_add=rng.uniform(0.01, 0.05),
                    latency_mult=rng.uniform(1.5, 3.0),
                )
                for _ in range(rng.randint(1, 4))
            )
        gaps: tuple[Gap, ...] = ()
        if rng.random() < 0.3:
            gaps = tuple(
                Gap(
                    start=rng.randrange(0, 1800),
                    length=rng.randrange(60, 360),
                    kind=rng.choice(("nodata", "down")),
                )
                for _ in range(rng.randint(1, 2))
            )
        found.append(
            Scenario(
                id=i,
                truth=truth,
                rps=log_uniform(rng, 0.5, 500),
                stable_error=rng.uniform(0.001, 0.005),
                stable_median=rng.uniform(0.05, 0.25),
                error_increase=log_uniform(rng, 0.005, 0.10) if truth == "errors" else 0.0,
                latency_increase=log_uniform(rng, 0.10, 2.0) if truth == "latency" else 0.0,
                onset_weight=rng.choice((0.0, 0.0, 25.0, 50.0)) if truth != "healthy" else 0.0,
                bursts=bursts,
                gaps=gaps,
            )
        )
    return found


# ---------------------------------------------------------------- simulated traffic


class World:
    """Per-second traffic of one scenario, for every weight of the plan, drawn once.

    The same seconds at the same weight give the same requests to every policy, so the
    policies are compared on the same traffic wherever they stand at the same time.
    """

    def __init__(self, sc: Scenario, seed: int) -> None:
        self.sc = sc
        self.seed = seed
        rng = np.random.default_rng([seed, sc.id])
        total = rng.poisson(sc.rps, HORIZON)
        burst_err = np.zeros(HORIZON)
        burst_lat = np.ones(HORIZON)
        for b in sc.bursts:
            burst_err[b.start : b.start + b.length] += b.error_add
            burst_lat[b.start : b.start + b.length] *= b.latency_mult
        self.stable_lat = burst_lat
        self.by_weight: dict[float, dict[str, np.ndarray]] = {}
        for weight, _ in PLAN:
            share = weight / 100
            n_c = rng.binomial(total, share)
            n_s = total - n_c
            active = weight >= sc.onset_weight
            p_s = np.clip(sc.stable_error + burst_err, 0, 1)
            p_c = np.clip(p_s + (sc.error_increase if active else 0.0), 0, 1)
            lat_c = burst_lat * (1 + (sc.latency_increase if active else 0.0))
            self.by_weight[weight] = {
                "n_c": n_c,
                "e_c": rng.binomial(n_c, p_c),
                "n_s": n_s,
                "e_s": rng.binomial(n_s, p_s),
                "m_c": lat_c,
            }


class Run:
    """One policy's walk through a world: the weight it held at every second so far."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.filled = 0
        self.n = {side: np.zeros(HORIZON, dtype=np.int64) for side in ("canary", "stable")}
        self.e = {side: np.zeros(HORIZON, dtype=np.int64) for side in ("canary", "stable")}
        self.m = {"canary": np.ones(HORIZON), "stable": world.stable_lat}
        self.max_weight = 0.0

    def advance(self, t: int, weight: float) -> None:
        """Seconds up to ``t`` were served at ``weight`` (the weight since the last look)."""
        t = min(t, HORIZON)
        if t <= self.filled:
            return
        data = self.world.by_weight[weight]
        span = slice(self.filled, t)
        self.n["canary"][span] = data["n_c"][span]
        self.e["canary"][span] = data["e_c"][span]
        self.n["stable"][span] = data["n_s"][span]
        self.e["stable"][span] = data["e_s"][span]
        self.m["canary"][span] = data["m_c"][span]
        self.filled = t
        self.max_weight = max(self.max_weight, weight)

    def _gap(self, t: int) -> str | None:
        for gap in self.world.sc.gaps:
            if gap.start <= t < gap.start + gap.length:
                return gap.kind
        return None

    def _p95(self, side: str, lo: int, hi: int, salt: int) -> tuple[float | None, int]:
        counts = self.n[side][lo:hi]
        n = int(counts.sum())
        if n == 0:
            return None, 0
        mults, inverse = np.unique(self.m[side][lo:hi], return_inverse=True)
        weights = np.bincount(inverse, weights=counts)
        rng = np.random.default_rng([self.world.seed, self.world.sc.id, hi, lo, salt])
        medians = self.world.sc.stable_median * mults
        if n <= 200:  # few requests: the sample quantile of the requests themselves
            draws = rng.lognormal(np.log(np.repeat(medians, weights.astype(int))), SIGMA)
            return float(np.percentile(draws, 95)), n
        # Many: the mixture's true p95, with the sampling error of a quantile estimate.
        logs_ = np.log(medians)
        low, high = logs_.min(), logs_.max() + 2 * Z95 * SIGMA
        for _ in range(40):
            mid = (low + high) / 2
            below = float((weights * ndtr((mid - logs_) / SIGMA)).sum()) / n
            low, high = (mid, high) if below < 0.95 else (low, mid)
        se = SIGMA * math.sqrt(0.95 * 0.05 / n) / (math.exp(-(Z95**2) / 2) / math.sqrt(2 * math.pi))
        return float(math.exp(low + rng.normal(0, se))), n

    def _one(self, metric: str, side: str, lo: int, hi: int) -> tuple[float | None, int]:
        if metric == "error-rate":
            n = int(self.n[side][lo:hi].sum())
            return (int(self.e[side][lo:hi].sum()) / n if n else None), n
        return self._p95(side, lo, hi, salt=1 if side == "canary" else 2)

    def measure(
        self, metric: str, side: str, t: int, window: int, step: int | None = None
    ) -> Measurement | ProviderError:
        gap = self._gap(t)
        if gap == "down":
            return ProviderError("connection refused")
        if gap == "nodata":
            return Measurement(None, None, detail={"why": "empty"})
        lo, hi = max(0, t - window), min(t, self.filled)
        if hi <= lo:
            return Measurement(None, None, detail={"why": "empty"})
        value, n = self._one(metric, side, lo, hi)
        values: tuple[float, ...] = ()
        if step:
            edges = range(lo, hi, step)
            found = (self._one(metric, side, a, min(a + step, hi))[0] for a in edges)
            values = tuple(v for v in found if v is not None)
        why = {} if value is not None else {"why": "nan"}
        return Measurement(value, float(n), detail=why, values=values)


# ---------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    decision: Decision
    at: float  # seconds from the start to the decision
    weight: float  # the canary's largest share of traffic before the decision
    reason: str = ""


def thresholds(sc: Scenario) -> dict[str, float]:
    return {"error-rate": ERROR_MAX, "p95": P95_FACTOR * sc.stable_p95}


def plan_weight(t: int) -> tuple[float, bool]:
    """The plan's weight at ``t`` when every step passes on time; True once at 100%."""
    start = 0
    for weight, bake in PLAN:
        if t < start + bake:
            return weight, False
        start += bake
    return 100.0, True


# ---------------------------------------------------------------- the references


Look = Callable[[Run, int], "Outcome | None"]  # one look at second t; an outcome ends it


def walk(world: World, interval: int, look: Look) -> Outcome:
    """Follow the plan on time, looking every ``interval`` seconds until ``look`` decides."""
    run = Run(world)
    t = 0
    while t < HORIZON:
        weight, done = plan_weight(t)
        if done:
            return Outcome("promoted", t, run.max_weight)
        t += interval
        run.advance(t, weight)
        outcome = look(run, t)
        if outcome is not None:
            return outcome
    return Outcome("held", HORIZON, run.max_weight, "undecided")


def flagger(world: World) -> Outcome:
    """Fixed thresholds over 1-minute windows, no data fails, threshold 1 rolls back."""
    limits = thresholds(world.sc)
    window, threshold = 60, 1
    failed = 0

    def look(run: Run, t: int) -> Outcome | None:
        nonlocal failed
        for metric, limit in limits.items():
            m = run.measure(metric, "canary", t, window)
            value = m.value if isinstance(m, Measurement) else None
            if value is None or value > limit:
                failed += 1
                why = "no values found" if value is None else f"{value:.4g} > {limit:.4g}"
                if failed >= threshold:
                    return Outcome("rolled_back", t, run.max_weight, f"{metric}: {why}")
                return None  # Flagger halts this check round at the first failed metric
        return None

    return walk(world, 60, look)


def argo(world: World) -> Outcome:
    """Background analysis: fixed thresholds, failureLimit 3, inconclusive pauses."""
    limits = thresholds(world.sc)
    window, failure_limit, error_limit = 300, 3, 4
    failures = dict.fromkeys(limits, 0)
    errors = dict.fromkeys(limits, 0)

    def look(run: Run, t: int) -> Outcome | None:
        for metric, limit in limits.items():
            m = run.measure(metric, "canary", t, window)
            if isinstance(m, ProviderError) or m.detail.get("why") == "empty":
                errors[metric] += 1  # result[0] of an empty vector, or the query failed
                if errors[metric] > error_limit:
                    return Outcome("rolled_back", t, run.max_weight, f"{metric}: errors")
                continue
            errors[metric] = 0
            if m.value is None:  # NaN: neither condition holds
                return Outcome("held", t, run.max_weight, f"{metric}: inconclusive")
            if m.value > limit:
                failures[metric] += 1
                if failures[metric] > failure_limit:
                    return Outcome("rolled_back", t, run.max_weight, f"{metric}: failed")
        return None

    return walk(world, 60, look)


# ---------------------------------------------------------------- ours: the real engine


RECOMMENDED_GATES: list[dict[str, Any]] = [
    # The canary against the stable version, as docs/analysis.md recommends: no absolute
    # threshold (a shared disturbance would trip it on both versions), a sample floor.
    {
        "name": "error-rate",
        "provider": "prometheus",
        "preset": "http-error-rate",
        "relative": {"max_increase_percent": 50, "max_increase": 0.005},
        "min_samples": 200,
    },
    {
        "name": "p95",
        "provider": "prometheus",
        "preset": "http-p95-latency",
        "relative": {"max_increase_percent": 20},
        "statistical": {},
        "min_samples": 200,
    },
]


def threshold_gates(sc: Scenario) -> list[dict[str, Any]]:
    """The references' fixed thresholds, as our gates (with a sample floor)."""
    limits = thresholds(sc)
    return [
        {
            "name": name,
            "provider": "prometheus",
            "preset": preset,
            "max": limits[name],
            "min_samples": 200,
        }
        for name, preset in (("error-rate", "http-error-rate"), ("p95", "http-p95-latency"))
    ]


def ours_document(sc: Scenario, gates: list[dict[str, Any]] | None = None) -> RolloutDocument:
    """The spec's defaults (plan, interval, window, limits) and the recommended gates."""
    return parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": f"scenario-{sc.id}"},
            "spec": {
                "targets": [
                    {"kind": "lambda-alias", "function": "f", "alias": "live", "version": "2"}
                ],
                "analysis": {"gates": RECOMMENDED_GATES if gates is None else gates},
            },
        }
    )


def scripted(run: Run, document: RolloutDocument) -> Callable[[MetricQuery], Any]:
    windows = {g.name: int(g.window) for g in document.spec.analysis.gates}

    def answer(q: MetricQuery) -> Measurement | ProviderError:
        t = round(q.elapsed)
        run.advance(t, q.weight)
        step = int(q.series_step) if q.series_step else None
        return run.measure(q.gate, q.side, t, windows[q.gate], step)

    return answer


async def ours(world: World, gates: list[dict[str, Any]] | None = None) -> Outcome:
    run = Run(world)
    document = ours_document(world.sc, gates)
    clock = VirtualClock()
    store = MemoryStore()
    provider = ScriptedProvider(scripted(run, document))
    engine = Engine(
        store,
        clock,
        MemoryFleet(stable="1").factory,
        {"prometheus": provider},
        options=EngineOptions(step_retry=1.0),
    )
    await engine.start()
    begin = clock.now()
    r = await engine.submit(document, actor="bench")
    await drive(engine, clock, until=begin + timedelta(seconds=HORIZON))
    await engine.stop()
    r = await store.get(r.id)
    at = (r.updated_at - begin).total_seconds()
    weights = [e.weight for e in await store.events(r.id) if e.kind == EventKind.TRAFFIC_SHIFTED]
    reached = max((w for w in weights if w is not None), default=0.0)
    if r.phase == Phase.SUCCEEDED:
        return Outcome("promoted", at, 100.0)
    if r.phase == Phase.ROLLED_BACK:
        return Outcome("rolled_back", at, reached, r.reason or "")
    return Outcome("held", at, reached, r.paused_reason or r.phase.value)


# ---------------------------------------------------------------- the table


BAD = frozenset({"errors", "latency"})


@dataclass
class Tally:
    outcomes: list[tuple[Scenario, Outcome]] = field(default_factory=list)

    def rate(self, truths: frozenset[str], *decisions: str) -> float:
        chosen = [o for sc, o in self.outcomes if sc.truth in truths]
        return 100 * sum(o.decision in decisions for o in chosen) / max(1, len(chosen))

    def false_rollbacks(self) -> float:
        return self.rate(frozenset({"healthy"}), "rolled_back")

    def caught(self) -> float:
        return self.rate(BAD, "rolled_back", "held")

    def row(self) -> list[str]:
        stopped = [o for sc, o in self.outcomes if sc.truth in BAD and o.decision != "promoted"]
        decided = [o.at / 60 for _, o in self.outcomes]
        return [
            f"{self.false_rollbacks():.1f}%",
            f"{self.rate(frozenset({'healthy'}), 'held'):.1f}%",
            f"{self.caught():.1f}%",
            f"{self.rate(BAD, 'rolled_back'):.1f}%",
            f"{self.rate(BAD, 'held'):.1f}%",
            f"{self.rate(BAD, 'promoted'):.1f}%",
            f"{statistics.mean(o.weight for o in stopped):.0f}%" if stopped else "-",
            f"{statistics.median(o.at / 60 for o in stopped):.1f}m" if stopped else "-",
            f"{statistics.median(decided):.1f}m",
        ]


HEADERS = [
    "policy",
    "false rollbacks",
    "healthy held",
    "bad caught",
    "bad rolled back",
    "bad held",
    "bad promoted",
    "traffic at detection",
    "time to detect",
    "time to decision",
]
LEGEND = """\
false rollbacks       healthy releases rolled back
healthy held          healthy releases paused for a person (too little evidence to promote)
bad caught            bad releases not promoted: rolled back, or held for a person
traffic at detection  mean canary share of traffic when a bad release was stopped
time to detect        median minutes until a bad release was stopped
time to decision      median minutes until promoted, rolled back or held (every scenario)"""


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


BANDS = (("< 5 rps", 0.0, 5.0), ("5-50 rps", 5.0, 50.0), ("> 50 rps", 50.0, math.inf))


def breakdown(tallies: dict[str, Tally]) -> str:
    """By traffic: healthy rolled back, and bad releases caught, for each kind."""
    header = ["policy"]
    header += [f"healthy rb {b}" for b, *_ in BANDS]
    header += [f"{kind} caught {b}" for kind in ("errors", "latency") for b, *_ in BANDS]
    rows = [header]
    for name, tally in tallies.items():
        cells = [name]
        for truth, decisions in (
            ("healthy", {"rolled_back"}),
            ("errors", {"rolled_back", "held"}),
            ("latency", {"rolled_back", "held"}),
        ):
            for _, low, high in BANDS:
                chosen = [
                    o for sc, o in tally.outcomes if sc.truth == truth and low <= sc.rps < high
                ]
                cells.append(f"{sum(o.decision in decisions for o in chosen)}/{len(chosen)}")
        rows.append(cells)
    return table(rows)


def verdict(tallies: dict[str, Tally]) -> list[str]:
    """The acceptance bar: no more false rollbacks and at least as many caught, vs each."""
    ours_ = tallies["ours"]
    lines = []
    for name, ref in tallies.items():
        if not name.endswith("-style"):
            continue
        fewer = "no more" if ours_.false_rollbacks() <= ref.false_rollbacks() else "MORE"
        more = "at least as many" if ours_.caught() >= ref.caught() else "FEWER"
        lines.append(
            f"ours vs {name}: false rollbacks {ours_.false_rollbacks():.1f}% vs "
            f"{ref.false_rollbacks():.1f}% ({fewer}), bad caught {ours_.caught():.1f}% vs "
            f"{ref.caught():.1f}% ({more})"
        )
    return lines


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=120, help="scenarios of each kind")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--show", type=int, default=0, help="list N scenarios ours got wrong")
    args = parser.parse_args(argv)
    logs.configure("error", "json")
    started = time.perf_counter()
    scenarios = corpus(args.per_kind, args.seed)
    names = ("ours", "ours, fixed thresholds", "flagger-style", "argo-style")
    tallies = {name: Tally() for name in names}
    for sc in scenarios:
        world = World(sc, args.seed)
        tallies["ours"].outcomes.append((sc, await ours(world)))
        fixed = await ours(world, threshold_gates(sc))
        tallies["ours, fixed thresholds"].outcomes.append((sc, fixed))
        tallies["flagger-style"].outcomes.append((sc, flagger(world)))
        tallies["argo-style"].outcomes.append((sc, argo(world)))
    elapsed = time.perf_counter() - started

    kinds = {t: sum(sc.truth == t for sc in scenarios) for t in ("healthy", "errors", "latency")}
    print(
        f"{len(scenarios)} scenarios (seed {args.seed}): {kinds['healthy']} healthy, "
        f"{kinds['errors']} error-rate regressions, {kinds['latency']} latency regressions; "
        f"ran in {elapsed:.0f}s\n"
    )
    print(table([HEADERS, *([name, *t.row()] for name, t in tallies.items())]))
    print()
    print(LEGEND)
    print("\nby traffic (healthy: rolled back; errors, latency: caught)\n")
    print(breakdown(tallies))
    print()
    print("\n".join(verdict(tallies)))
    wrong = [
        (sc, o)
        for sc, o in tallies["ours"].outcomes
        if (sc.truth == "healthy" and o.decision == "rolled_back")
        or (sc.truth != "healthy" and o.decision == "promoted")
    ]
    for sc, o in wrong[: args.show]:
        print(f"  {sc.describe()}: {o.decision} at {o.at / 60:.1f}m, {o.weight:g}%: {o.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
