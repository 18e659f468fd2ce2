"""What a user writes for gates and Prometheus, and the errors they get when it is wrong.

Every mistake is reported at the field that holds it, with the fix, before any traffic
moves: a relative check without a stable side, a statistical check whose window cannot
hold enough values, a query naming a template variable that does not exist.
"""

from __future__ import annotations

from typing import Any

import pytest

from config.errors import SpecError
from config.settings import load_settings
from config.spec import parse_document

TARGET = {"kind": "lambda-alias", "function": "checkout", "alias": "live", "version": "42"}


def doc(*gates: dict[str, Any], target: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "canary/v1",
        "kind": "Rollout",
        "metadata": {"name": "checkout"},
        "spec": {"targets": [target or TARGET], "analysis": {"gates": list(gates)}},
    }


def prom(**fields: Any) -> dict[str, Any]:
    return {"name": "p95", "provider": "prometheus", "preset": "http-p95-latency"} | fields


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_document(data)
    return {p.path: p.message for p in caught.value.problems}


G = "spec.analysis.gates[0]"


def test_every_new_check_parses_with_its_defaults() -> None:
    d = parse_document(
        doc(
            prom(
                relative={"max_increase_percent": 20},
                statistical={},
                preset_options={"version_label": "app_version", "selector": 'job="{{ function }}"'},
            )
        )
    )
    (g,) = d.spec.analysis.gates
    assert g.relative is not None
    assert g.relative.max_increase_percent == 20
    assert g.statistical is not None
    assert (g.statistical.confidence, g.statistical.min_increase_percent) == (0.99, 10.0)
    assert g.statistical.step == 60.0
    assert g.preset_options is not None
    assert g.preset_options.requests_metric == "http_requests_total"
    assert parse_document(d.to_data()) == d, "a stored spec reads back the same"


@pytest.mark.parametrize(
    ("gate", "path", "message"),
    [
        (
            {
                "name": "p95",
                "provider": "prometheus",
                "query": "q",
                "relative": {"max_increase": 1},
            },
            f"{G}.stable_query",
            "relative compares with the stable version: add stable_query",
        ),
        (
            prom(relative={}),
            f"{G}.relative.max_increase_percent",
            "set max_increase_percent, max_increase, or both",
        ),
        (
            prom(relative={"max_increase_percent": -5}),
            f"{G}.relative.max_increase_percent",
            "must be 0 or more, not -5",
        ),
        (
            prom(statistical={"step": "2m"}),
            f"{G}.statistical.step",
            "a window of 5m in steps of 2m gives 2 value(s) per version; Mann-Whitney needs 5 "
            "for confidence 0.99: shorten step or lengthen window",
        ),
        (
            prom(statistical={"confidence": 1}),
            f"{G}.statistical.confidence",
            "must be 0.9999 or less",
        ),
        (
            prom(preset_options={"version_label": "app-version"}),
            f"{G}.preset_options.version_label",
            "'app-version' is not a Prometheus label name",
        ),
        (
            prom(preset_options={"requests_metric": "9lives"}),
            f"{G}.preset_options.requests_metric",
            "'9lives' is not a Prometheus metric name",
        ),
        (
            {
                "name": "errors",
                "provider": "cloudwatch",
                "preset": "lambda-error-rate",
                "max": 0.01,
                "preset_options": {},
            },
            f"{G}.preset_options",
            "applies to the prometheus presets only",
        ),
        (
            {"name": "e", "provider": "prometheus", "query": "q", "max": 1, "min_samples": 100},
            f"{G}.samples_query",
            "min_samples 100 needs a sample count: add samples_query",
        ),
        (
            {"name": "e", "provider": "prometheus", "preset": "http-error-rate"},
            f"{G}.max",
            "a gate needs a check: set max, min (or both), relative or statistical",
        ),
        (
            {
                "name": "e",
                "provider": "prometheus",
                "query": 'x{v="{{ canary_versoin }}"}',
                "max": 1,
            },
            f"{G}.query",
            "unknown template variable {{ canary_versoin }}; did you mean {{ canary_version }}?",
        ),
        (
            prom(max=1, preset_options={"selector": 'fn="{{ functoin }}"'}),
            f"{G}.preset_options.selector",
            "did you mean {{ function }}?",
        ),
        (
            {"name": "e", "provider": "prometheus", "query": "x{{ 5m }}", "max": 1},
            f"{G}.query",
            "'{{ 5m }}' is not a template variable",
        ),
    ],
)
def test_bad_gate(gate: dict[str, Any], path: str, message: str) -> None:
    found = problems(doc(gate))
    assert path in found, found
    assert message in found[path]


def test_target_fields_are_template_variables_of_that_target_only() -> None:
    query = {"provider": "prometheus", "max": 1}
    ok = {"name": "a", "query": 'x{fn="{{ function }}", a="{{ alias }}", w="{{ window }}"}'}
    parse_document(doc(ok | query))
    other = {"name": "a", "query": 'x{ns="{{ namespace }}", r="{{ route }}"}'}
    found = problems(doc(other | query))
    assert "unknown template variable {{ namespace }}, {{ route }}" in found[f"{G}.query"]
    assert "function" in found[f"{G}.query"], "the target's own names are listed as known"


# ---------------------------------------------------------------- daemon settings


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"URL": "prometheus:9090"}, "URL", "'prometheus:9090' is not an http(s) URL"),
        ({"URL": "http://bob:pw@p:9090"}, "URL", "holds credentials; put them in"),
        ({"URL": "http://p:9090", "TIMEOUT": "0"}, "TIMEOUT", "0 is not a number of seconds"),
        ({"URL": "http://p:9090", "CA_FILE": "/no/such.pem"}, "CA_FILE", "is not a file"),
        ({"URL": "http://p:9090", "USERNAME": "bob"}, "PASSWORD", "required with"),
        ({"URL": "http://p:9090", "PASSWORD": "pw"}, "USERNAME", "required with"),
        (
            {"URL": "http://p", "BEARER_TOKEN": "t", "USERNAME": "u", "PASSWORD": "p"},
            "BEARER_TOKEN",
            "either a bearer token or a username and password",
        ),
        ({"BEARER_TOKEN": "t"}, "URL", "required with CANARY_PROMETHEUS_BEARER_TOKEN"),
    ],
)
def test_bad_prometheus_setting_names_the_variable(
    clean_env: pytest.MonkeyPatch, values: dict[str, str], path: str, message: str
) -> None:
    for name, value in values.items():
        clean_env.setenv(f"CANARY_PROMETHEUS_{name}", value)
    with pytest.raises(SpecError) as caught:
        load_settings()
    found = {p.path: p.message for p in caught.value.problems}
    assert f"CANARY_PROMETHEUS_{path}" in found, found
    assert message in found[f"CANARY_PROMETHEUS_{path}"]
    assert "pw" not in str(caught.value)
    assert "bob:" not in str(caught.value)


def test_prometheus_secrets_never_show(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANARY_PROMETHEUS_URL", "https://p:9090")
    clean_env.setenv("CANARY_PROMETHEUS_BEARER_TOKEN", "tok-123")
    settings = load_settings()
    assert settings.prometheus_bearer_token is not None
    assert settings.prometheus_bearer_token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(settings)
    assert "tok-123" not in str(settings.model_dump())
