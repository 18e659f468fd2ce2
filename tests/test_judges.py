"""The judges, templates and PromQL the gates are made of, without any server.

Each case is a verdict a person reads in a timeline, so the assertions are on the verdict
and the words: the numbers it rests on, and why.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from analysis.base import Measurement, MetricQuery, ProviderError, Verdict, Window
from analysis.gates import EvaluationContext, queries_for
from analysis.judges import GateResult, judge
from analysis.prometheus import describe_failure, expressions, instant_value, promql_duration
from config.spec import Gate, PresetOptions
from config.templates import TemplateError, names_in, render


def gate(**fields: Any) -> Gate:
    return Gate.model_validate({"name": "p95", "provider": "prometheus"} | fields)


def m(
    value: float | None, samples: float | None = 1000, values: tuple[float, ...] = ()
) -> Measurement:
    return Measurement(value, samples, values=values)


# ---------------------------------------------------------------- threshold


def test_threshold_keeps_its_wording() -> None:
    g = gate(name="error-rate", query="q", max=0.01)
    assert judge(g, m(0.05), m(0.002)).explanation == (
        "error-rate 0.05 > max 0.01 (stable 0.002) → FAIL"
    )
    assert judge(g, m(0.002), None).explanation == "error-rate 0.002 ≤ max 0.01 → PASS"


def test_no_data_and_too_few_samples_are_inconclusive_never_pass() -> None:
    g = gate(preset="http-p95-latency", max=0.5, min_samples=200)
    nodata = judge(g, m(None), m(0.3))
    assert nodata.verdict == Verdict.INCONCLUSIVE
    assert nodata.explanation == "p95 has no data for the canary (stable 0.3s) → INCONCLUSIVE"
    few = judge(g, m(0.1, samples=12), m(0.3))
    assert few.verdict == Verdict.INCONCLUSIVE
    assert "0.1s rests on 12 samples < min_samples 200" in few.explanation
    assert judge(g, m(float("nan")), None).verdict == Verdict.INCONCLUSIVE, "NaN is no data"


# ---------------------------------------------------------------- relative


SLOW = (0.58, 0.61, 0.6, 0.63, 0.59)  # a canary's p95 per minute, clearly above STEADY
STEADY = (0.31, 0.3, 0.32, 0.29, 0.28)


def test_relative_in_percent_reads_like_the_issue() -> None:
    g = gate(preset="http-p95-latency", relative={"max_increase_percent": 20})
    result = judge(g, m(0.61, values=SLOW), m(0.32, values=STEADY))
    assert result.verdict == Verdict.FAIL
    assert result.explanation == (
        "p95 0.61s vs stable 0.32s: +91% (99% bound +84%) > allowed +20% → FAIL"
    )
    assert result.detail["allowed_increase"] == pytest.approx(0.064)
    assert result.detail["increase_bound"] == pytest.approx(0.27)
    ok = judge(g, m(0.35), m(0.32))
    assert ok.explanation == "p95 0.35s vs stable 0.32s: +9.4% ≤ allowed +20% → PASS"


def test_relative_p95_above_the_allowance_by_chance_is_inconclusive_not_fail() -> None:
    """One slow minute lifts the window's p95 by 31%: the per-minute values do not bound the
    increase above the allowance, so it is not a rollback."""
    g = gate(preset="http-p95-latency", relative={"max_increase_percent": 20})
    spiky = m(0.42, values=(0.30, 0.52, 0.31, 0.95, 0.29))
    result = judge(g, spiky, m(0.32, values=(0.31, 0.3, 0.42, 0.29, 0.28)))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.explanation == (
        "p95 0.42s vs stable 0.32s: +31% > allowed +20%, not beyond chance yet (99% bound "
        "-38%, 5 and 5 values over the window) → INCONCLUSIVE"
    )
    few = judge(g, m(0.61, values=SLOW[:3]), m(0.32, values=STEADY))
    assert few.verdict == Verdict.INCONCLUSIVE
    assert "3 and 5 values over the window are too few to bound it at 99%" in few.explanation


def test_a_cloudwatch_relative_check_is_bounded_with_its_values_like_any_other() -> None:
    """CloudWatch answers per-period values (analysis/cloudwatch.py): no point estimate."""
    g = gate(provider="cloudwatch", query="p", stable_query="s", relative={"max_increase": 0.1})
    bare = judge(g, m(0.61), m(0.32))
    assert bare.verdict == Verdict.INCONCLUSIVE
    assert "0 and 0 values over the window are too few to bound it" in bare.explanation
    bounded = judge(g, m(0.61, values=SLOW), m(0.32, values=STEADY))
    assert bounded.verdict == Verdict.FAIL
    assert "99% bound" in bounded.explanation


def test_a_healthy_heavy_tailed_canary_rarely_fails_the_relative_check() -> None:
    """Canary and stable from one heavy-tailed distribution: the point estimate is above
    +20% in many windows, the bound (99%) in at most 1% of them."""
    rng = random.Random(7)
    g = gate(preset="http-p95-latency", relative={"max_increase_percent": 20})
    over, failed = 0, 0
    for _ in range(1000):
        ours = tuple(rng.paretovariate(2.5) * 0.1 for _ in range(5))
        theirs = tuple(rng.paretovariate(2.5) * 0.1 for _ in range(5))
        result = judge(g, m(max(ours), values=ours), m(max(theirs), values=theirs))
        over += result.detail["increase"] > result.detail["allowed_increase"]
        failed += result.verdict == Verdict.FAIL
    assert over > 300
    assert failed <= 10


def test_relative_latency_gates_ask_for_values_and_error_rates_do_not() -> None:
    ctx = EvaluationContext(now=datetime(2026, 1, 1, tzinfo=UTC), weight=10, elapsed=0)
    p95 = gate(preset="http-p95-latency", relative={"max_increase_percent": 20})
    errors = gate(preset="http-error-rate", relative={"max_increase_percent": 20})
    cloudwatch = gate(
        provider="cloudwatch", query="p", stable_query="s", relative={"max_increase": 1}
    )
    assert [q.series_step for q in queries_for(p95, ctx)] == [60, 60]
    assert [q.series_step for q in queries_for(errors, ctx)] == [None, None]
    # CloudWatch's values come a minute apart (Lambda's period), whatever the window.
    assert [q.series_step for q in queries_for(cloudwatch, ctx)] == [60, 60]


def test_relative_absolute_allowance_wins_when_larger() -> None:
    """A tiny stable error rate must not turn +0.1 points into a rollback."""
    g = gate(
        name="errors",
        preset="http-error-rate",
        relative={"max_increase_percent": 50, "max_increase": 0.005},
    )
    result = judge(g, m(0.003), m(0.001))
    assert result.verdict == Verdict.PASS
    assert "+0.002 (+200%) ≤ allowed +0.005 (+50% or +0.005, whichever is larger)" in (
        result.explanation
    )
    assert judge(g, m(0.0075, samples=20_000), m(0.001)).verdict == Verdict.FAIL


def test_error_rates_fail_only_beyond_chance() -> None:
    """3 errors in 200 requests (1.5%) is no evidence of a rate above 1%; 12 in 200 is."""
    g = gate(name="errors", preset="http-error-rate", max=0.01, min_samples=100)
    chance = judge(g, m(0.015, samples=200), m(0.002))
    assert chance.verdict == Verdict.INCONCLUSIVE, "above the line, but never PASS"
    assert chance.explanation == (
        "errors 0.015 > max 0.01: 3 of 200 requests, not beyond chance yet (p=0.32 ≥ 0.01) "
        "(stable 0.002) → INCONCLUSIVE"
    )
    real = judge(g, m(0.06, samples=200), m(0.002))
    assert real.verdict == Verdict.FAIL
    assert "12 of 200 requests, beyond chance (p<0.001)" in real.explanation


def test_min_samples_guards_pass_but_not_a_failure_beyond_chance() -> None:
    g = gate(
        name="errors",
        preset="http-error-rate",
        relative={"max_increase_percent": 50, "max_increase": 0.005},
        min_samples=500,
    )
    broken = judge(g, m(0.2, samples=40), m(0.003))
    assert broken.verdict == Verdict.FAIL, broken.explanation
    assert "8 of 40 requests, beyond chance" in broken.explanation
    healthy = judge(g, m(0.0, samples=40), m(0.003))
    assert healthy.verdict == Verdict.INCONCLUSIVE
    assert "rests on 40 samples < min_samples 500" in healthy.explanation
    noisy = judge(g, m(0.025, samples=40), m(0.003))
    assert noisy.verdict == Verdict.INCONCLUSIVE, "1 of 40 may be chance"


def test_relative_without_stable_data_is_inconclusive() -> None:
    g = gate(preset="http-p95-latency", relative={"max_increase": 0.1})
    result = judge(g, m(0.3), m(None))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "no data for the stable version" in result.explanation


def test_worst_check_decides_and_every_check_is_explained() -> None:
    g = gate(preset="http-p95-latency", max=1.0, relative={"max_increase_percent": 20})
    result = judge(g, m(0.61, values=SLOW), m(0.32, values=STEADY))
    assert result.verdict == Verdict.FAIL
    assert result.explanation == (
        "p95 0.61s ≤ max 1s; vs stable 0.32s: +91% (99% bound +84%) > allowed +20% → FAIL"
    )
    inconclusive = judge(g, m(0.61), None)
    assert inconclusive.verdict == Verdict.INCONCLUSIVE
    assert judge(g, m(1.5), None).verdict == Verdict.FAIL, "a FAIL beats INCONCLUSIVE"


# ---------------------------------------------------------------- statistical


STAT = {"confidence": 0.95, "min_increase_percent": 10, "step": "1m"}


def test_mann_whitney_fails_a_clearly_higher_canary() -> None:
    g = gate(preset="http-p95-latency", statistical=STAT)
    canary = m(0.6, values=(0.58, 0.61, 0.6, 0.63, 0.59))
    stable = m(0.3, values=(0.31, 0.3, 0.32, 0.29, 0.28))
    result = judge(g, canary, stable)
    assert result.verdict == Verdict.FAIL
    assert result.explanation == (
        "p95 0.6s, over the window median 0.6s vs stable 0.3s (+100%, 5 and 5 values): "
        "higher beyond chance (Mann-Whitney p=0.004 < 0.05) and by at least +10% (95% bound "
        "+93%) → FAIL"
    )
    assert result.detail["p_value"] == pytest.approx(1 / 252)


def test_mann_whitney_needs_significance_and_the_effect_floor() -> None:
    g = gate(preset="http-p95-latency", statistical=STAT)
    noisy = judge(g, m(0.3, values=(0.3, 0.2, 0.4, 0.25, 0.35)), m(0.3, values=(0.3,) * 5))
    assert noisy.verdict == Verdict.PASS
    assert "not higher beyond chance" in noisy.explanation
    tiny = judge(
        g,
        m(0.303, values=(0.302, 0.303, 0.304, 0.303, 0.302)),
        m(0.3, values=(0.3, 0.299, 0.301, 0.3, 0.298)),
    )
    assert tiny.verdict == Verdict.PASS
    assert "by less than the floor +10%" in tiny.explanation


def test_the_effect_floor_applies_to_the_bound_not_to_the_medians() -> None:
    """Higher beyond chance and +14% at the medians, but the shift's bound is +6.7%: not
    yet evidence of a +10% regression."""
    g = gate(preset="http-p95-latency", statistical=STAT)
    canary = m(0.345, values=(0.33, 0.345, 0.35, 0.36, 0.34, 0.31))
    result = judge(g, canary, m(0.3, values=(0.3, 0.29, 0.31, 0.3, 0.32, 0.28)))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.explanation.endswith(
        "higher beyond chance (Mann-Whitney p=0.0051 < 0.05), but not yet by the floor +10% "
        "(95% bound +6.7%) → INCONCLUSIVE"
    )
    assert result.detail["shift_bound"] == pytest.approx(0.02)


def test_mann_whitney_with_too_few_values_is_inconclusive() -> None:
    g = gate(preset="http-p95-latency", statistical=STAT)
    result = judge(g, m(0.9, values=(0.9, 0.95, 0.9)), m(0.3, values=(0.3,) * 10))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "only 3 canary and 10 stable value(s); Mann-Whitney needs 4" in result.explanation


def test_results_round_trip_through_stored_events() -> None:
    g = gate(preset="http-p95-latency", statistical=STAT)
    result = judge(g, m(0.6, values=(0.6,) * 5), m(0.3, values=(0.3,) * 5))
    assert GateResult.from_data(result.to_data()) == result


# ---------------------------------------------------------------- templates


def test_templates_fill_known_names_and_refuse_the_rest() -> None:
    assert names_in('a{v="{{ canary_version }}"}[{{window}}]') == ["canary_version", "window"]
    assert render("x{{ a }}y{{a}}", {"a": "1"}) == "x1y1"
    with pytest.raises(TemplateError, match=r"no value for \{\{ b \}\}"):
        render("{{ a }}{{ b }}", {"a": "1"})
    with pytest.raises(TemplateError, match="no value for"):
        render("{{ stable_version }}", {"stable_version": ""})
    with pytest.raises(TemplateError, match="is not a template variable"):
        names_in("{{ 1x }}")


# ---------------------------------------------------------------- PromQL


WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, tzinfo=UTC))


def test_error_rate_preset_treats_missing_error_series_as_zero_errors() -> None:
    q = MetricQuery(
        gate="e",
        side="stable",
        expression=None,
        preset="http-error-rate",
        variables={"canary_version": "2", "stable_version": "1", "function": "checkout"},
        series_step=60,
        preset_options=PresetOptions(
            requests_metric="reqs", code_label="status", selector='fn="{{ function }}"'
        ),
    )
    e = expressions(q, WINDOW)
    assert e.value == (
        '(sum(rate(reqs{version="1", fn="checkout", status=~"5.."}[300s])) or vector(0))'
        ' / sum(rate(reqs{version="1", fn="checkout"}[300s]))'
    )
    assert e.samples is None, "only the canary's request count is judged"
    assert e.series is not None
    assert "[60s]" in e.series
    canary = expressions(replace(q, side="canary"), WINDOW)
    assert canary.samples == 'sum(increase(reqs{version="2", fn="checkout"}[300s]))'


def test_p95_preset_and_custom_queries() -> None:
    q = MetricQuery(
        gate="p",
        side="canary",
        expression=None,
        preset="http-p95-latency",
        variables={"canary_version": 'we"ird', "stable_version": "1"},
    )
    e = expressions(q, WINDOW)
    assert e.value == (
        "histogram_quantile(0.95, sum by (le) (rate("
        'http_request_duration_seconds_bucket{version="we\\"ird"}[300s])))'
    )
    assert (
        e.samples == 'sum(increase(http_request_duration_seconds_count{version="we\\"ird"}[300s]))'
    )
    custom = MetricQuery(
        gate="c",
        side="canary",
        expression='x{v="{{ canary_version }}"}[{{ window }}]',
        preset=None,
        variables={"canary_version": "7"},
        samples_expression="n[{{ window }}]",
    )
    e = expressions(custom, WINDOW)
    assert (e.value, e.samples, e.series) == ('x{v="7"}[300s]', "n[300s]", None)


def test_promql_durations() -> None:
    assert [promql_duration(s) for s in (300, 1.5, 0.25, 90)] == ["300s", "1500ms", "250ms", "90s"]


def test_answers_in_every_shape() -> None:
    assert instant_value([], "q") is None
    assert instant_value([1.0, "0.5"], "q") == 0.5
    assert instant_value([{"metric": {}, "value": [1.0, "NaN"]}], "q") is None
    assert instant_value([{"metric": {}, "value": [1.0, "+Inf"]}], "q") is None
    with pytest.raises(ProviderError, match="returned 2 series"):
        instant_value([{"metric": {"a": "1"}, "value": [1, "1"]}] * 2, "q")


def test_failures_are_described_in_one_line() -> None:
    from prometheus_api_client.exceptions import PrometheusApiClientException

    body = b'{"status":"error","errorType":"bad_data","error":"parse error at char 5"}'
    text = describe_failure(
        PrometheusApiClientException(f"HTTP Status Code 400 ({body!r})"), "http://p:9090", 5
    )
    assert text == "Prometheus refused the query (HTTP 400): bad_data parse error at char 5"
    assert "credentials" in describe_failure(
        PrometheusApiClientException("HTTP Status Code 401 (b'Unauthorized')"), "http://p", 5
    )


# ---------------------------------------------------------------- delay


async def test_each_window_ends_where_the_providers_data_is_complete() -> None:
    """CloudWatch publishes about two minutes late, Prometheus a scrape late; a gate's own
    delay overrides its provider's."""
    from datetime import timedelta

    from analysis.gates import evaluate
    from analysis.scripted import ScriptedProvider

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    providers = {
        "cloudwatch": ScriptedProvider(lambda q: Measurement(0.001, 500)),
        "prometheus": ScriptedProvider(lambda q: Measurement(0.001, 500)),
    }
    gates = [
        gate(name="lambda", provider="cloudwatch", query="e", max=0.01),
        gate(name="http", query="e", max=0.01),
        gate(name="late", query="e", max=0.01, delay="3m", window="10m"),
    ]
    ctx = EvaluationContext(now=now, weight=10, elapsed=0)
    results = await evaluate(gates, providers, ctx)
    assert [r.verdict for r in results] == [Verdict.PASS] * 3
    windows = {q.gate: w for p in providers.values() for q, w in p.queries}
    assert windows["lambda"] == Window(now - timedelta(minutes=7), now - timedelta(minutes=2))
    assert windows["http"] == Window(now - timedelta(seconds=330), now - timedelta(seconds=30))
    assert windows["late"] == Window(now - timedelta(minutes=13), now - timedelta(minutes=3))


def test_a_result_says_when_only_more_traffic_would_decide_it() -> None:
    g = gate(preset="http-p95-latency", relative={"max_increase_percent": 20}, min_samples=200)
    assert judge(g, m(0.3, samples=61), m(0.3)).starved, "61 samples < min_samples"
    assert judge(g, m(None), m(0.3)).starved, "no data yet"
    few = judge(g, m(0.61, values=SLOW[:3]), m(0.32, values=STEADY))
    assert (few.verdict, few.starved) == (Verdict.INCONCLUSIVE, True)
    no_stable = judge(g, m(0.3), m(None))
    assert (no_stable.verdict, no_stable.starved) == (Verdict.INCONCLUSIVE, False)
