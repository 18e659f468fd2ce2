"""One evaluation: ask every provider once, judge every gate, never let a failure pass.

Queries of one evaluation are grouped by provider and window so each provider gets one
round trip (CloudWatch's GetMetricData takes a batch). A provider that times out, raises,
or is not configured turns its gates into ERROR results that say so.

A rollout moving several targets is judged on every one of them: each gate is expanded per
target (its presets and template variables filled in from that target), and each result
names its target. Targets on which a gate asks the very same question (a query that names
nothing that differs between them, the same provider route) are asked once, and that result
covers them all. The machine takes the worst over all results, so the worst target decides.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from analysis.base import Measurement, MetricProvider, MetricQuery, ProviderError, Window
from analysis.judges import GateResult, error_result, judge
from analysis.registry import BY_NAME as PROVIDERS
from analysis.registry import preset
from config.spec import Gate, gate_variables

DEFAULT_TIMEOUT = 20.0


@dataclass(frozen=True)
class TargetContext:
    """One target of the rollout as the gates see it: its key and its template variables."""

    key: str
    variables: Mapping[str, str]


@dataclass(frozen=True)
class EvaluationContext:
    now: datetime
    weight: float
    elapsed: float
    variables: Mapping[str, str] = field(default_factory=dict)
    """The variables of a context without ``targets`` (one unnamed target)."""
    targets: Sequence[TargetContext] = ()
    """Every target of the rollout, in spec order; each gate is judged on each."""


@dataclass(frozen=True)
class Instance:
    """One gate asked about some targets: ``variables`` are theirs (equal where it looks)."""

    gate: Gate
    targets: tuple[str, ...]
    variables: Mapping[str, str]
    named: bool
    """Say which target in the explanation: the rollout has more than one."""


def instances(gate: Gate, ctx: EvaluationContext) -> list[Instance]:
    """``gate`` once per distinct question over the targets it judges (``gate.targets``)."""
    everyone = list(ctx.targets) or [TargetContext("", ctx.variables)]
    chosen = everyone  # a context without targets (one unnamed) is judged whatever they say
    if gate.targets and ctx.targets:  # indexes the spec checked against its targets
        chosen = [everyone[i] for i in gate.targets if i < len(everyone)]
    used = sorted(gate_variables(gate) | set(PROVIDERS[gate.provider].routed_by))
    groups: dict[tuple[str, ...], list[TargetContext]] = {}
    for target in chosen:
        groups.setdefault(tuple(target.variables.get(n, "") for n in used), []).append(target)
    named = len(everyone) > 1
    return [
        Instance(gate, tuple(t.key for t in same), same[0].variables, named)
        for same in groups.values()
    ]


def _naming(result: GateResult, instance: Instance) -> GateResult:
    """``result`` with its target as data and, for a rollout of several, in its words."""
    keys = instance.targets
    target = keys[0] if len(keys) == 1 and keys[0] else None
    if not instance.named:
        return replace(result, target=target)
    label = target if target is not None else f"{len(keys)} targets, asked once: " + ", ".join(keys)
    name = result.gate
    words = result.explanation
    if words.startswith(name):
        words = f"{name} [{label}]{words[len(name) :]}"
    return replace(result, target=target, explanation=words)


# The values a relative check is bounded with, when the gate has no statistical step: one a
# minute (a scrape interval of 15-60 s leaves several points in each), and at least
# RELATIVE_VALUES over a short window.
RELATIVE_STEP = 60.0
RELATIVE_VALUES = 5


def series_step(gate: Gate) -> float | None:
    """The step of the values over the window the gate's checks need, or None.

    A statistical check compares them; a relative check on a value that is not a share of
    requests bounds its increase with them (analysis/judges.py), when the provider has them.
    """
    if gate.statistical is not None:
        return gate.statistical.step
    declared = preset(gate.provider, gate.preset)
    if gate.relative is None or (declared is not None and declared.rate):
        return None
    kind = PROVIDERS[gate.provider]
    if not kind.series:
        return None
    return max(2.0, kind.resolution, min(RELATIVE_STEP, gate.window // RELATIVE_VALUES))


def delay_of(gate: Gate) -> float:
    """How late the gate's metrics arrive: its own ``delay``, else its provider's."""
    if gate.delay is not None:
        return gate.delay
    return PROVIDERS[gate.provider].delay


def queries_for(
    gate: Gate, ctx: EvaluationContext, variables: Mapping[str, str] | None = None
) -> list[MetricQuery]:
    """The canary query, and the stable one when the gate can ask for it; ``variables``
    (one target's) default to the context's."""
    sides: list[tuple[str, str | None]] = [("canary", gate.query)]
    if gate.stable_query is not None or gate.preset is not None:
        sides.append(("stable", gate.stable_query))
    metrics = {k: v.model_dump() for k, v in (gate.metrics or {}).items()}
    return [
        MetricQuery(
            gate=gate.name,
            side="canary" if side == "canary" else "stable",
            expression=expression,
            preset=gate.preset,
            variables=ctx.variables if variables is None else variables,
            weight=ctx.weight,
            elapsed=ctx.elapsed,
            metrics=metrics,
            samples_expression=gate.samples_query if side == "canary" else None,
            series_step=series_step(gate),
            preset_options=gate.preset_options,
        )
        for side, expression in sides
    ]


async def evaluate(
    gates: Sequence[Gate],
    providers: Mapping[str, MetricProvider],
    ctx: EvaluationContext,
    provider_timeout: float = DEFAULT_TIMEOUT,
) -> list[GateResult]:
    """Every gate's results, in the order of ``gates``, one per target (or per group of
    targets asked the same question), each naming its target."""
    asked = [i for gate in gates for i in instances(gate, ctx)]
    groups: dict[tuple[str, float, float], list[tuple[int, MetricQuery]]] = defaultdict(list)
    answers: dict[int, list[Measurement | ProviderError]] = {i: [] for i in range(len(asked))}
    missing: dict[int, str] = {}
    for index, instance in enumerate(asked):
        gate = instance.gate
        if gate.provider not in providers:
            missing[index] = f"has no {gate.provider} provider configured in this daemon"
            continue
        for query in queries_for(gate, ctx, instance.variables):
            groups[(gate.provider, gate.window, delay_of(gate))].append((index, query))

    async def ask(
        provider_name: str, window_s: float, delay: float, batch: list[tuple[int, MetricQuery]]
    ) -> None:
        end = ctx.now - timedelta(seconds=delay)  # where the data is complete
        window = Window(end - timedelta(seconds=window_s), end)
        provider = providers[provider_name]
        try:
            results: Sequence[Measurement | ProviderError] = await asyncio.wait_for(
                provider.query([q for _, q in batch], window), provider_timeout
            )
            if len(results) != len(batch):
                raise ProviderError(f"answered {len(results)} of {len(batch)} queries")
        except TimeoutError:
            results = [
                ProviderError(f"{provider_name} did not answer within {provider_timeout:g}s")
            ] * len(batch)
        except ProviderError as exc:
            results = [ProviderError(f"{provider_name}: {exc}")] * len(batch)
        for (index, _), result in zip(batch, results, strict=True):
            answers[index].append(result)

    await asyncio.gather(*(ask(name, w, d, batch) for (name, w, d), batch in groups.items()))

    out: list[GateResult] = []
    for index, instance in enumerate(asked):
        out.append(_naming(_judged(instance.gate, answers[index], missing.get(index)), instance))
    return out


def _judged(gate: Gate, got: list[Measurement | ProviderError], missing: str | None) -> GateResult:
    if missing is not None:
        return error_result(gate.name, missing)
    failed = [a for a in got if isinstance(a, ProviderError)]
    if failed:
        return error_result(gate.name, f"could not be measured: {failed[0]}")
    measurements = [a for a in got if isinstance(a, Measurement)]
    canary = measurements[0]
    stable = measurements[1] if len(measurements) > 1 else None
    return judge(gate, canary, stable)
