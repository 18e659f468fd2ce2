"""The spec of CloudWatch gates with your own metrics: every mistake named at its path."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import document

from config import metricmath
from config.errors import SpecError

ERRORS = {"namespace": "AWS/Lambda", "metric": "Errors", "stat": "Sum"}


def gate(**fields: Any) -> dict[str, Any]:
    return {"name": "g", "provider": "cloudwatch", "max": 1} | fields


def problems(g: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as refused:
        document(analysis={"gates": [g]})
    return [str(p) for p in refused.value.problems]


def test_a_query_over_defined_metrics_is_accepted_with_its_dimensions() -> None:
    doc = document(
        analysis={
            "gates": [
                gate(
                    metrics={
                        "errors": ERRORS
                        | {"dimensions": {"ExecutedVersion": "{{ canary_version }}"}},
                        "calls": ERRORS | {"metric": "Invocations"},
                    },
                    query="100 * errors / calls",
                    samples_query="calls",
                )
            ]
        }
    )
    g = doc.spec.analysis.gates[0]
    assert g.metrics is not None
    assert g.metrics["errors"].dimensions == {"ExecutedVersion": "{{ canary_version }}"}
    assert g.samples_query == "calls"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"metrics": {"errors": ERRORS}, "query": "erors / 2"},
            "spec.analysis.gates[0].query: uses 'erors', which is not one of the metrics "
            "(defined: errors); define it under metrics or fix the name",
        ),
        (
            {"metrics": {"errors": ERRORS}, "query": "errors", "samples_query": "calls"},
            "spec.analysis.gates[0].samples_query: uses 'calls', which is not one of the metrics",
        ),
        (
            {"metrics": {"Errors": ERRORS}, "query": "Errors"},
            "spec.analysis.gates[0].metrics.Errors: 'Errors' is not an id CloudWatch accepts",
        ),
        (
            {"provider": "prometheus", "metrics": {"errors": ERRORS}, "query": "errors"},
            "spec.analysis.gates[0].metrics: metrics are for the cloudwatch provider only",
        ),
        (
            {"preset": "lambda-error-rate", "samples_query": "x"},
            "spec.analysis.gates[0].samples_query: a preset counts its own samples",
        ),
        (
            {"preset": "lambda-error-rate", "metrics": {"errors": ERRORS}},
            "spec.analysis.gates[0].metrics: metrics are for your own query; a preset has its own",
        ),
        (
            {
                "metrics": {"errors": {"namespace": "AWS/Lambda", "metric": "Errors"}},
                "query": "errors",
            },
            "spec.analysis.gates[0].metrics.errors.stat: required field is missing",
        ),
    ],
)
def test_mistakes_in_cloudwatch_metrics_are_named_with_their_path(
    fields: dict[str, Any], expected: str
) -> None:
    found = problems(gate(**fields))
    assert any(expected in p for p in found), found


def test_a_standalone_expression_without_metrics_is_left_to_cloudwatch() -> None:
    search = "SEARCH('{AWS/Lambda,FunctionName} MetricName=\"Errors\"', 'Sum')"
    doc = document(analysis={"gates": [gate(query=search)]})
    assert doc.spec.analysis.gates[0].query == search


def test_metric_math_ids_skip_functions_and_quoted_text() -> None:
    expression = "100 * FILL(errors, 0) / calls + SEARCH('{AWS/Lambda} errors', 'Sum')"
    assert metricmath.ids_in(expression) == ["errors", "calls"]
    renamed = metricmath.rename_ids(expression, {"errors": "m0", "calls": "m1"})
    assert renamed == "100 * FILL(m0, 0) / m1 + SEARCH('{AWS/Lambda} errors', 'Sum')"
    assert metricmath.ids_in("1e5 * x2") == ["x2"]
