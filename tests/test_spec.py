"""The rollout spec, daemon settings and JSON Schema, as a user meets them.

Every example in config/examples parses; a bad document reports every problem at once, each
at its path with a message that says what to do; settings name the variable that is wrong.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import config.schema
from config.durations import display_duration, format_duration, parse_duration
from config.errors import SpecError
from config.settings import load_settings
from config.spec import RolloutDocument, load_file, parse_document, parse_text
from strategies.registry import PLANNED, kind_names

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
EXPECTED_EXAMPLES = {
    "lambda-alias.yaml",
    "lambda-alias-prometheus.yaml",
    "multi-target.yaml",
    "k8s-gateway-api.yaml",
    "k8s-istio.yaml",
    "k8s-nginx.yaml",
    "k8s-smi.yaml",
    "appconfig-flag.yaml",
    "smoke-and-e2e.yaml",
}
PLANNED_EXAMPLES = sorted((ROOT / "docs" / "planned").glob("*.yaml"))
REGENERATE = "python -m config.schema > config/schema.json"


def minimal() -> dict[str, Any]:
    """The smallest valid document: one Lambda alias, the default plan, no gates."""
    return {
        "apiVersion": "canary/v1",
        "kind": "Rollout",
        "metadata": {"name": "checkout-api"},
        "spec": {
            "targets": [
                {
                    "kind": "lambda-alias",
                    "function": "checkout-api",
                    "alias": "live",
                    "version": "42",
                }
            ]
        },
    }


def gate(**fields: Any) -> dict[str, Any]:
    return {"name": "error-rate", "provider": "cloudwatch", "preset": "lambda-error-rate"} | {
        "max": 0.01,
        **fields,
    }


def problems(data: Any) -> dict[str, str]:
    """Path → message of every problem in ``data``; fails if the document is valid."""
    with pytest.raises(SpecError) as caught:
        parse_document(data)
    found = {p.path: p.message for p in caught.value.problems}
    assert len(found) == len(caught.value.problems), "one problem per path expected"
    return found


def text_problems(text: str, source: str = "<spec>") -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_text(text, source)
    return [str(p) for p in caught.value.problems]


# --- examples -------------------------------------------------------------------------------


def test_the_examples_are_all_there() -> None:
    assert {p.name for p in EXAMPLES} == EXPECTED_EXAMPLES


def test_every_planned_kind_has_its_design_note() -> None:
    assert {p.stem for p in PLANNED_EXAMPLES} == set(PLANNED)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses(path: Path) -> None:
    document = load_file(path)
    assert document.metadata.name
    assert document.spec.steps[-1].weight == 100
    assert document.spec.analysis.gates, "an example without gates would teach bad habits"
    assert any(g.min_samples > 0 for g in document.spec.analysis.gates)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    kinds = {t["kind"] for t in raw["spec"]["targets"]}
    if path.name not in ("multi-target.yaml", "smoke-and-e2e.yaml"):  # about targets, hooks
        assert kinds == {path.stem.split("-prometheus")[0]}, "examples are named by their kind"


def test_examples_cover_the_default_plan_and_an_approval() -> None:
    raw = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in EXAMPLES]
    assert any("steps" not in doc["spec"] for doc in raw)
    documents = [load_file(p) for p in EXAMPLES]
    assert any(step.approval for doc in documents for step in doc.spec.steps)
    assert any(len(doc.spec.targets) == 2 for doc in documents)


def test_lambda_example_is_the_documented_one() -> None:
    document = load_file(ROOT / "config" / "examples" / "lambda-alias.yaml")
    (target,) = document.spec.targets
    assert target.kind == "lambda-alias"
    assert (target.function, target.alias, target.version) == ("checkout-api", "live", "42")
    assert document.describe_plan() == "10% (5m) → 25% (10m) → 50% (15m) → 100%"
    analysis = document.spec.analysis
    assert analysis.interval == 30
    gates = {g.name: g for g in analysis.gates}
    assert set(gates) == {"error-rate", "p95-duration"}
    assert gates["error-rate"].provider == "cloudwatch"
    assert gates["error-rate"].preset == "lambda-error-rate"
    assert (gates["error-rate"].max, gates["error-rate"].min_samples) == (0.01, 200)
    assert gates["p95-duration"].preset == "lambda-p95-duration"
    assert gates["p95-duration"].max == 800


# --- defaults and durations -----------------------------------------------------------------


def test_default_plan_when_steps_are_omitted() -> None:
    document = parse_document(minimal())
    plan = [(s.weight, s.bake, s.approval) for s in document.spec.steps]
    assert plan == [(10, 300, False), (25, 600, False), (50, 900, False), (100, 0, False)]
    assert document.to_data()["spec"]["steps"] == [
        {"weight": 10.0, "bake": "5m", "approval": False},
        {"weight": 25.0, "bake": "10m", "approval": False},
        {"weight": 50.0, "bake": "15m", "approval": False},
        {"weight": 100.0, "bake": "0s", "approval": False},
    ]


def test_other_defaults() -> None:
    spec = parse_document(minimal()).spec
    assert spec.analysis.interval == 30
    assert spec.analysis.gates == []
    assert (spec.analysis.failure_limit, spec.analysis.inconclusive_limit) == (1, 3)
    assert spec.analysis.consecutive_error_limit == 10
    assert spec.analysis.on_inconclusive == "pause"
    assert spec.notify.model_dump() == {"slack": None}
    data = minimal()
    data["spec"]["analysis"] = {"gates": [gate()]}
    (only,) = parse_document(data).spec.analysis.gates
    assert (only.window, only.min_samples, only.min, only.query) == (300, 0, None, None)


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1.5m", 90),
        ("2h", 7200),
        ("1m30s", 90),
        ("0s", 0),
        (90, 90),
        (0, 0),
        (2.5, 2.5),
    ],
)
def test_duration_syntax(written: str | float, seconds: float) -> None:
    assert parse_duration(written) == seconds
    data = minimal()
    data["spec"]["steps"] = [{"weight": 10, "bake": written}, {"weight": 100}]
    assert parse_document(data).spec.steps[0].bake == seconds


@pytest.mark.parametrize(
    ("seconds", "short"),
    [(300, "5m"), (5400, "1h30m"), (0.5, "500ms"), (90, "1m30s"), (0, "0s"), (3601, "1h1s")],
)
def test_durations_are_written_back_short(seconds: float, short: str) -> None:
    assert format_duration(seconds) == short
    assert parse_duration(short) == seconds


@pytest.mark.parametrize("written", ["5 minutes", "5M", "1m 30s", "-5m", "m", "", -3, True, "5d"])
def test_bad_durations(written: Any) -> None:
    data = minimal()
    data["spec"]["steps"] = [{"weight": 10, "bake": written}, {"weight": 100}]
    found = problems(data)
    assert "is not a duration; write it like 30s, 5m or 1h30m" in found["spec.steps[0].bake"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_stored_spec_reparses_to_an_equal_document(path: Path) -> None:
    document = load_file(path)
    stored = json.loads(json.dumps(document.to_data()))
    assert parse_document(stored) == document
    again = parse_text(yaml.safe_dump(stored), "stored.yaml")
    assert again == document
    assert again.to_data() == stored


def test_round_trip_keeps_short_durations() -> None:
    data = minimal()
    data["spec"]["steps"] = [{"weight": 10, "bake": "1h30m"}, {"weight": 100, "bake": 0.25}]
    data["spec"]["analysis"] = {"interval": 45, "gates": [gate(window="90s")]}
    stored = parse_document(data).to_data()
    assert [s["bake"] for s in stored["spec"]["steps"]] == ["1h30m", "250ms"]
    assert stored["spec"]["analysis"]["interval"] == "45s"
    assert stored["spec"]["analysis"]["gates"][0]["window"] == "1m30s"
    assert stored["apiVersion"] == "canary/v1"
    assert parse_document(stored) == parse_document(data)


def test_json_documents_are_accepted() -> None:
    document = parse_text(json.dumps(minimal(), indent=2), "rollout.json")
    assert document == parse_document(minimal())


# --- bad documents --------------------------------------------------------------------------

DELETE = object()

LAMBDA = {"kind": "lambda-alias", "function": "checkout-api", "alias": "live", "version": "42"}

BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing targets", {"targets": DELETE}, "spec.targets", "required field is missing"),
    ("empty targets", {"targets": []}, "spec.targets", "needs at least 1 item"),
    (
        "weight 0",
        {"steps": [{"weight": 0}, {"weight": 100}]},
        "spec.steps[0].weight",
        "0 is out of range; a weight is the canary's share of traffic in percent",
    ),
    (
        "weight 150",
        {"steps": [{"weight": 10}, {"weight": 150}]},
        "spec.steps[1].weight",
        "150 is out of range",
    ),
    (
        "weights not increasing",
        {"steps": [{"weight": 25}, {"weight": 10}, {"weight": 100}]},
        "spec.steps[1].weight",
        "10 is not above the previous step's 25; weights must increase",
    ),
    (
        "last weight not 100",
        {"steps": [{"weight": 10}, {"weight": 50}]},
        "spec.steps[1].weight",
        "the last step must be 100, not 50; add a final step {weight: 100}",
    ),
    ("no steps", {"steps": []}, "spec.steps", "needs at least 1 item"),
    (
        "unknown target kind",
        {"targets": [{"kind": "ecs-service", "service": "checkout"}]},
        "spec.targets[0].kind",
        "unknown target kind 'ecs-service'; expected one of lambda-alias",
    ),
    (
        "missing kind",
        {"targets": [{"function": "checkout-api", "alias": "live", "version": "42"}]},
        "spec.targets[0].kind",
        "required field is missing; expected one of lambda-alias",
    ),
    (
        "target field missing",
        {"targets": [{"kind": "lambda-alias", "function": "checkout-api", "version": "42"}]},
        "spec.targets[0].alias",
        "required field is missing",
    ),
    (
        "target not a mapping",
        {"targets": ["checkout-api"]},
        "spec.targets[0]",
        "expected a mapping of fields, got str",
    ),
    (
        "bad duration",
        {"steps": [{"weight": 10, "bake": "5 minutes"}, {"weight": 100}]},
        "spec.steps[0].bake",
        "'5 minutes' is not a duration; write it like 30s, 5m or 1h30m",
    ),
    (
        "zero interval",
        {"analysis": {"interval": "0s"}},
        "spec.analysis.interval",
        "0s is out of range; give a duration from 1s to 1h",
    ),
    (
        "unknown gate provider",
        {"analysis": {"gates": [gate(provider="datadog")]}},
        "spec.analysis.gates[0].provider",
        "unknown metric provider 'datadog'; expected 'cloudwatch' or 'prometheus'",
    ),
    (
        "unknown preset",
        {"analysis": {"gates": [gate(preset="lambda-errors")]}},
        "spec.analysis.gates[0].preset",
        "unknown cloudwatch preset 'lambda-errors'; expected one of lambda-error-rate, "
        "lambda-p95-duration",
    ),
    (
        "preset of the other provider",
        {"analysis": {"gates": [gate(provider="prometheus")]}},
        "spec.analysis.gates[0].preset",
        "unknown prometheus preset 'lambda-error-rate'; expected one of http-error-rate",
    ),
    (
        "neither query nor preset",
        {"analysis": {"gates": [{"name": "p95", "provider": "prometheus", "max": 0.5}]}},
        "spec.analysis.gates[0].query",
        "give exactly one of query (your own expression) or preset",
    ),
    (
        "gate without max or min",
        {"analysis": {"gates": [gate(max=None)]}},
        "spec.analysis.gates[0].max",
        "a gate needs a check: set max, min (or both), relative or statistical",
    ),
    (
        "min above max",
        {"analysis": {"gates": [gate(min=0.5, max=0.1)]}},
        "spec.analysis.gates[0].min",
        "min 0.5 is above max 0.1; no value could pass",
    ),
    (
        "negative failure_limit",
        {"analysis": {"failure_limit": -1}},
        "spec.analysis.failure_limit",
        "must be 0 or more, not -1",
    ),
    (
        "negative inconclusive_limit",
        {"analysis": {"inconclusive_limit": -2}},
        "spec.analysis.inconclusive_limit",
        "must be 0 or more, not -2",
    ),
    (
        "negative consecutive_error_limit",
        {"analysis": {"consecutive_error_limit": -3}},
        "spec.analysis.consecutive_error_limit",
        "must be 0 or more, not -3",
    ),
    (
        "unknown on_inconclusive",
        {"analysis": {"on_inconclusive": "ignore"}},
        "spec.analysis.on_inconclusive",
        "'ignore' is not allowed; expected 'pause', 'rollback' or 'continue'",
    ),
    (
        "duplicate gate names",
        {"analysis": {"gates": [gate(), gate(preset="lambda-p95-duration", max=800)]}},
        "spec.analysis.gates[1].name",
        "'error-rate' is already the name of gates[0]; gate names must be unique",
    ),
    (
        "misspelled field",
        {"analysis": {"intervall": "30s"}},
        "spec.analysis.intervall",
        "unknown field 'intervall'; did you mean 'interval'?",
    ),
    (
        "misspelled target field",
        {"targets": [LAMBDA | {"alais": "live"}]},
        "spec.targets[0].alais",
        "unknown field 'alais'; did you mean 'alias'?",
    ),
    (
        "$LATEST",
        {"targets": [LAMBDA | {"version": "$LATEST"}]},
        "spec.targets[0].version",
        "$LATEST cannot take weighted traffic; publish a version",
    ),
    (
        "non-numeric Lambda version",
        {"targets": [LAMBDA | {"version": "v42"}]},
        "spec.targets[0].version",
        "'v42' is not a published version number",
    ),
    (
        "Lambda version as a fraction",
        {"targets": [LAMBDA | {"version": 4.2}]},
        "spec.targets[0].version",
        "expected a string, got 4.2",
    ),
    (
        "two targets naming the same traffic",
        {"targets": [LAMBDA, LAMBDA | {"version": "43"}]},
        "spec.targets[1]",
        "the same traffic as targets[0] (lambda-alias/default-region/checkout-api/live); "
        "remove one",
    ),
    (
        "bad region",
        {"targets": [LAMBDA | {"region": "Ireland"}]},
        "spec.targets[0].region",
        "'Ireland' is not an AWS region name; expected e.g. eu-west-1",
    ),
    (
        "an appconfig flag without its variant",
        {"targets": [{"kind": "appconfig-flag", "application": "shop"}]},
        "spec.targets[0].variant",
        "required field is missing",
    ),
    (
        "bad approval",
        {"steps": [{"weight": 10, "approval": "maybe"}, {"weight": 100}]},
        "spec.steps[0].approval",
        "expected true or false, got 'maybe'",
    ),
    (
        "slack channel",
        {"notify": {"slack": {"channel": "deploys room"}}},
        "spec.notify.slack.channel",
        "'deploys room' is not a Slack channel; give #name",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [case[1:] for case in BAD_SPECS],
    ids=[case[0] for case in BAD_SPECS],
)
def test_bad_spec(spec: dict[str, Any], path: str, message: str) -> None:
    data = minimal()
    for key, value in spec.items():
        if value is DELETE:
            del data["spec"][key]
        else:
            data["spec"][key] = copy.deepcopy(value)
    found = problems(data)
    assert path in found, f"expected a problem at {path}, got {found}"
    assert message in found[path]


def test_bad_document_fields() -> None:
    data = minimal() | {"apiVersion": "canary/v2", "kind": "Deployment"}
    data["metadata"] = {"name": "Checkout_API"}
    found = problems(data)
    assert found["apiVersion"] == "'canary/v2' is not allowed; expected 'canary/v1'"
    assert found["kind"] == "'Deployment' is not allowed; expected 'Rollout'"
    assert "'Checkout_API' is not a valid name" in found["metadata.name"]
    assert found.keys() == {"apiVersion", "kind", "metadata.name"}


def test_missing_sections() -> None:
    found = problems({"apiVersion": "canary/v1"})
    assert found == {
        "kind": "required field is missing",
        "metadata": "required field is missing",
        "spec": "required field is missing",
    }


def test_every_independent_problem_is_reported_at_once() -> None:
    data = minimal()
    data["metadata"]["name"] = "Checkout API"
    data["metadata"]["lables"] = {"team": "payments"}
    data["spec"] = {
        "targets": [
            LAMBDA | {"version": "$LATEST"},
            {"kind": "lambda-function"},
            {
                "kind": "appconfig-flag",
                "application": "web",
                "environment": "prod",
                "profile": "flags",
                "flag": "New checkout",
                "variant": "v2",
            },
        ],
        "steps": [{"weight": 10, "bake": "5 mins"}, {"weight": 150}],
        "analysis": {
            "interval": "0s",
            "failure_limit": -1,
            "on_inconclusive": "ignore",
            "gates": [
                gate(provider="datadog"),
                gate(name="p95", preset="lambda-p95", max=None),
            ],
        },
        "notify": {"slak": {"channel": "#deploys"}},
    }
    found = problems(data)
    expected = {
        "metadata.name": "'Checkout API' is not a valid name",
        "metadata.lables": "did you mean 'labels'?",
        "spec.targets[0].version": "$LATEST cannot take weighted traffic",
        "spec.targets[1].kind": "unknown target kind 'lambda-function'",
        "spec.targets[2].flag": "'New checkout' is not an AppConfig flag key",
        "spec.steps[0].bake": "'5 mins' is not a duration",
        "spec.steps[1].weight": "150 is out of range",
        "spec.analysis.interval": "0s is out of range; give a duration from 1s to 1h",
        "spec.analysis.failure_limit": "must be 0 or more, not -1",
        "spec.analysis.on_inconclusive": "'ignore' is not allowed",
        "spec.analysis.gates[0].provider": "unknown metric provider 'datadog'",
        "spec.analysis.gates[1].preset": "unknown cloudwatch preset 'lambda-p95'",
        "spec.analysis.gates[1].max": "a gate needs a check",
        "spec.notify.slak": "unknown field 'slak'; did you mean 'slack'?",
    }
    assert found.keys() == expected.keys()
    for path, fragment in expected.items():
        assert fragment in found[path], (path, found[path])


def test_error_text_lists_one_problem_per_line() -> None:
    data = minimal()
    data["spec"]["steps"] = [{"weight": 50}, {"weight": 25}]
    with pytest.raises(SpecError) as caught:
        parse_document(data)
    assert str(caught.value).splitlines() == [
        "spec.steps[1].weight: 25 is not above the previous step's 50; "
        "weights must increase from step to step",
        "spec.steps[1].weight: the last step must be 100, not 25; add a final step {weight: 100}",
    ]


def test_unknown_kind_lists_every_known_kind() -> None:
    data = minimal()
    data["spec"]["targets"] = [{"kind": "cloud-run"}]
    message = problems(data)["spec.targets[0].kind"]
    assert message == f"unknown target kind 'cloud-run'; expected one of {', '.join(kind_names())}"


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = "apiVersion: canary/v1\nkind: Rollout\nmetadata:\n  name: x\n   spec: {}\n"
    assert text_problems(text, "rollout.yaml") == [
        "rollout.yaml: line 5, column 8: YAML syntax error: mapping values are not allowed here"
    ]


def test_unclosed_yaml_flow_sequence() -> None:
    text = "apiVersion: canary/v1\nspec:\n  steps: [{weight: 10}\n"
    (message,) = text_problems(text, "rollout.yaml")
    assert message.startswith("rollout.yaml: line 4, column 1: YAML syntax error: expected ','")


def test_json_syntax_error_has_line_and_column() -> None:
    text = '{\n  "apiVersion": "canary/v1",\n  "kind": Rollout\n}\n'
    assert text_problems(text, "rollout.json") == [
        "rollout.json: line 3, column 11: JSON syntax error: Expecting value"
    ]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text("\n   \n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_file(path)
    assert str(caught.value) == f"{path} is empty; expected a rollout document"


def test_file_of_comments_only(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(SpecError, match="holds 0 documents; give exactly one rollout"):
        load_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"cannot read .*nope\.yaml: No such file or directory"):
        load_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["- apiVersion: canary/v1\n", "checkout-api\n", "42\n", "[]"])
def test_document_that_is_not_a_mapping(text: str) -> None:
    assert text_problems(text) == [
        "a rollout document is a mapping with apiVersion, kind, metadata, spec"
    ]


def test_two_documents_in_one_file() -> None:
    text = yaml.safe_dump(minimal()) + "---\n" + yaml.safe_dump(minimal())
    assert text_problems(text, "rollout.yaml") == [
        "rollout.yaml holds 2 documents; give exactly one rollout"
    ]


# --- settings -------------------------------------------------------------------------------


def test_settings_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.listen == "127.0.0.1:8080"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.store_url == "sqlite:///./canary.db"
    assert settings.tokens == []
    assert settings.allow_anonymous is False
    assert (settings.log_format, settings.log_level) == ("auto", "info")
    assert settings.aws_endpoint_url is None


def test_settings_environment_overrides_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(
        "listen: 0.0.0.0:9000\nstore_url: memory://\nlog_level: debug\n", encoding="utf-8"
    )
    from_file = load_settings(path)
    assert (from_file.listen, from_file.store_url, from_file.log_level) == (
        "0.0.0.0:9000",
        "memory://",
        "debug",
    )
    clean_env.setenv("CANARY_LISTEN", "127.0.0.1:7000")
    clean_env.setenv("CANARY_LOG_FORMAT", "JSON")
    settings = load_settings(path)
    assert settings.listen == "127.0.0.1:7000"
    assert settings.log_format == "json"
    assert settings.store_url == "memory://"
    assert settings.log_level == "debug"


def test_settings_tokens_from_environment(clean_env: pytest.MonkeyPatch) -> None:
    token = {"name": "ci", "sha256": "ab" * 32, "role": "deploy"}
    clean_env.setenv("CANARY_TOKENS", json.dumps([token]))
    (only,) = load_settings().tokens
    assert (only.name, only.role) == ("ci", "deploy")


SHA = "0" * 64


@pytest.mark.parametrize(
    ("name", "value", "path", "message"),
    [
        ("CANARY_LISTEN", "8080", "CANARY_LISTEN", "'8080' is not host:port"),
        ("CANARY_LISTEN", "localhost:99999", "CANARY_LISTEN", "is not host:port"),
        (
            "CANARY_STORE_URL",
            "mysql://db/canary",
            "CANARY_STORE_URL",
            "'mysql://db/canary' is not a supported store; use sqlite:///",
        ),
        ("CANARY_TOKENS", "ci:secret", "CANARY_TOKENS", "is not valid JSON; e.g. [{"),
        (
            "CANARY_TOKENS",
            json.dumps([{"name": "ci", "role": "deploy"}]),
            "CANARY_TOKENS[0].sha256",
            "required field is missing",
        ),
        (
            "CANARY_TOKENS",
            json.dumps([{"name": "ci", "sha256": SHA, "role": "admin"}]),
            "CANARY_TOKENS[0].role",
            "'read', 'deploy' or 'operate'",
        ),
        ("CANARY_LOG_FORMAT", "xml", "CANARY_LOG_FORMAT", "'auto', 'json' or 'console'"),
        ("CANARY_LOG_LEVEL", "verbose", "CANARY_LOG_LEVEL", "'debug', 'info', 'warning' or"),
        ("CANARY_ALLOW_ANONYMOUS", "maybe", "CANARY_ALLOW_ANONYMOUS", "valid boolean"),
    ],
)
def test_bad_setting_names_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str, path: str, message: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SpecError) as caught:
        load_settings()
    (problem,) = caught.value.problems
    assert problem.path == path
    assert message in problem.message
    assert str(caught.value).startswith(f"{path}: ")


def test_every_bad_setting_is_reported_at_once(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANARY_LISTEN", "nowhere")
    clean_env.setenv("CANARY_STORE_URL", "redis://cache")
    clean_env.setenv("CANARY_LOG_FORMAT", "xml")
    with pytest.raises(SpecError) as caught:
        load_settings()
    assert [p.path for p in caught.value.problems] == [
        "CANARY_LISTEN",
        "CANARY_STORE_URL",
        "CANARY_LOG_FORMAT",
    ]


def test_bad_settings_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text("- listen\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"^--config: .* must hold a mapping of settings$"):
        load_settings(path)
    path.write_text("listen: [\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"^--config: .* is not valid YAML"):
        load_settings(path)
    with pytest.raises(SpecError, match=r"^--config: cannot read"):
        load_settings(tmp_path / "missing.yaml")
    path.write_text("listne: 0.0.0.0:9000\n", encoding="utf-8")
    with pytest.raises(SpecError, match="unknown setting 'listne'"):
        load_settings(path)


# --- JSON Schema ----------------------------------------------------------------------------


def test_stored_schema_is_current() -> None:
    stored = (ROOT / "config" / "schema.json").read_text(encoding="utf-8")
    assert json.loads(stored) == config.schema.schema(), (
        f"config/schema.json is stale; run: {REGENERATE}"
    )
    assert config.schema.check() is None, (
        f"config/schema.json is not as generated; run: {REGENERATE}"
    )


def test_schema_has_dialect_and_title() -> None:
    generated = config.schema.schema()
    assert generated["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert generated["title"]
    assert generated["required"] == ["apiVersion", "kind", "metadata", "spec"]
    jsonschema.Draft202012Validator.check_schema(generated)


def test_schema_check_reports_a_stale_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "schema.json"
    stale.write_text("{}\n", encoding="utf-8")
    message = config.schema.check(stale)
    assert message == f"{stale} is stale; run: {REGENERATE}"
    assert REGENERATE in (config.schema.check(tmp_path / "absent.json") or "")
    monkeypatch.setattr(config.schema, "SCHEMA_PATH", stale)
    assert config.schema.main(["--check"]) == 1
    assert capsys.readouterr().err == f"{stale} is stale; run: {REGENERATE}\n"


def test_schema_main_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert config.schema.main([]) == 0
    out = capsys.readouterr().out
    assert out.endswith("}\n")
    assert json.loads(out) == config.schema.schema()
    assert out == (ROOT / "config" / "schema.json").read_text(encoding="utf-8")
    assert config.schema.main(["--check"]) == 0
    assert config.schema.main(["--bogus"]) == 2
    assert "usage: python -m config.schema" in capsys.readouterr().err


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    stored = json.loads((ROOT / "config" / "schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(stored)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_schema(
    validator: jsonschema.protocols.Validator, path: Path
) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []


def test_schema_accepts_what_canary_accepts(validator: jsonschema.protocols.Validator) -> None:
    data = minimal()
    data["spec"]["steps"] = [{"weight": 12.5, "bake": 90}, {"weight": 100, "bake": "1h30m"}]
    data["spec"]["analysis"] = {"interval": 30, "gates": [gate(window="1s")]}
    parse_document(data)
    assert list(validator.iter_errors(data)) == []


def test_schema_refuses_what_canary_refuses(validator: jsonschema.protocols.Validator) -> None:
    data = minimal()
    data["spec"]["stpes"] = []
    data["spec"]["targets"].append({"kind": "ecs-service"})
    data["spec"]["analysis"] = {"interval": "5 minutes", "on_inconclusive": "ignore"}
    messages = [e.json_path for e in validator.iter_errors(data)]
    assert "$.spec" in messages
    assert "$.spec.targets[1]" in messages
    assert "$.spec.analysis.interval" in messages
    assert "$.spec.analysis.on_inconclusive" in messages


def test_document_model_round_trips_by_field_name() -> None:
    document = parse_document(minimal())
    assert RolloutDocument.model_validate(document.model_dump()) == document


def test_error_output_in_the_docs_is_real() -> None:
    text = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    after = text.split("A document with five problems:", 1)[1]
    _, document, _, output, _ = after.split("```", 4)
    document = document.removeprefix("yaml\n")
    with pytest.raises(SpecError) as caught:
        parse_text(document, "rollout.yaml")
    assert str(caught.value) == output.strip()


def test_unquoted_lambda_version_is_taken_as_its_number() -> None:
    document = parse_document(minimal() | {"spec": {"targets": [LAMBDA | {"version": 42}]}})
    assert document.spec.targets[0].version == "42"


def test_a_key_given_twice_is_an_error_not_a_silent_override() -> None:
    text = "apiVersion: canary/v1\nkind: Rollout\nspec: {}\nspec: {}\n"
    assert text_problems(text, "rollout.yaml") == [
        "rollout.yaml: line 4, column 1: YAML syntax error: 'spec' is given twice in the "
        "same mapping; keep one"
    ]


def test_flow_style_yaml_is_not_mistaken_for_json() -> None:
    text = (
        "{apiVersion: canary/v1, kind: Rollout, metadata: {name: x}, spec: {targets: "
        '[{kind: lambda-alias, function: f, alias: live, version: "2"}]}}'
    )
    assert parse_text(text, "rollout.yaml").metadata.name == "x"


def test_non_finite_threshold_is_refused() -> None:
    gate = {"name": "e", "provider": "prometheus", "query": "q", "max": float("nan")}
    found = problems(minimal() | {"spec": {"targets": [LAMBDA], "analysis": {"gates": [gate]}}})
    assert found["spec.analysis.gates[0].max"].startswith("must be a finite number")


def test_python_field_names_are_not_accepted_for_aliases() -> None:
    data = minimal()
    data["api_version"] = data.pop("apiVersion")
    assert problems(data)["api_version"].startswith("unknown field 'api_version'")


def test_a_misspelled_canary_variable_stops_the_daemon_with_a_suggestion(
    clean_env: pytest.MonkeyPatch,
) -> None:
    monkeypatch = clean_env
    monkeypatch.setenv("CANARY_STOR_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("CANARY_URL", "http://127.0.0.1:8080")  # the CLI's: not a daemon setting
    with pytest.raises(SpecError) as caught:
        load_settings()
    assert [str(p) for p in caught.value.problems] == [
        "CANARY_STOR_URL: is not a canary setting; did you mean CANARY_STORE_URL?"
    ]


ALLOW = '[{"slack": "U0ANA", "role": "operate"}, {"slack": "S0ONCALL", "role": "operate"}]'


def test_slack_bot_settings_are_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANARY_SLACK_BOT_TOKEN", "xoxb-secret")
    clean_env.setenv("CANARY_SLACK_CHANNEL", "#deploys")
    clean_env.setenv("CANARY_SLACK_ROLLBACK_MENTION", "S0ONCALL")
    settings = load_settings()
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-secret"
    assert "xoxb-secret" not in repr(settings), "the token is never shown"
    assert (settings.slack_channel, settings.slack_rollback_mention) == ("#deploys", "S0ONCALL")


def test_slack_button_settings_are_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANARY_SLACK_BOT_TOKEN", "xoxb-secret")
    clean_env.setenv("CANARY_SLACK_CHANNEL", "#deploys")
    clean_env.setenv("CANARY_SLACK_SIGNING_SECRET", "signing-secret")
    clean_env.setenv("CANARY_SLACK_ALLOWLIST", ALLOW)
    settings = load_settings()
    assert [(g.slack, g.role) for g in settings.slack_allowlist] == [
        ("U0ANA", "operate"),
        ("S0ONCALL", "operate"),
    ]
    assert "signing-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"CANARY_SLACK_BOT_TOKEN": "xoxb-secret"},
            "CANARY_SLACK_CHANNEL: required with CANARY_SLACK_BOT_TOKEN; e.g. #deploys",
        ),
        (
            {"CANARY_SLACK_BOT_TOKEN": "xoxp-user-secret", "CANARY_SLACK_CHANNEL": "#deploys"},
            "CANARY_SLACK_BOT_TOKEN: is not a Slack bot token (they start with xoxb-); copy the "
            "Bot User OAuth Token from the app's OAuth & Permissions page",
        ),
        (
            {"CANARY_SLACK_CHANNEL": "deploys"},
            "CANARY_SLACK_CHANNEL: 'deploys' is not a Slack channel; give #name (lower case, "
            "digits, - and _) or a channel id such as C0123ABCD",
        ),
        (
            {"CANARY_SLACK_ROLLBACK_MENTION": "@oncall"},
            "CANARY_SLACK_ROLLBACK_MENTION: '@oncall' is not a Slack user id (U0123ABCD) or user "
            "group id (S0123ABCD)",
        ),
        (
            {"CANARY_SLACK_ALLOWLIST": "U0ANA"},
            'CANARY_SLACK_ALLOWLIST: is not valid JSON; e.g. [{"slack": "U0123ABCD", "role": '
            '"operate"}]',
        ),
        (
            {"CANARY_SLACK_TOKEN": "xoxb-secret"},
            "CANARY_SLACK_TOKEN: is not a canary setting; did you mean CANARY_SLACK_BOT_TOKEN?",
        ),
        (
            {
                "CANARY_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/secret",
                "CANARY_SLACK_BOT_TOKEN": "xoxb-secret",
                "CANARY_SLACK_CHANNEL": "#deploys",
            },
            "CANARY_SLACK_WEBHOOK_URL: set together with CANARY_SLACK_BOT_TOKEN; canary posts "
            "one way: unset one (the bot token gives one live message per rollout)",
        ),
        (
            {
                "CANARY_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/secret",
                "CANARY_SLACK_CHANNEL": "#deploys",
            },
            "CANARY_SLACK_CHANNEL: an incoming webhook posts to the channel it was made for; "
            "unset CANARY_SLACK_CHANNEL (or use CANARY_SLACK_BOT_TOKEN instead of the webhook)",
        ),
        (
            {"CANARY_SLACK_WEBHOOK_URL": "hooks.slack.com/services/secret"},
            "CANARY_SLACK_WEBHOOK_URL: is not a URL; copy the Webhook URL "
            "(https://hooks.slack.com/services/...) from the app's Incoming Webhooks page",
        ),
        (
            {"CANARY_SLACK_SIGNING_SECRET": "secret", "CANARY_SLACK_ALLOWLIST": ALLOW},
            "CANARY_SLACK_SIGNING_SECRET: buttons live on the bot's message: set "
            "CANARY_SLACK_BOT_TOKEN too, or unset CANARY_SLACK_SIGNING_SECRET",
        ),
        (
            {
                "CANARY_SLACK_BOT_TOKEN": "xoxb-secret",
                "CANARY_SLACK_CHANNEL": "#deploys",
                "CANARY_SLACK_SIGNING_SECRET": "secret",
            },
            "CANARY_SLACK_ALLOWLIST: required with CANARY_SLACK_SIGNING_SECRET (nobody could "
            'press a button); e.g. [{"slack": "U0123ABCD", "role": "operate"}]',
        ),
        (
            {
                "CANARY_SLACK_BOT_TOKEN": "xoxb-secret",
                "CANARY_SLACK_CHANNEL": "#deploys",
                "CANARY_SLACK_ALLOWLIST": ALLOW,
            },
            "CANARY_SLACK_ALLOWLIST: is set but CANARY_SLACK_SIGNING_SECRET is not: without it "
            "there are no buttons; set it (Basic Information > Signing Secret) or unset the "
            "allowlist",
        ),
    ],
)
def test_bad_slack_settings_are_named_with_the_fix(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(SpecError) as caught:
        load_settings()
    assert [str(p) for p in caught.value.problems] == [expected]
    assert "secret" not in str(caught.value), "a secret value is never echoed"


def test_a_bad_key_in_the_config_file_is_named_as_written(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("listne: 0.0.0.0:8080\nlog_level: loud\n")
    with pytest.raises(SpecError) as caught:
        load_settings(path)
    text = str(caught.value)
    assert f"{path}: listne: unknown setting 'listne'" in text
    assert f"{path}: log_level:" in text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(3.9745340000000002, "4s"), (0.25, "250ms"), (12.34, "12.3s"), (90.4, "1m30s"), (0, "0s")],
)
def test_messages_show_durations_rounded_for_people(seconds: float, shown: str) -> None:
    assert display_duration(seconds) == shown


# ---------------------------------------------------------------- bounds (issue 8)

# field path in the document -> its range name in config.durations.RANGES
DURATION_FIELDS = {
    "spec.steps.0.bake": "bake",
    "spec.analysis.interval": "interval",
    "spec.analysis.gates.0.window": "window",
    "spec.analysis.gates.0.statistical.step": "statistical-step",
    "spec.analysis.gates.0.delay": "delay",
    "spec.analysis.warmup": "warmup",
}


def with_field(path: str, value: Any) -> dict[str, Any]:
    data = minimal()
    data["spec"]["steps"] = [{"weight": 10, "bake": "5m"}, {"weight": 100}]
    checked = gate(window="5m")
    if "statistical" in path:  # a statistical gate, its window long enough for 1h steps
        checked = gate(
            provider="prometheus",
            preset="http-p95-latency",
            window="24h",
            statistical={"confidence": 0.95},
        )
        del checked["max"]
    data["spec"]["analysis"] = {"gates": [checked]}
    node: Any = data
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return data


def rendered(path: str) -> str:
    from config.errors import render_path

    return render_path([int(p) if p.isdigit() else p for p in path.split(".")])


@pytest.mark.parametrize("path", DURATION_FIELDS)
def test_each_duration_takes_its_whole_range_and_nothing_beyond(path: str) -> None:
    from config.durations import RANGES

    limits = RANGES[DURATION_FIELDS[path]]
    for inside in (limits.low, limits.high, format_duration(limits.high)):
        parse_document(with_field(path, inside))
    below = limits.low - 0.001 if limits.low > 0 else -1
    for outside in (below, limits.high + 1, format_duration(limits.high + 1)):
        found = problems(with_field(path, outside))
        assert rendered(path) in found, (outside, found)


@pytest.mark.parametrize("path", DURATION_FIELDS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1e300, True])
def test_no_duration_is_infinite_nan_huge_or_boolean(path: str, value: Any) -> None:
    found = problems(with_field(path, value))
    assert rendered(path) in found


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("steps: [{weight: 10, bake: .inf}, {weight: 100}]", "spec.steps[0].bake"),
        ("steps: [{weight: 10, bake: .nan}, {weight: 100}]", "spec.steps[0].bake"),
        ("steps: [{weight: 10, bake: 1e999}, {weight: 100}]", "spec.steps[0].bake"),
        ("analysis: {interval: 1ms}", "spec.analysis.interval"),
        ("steps: [{weight: true}, {weight: 100}]", "spec.steps[0].weight"),
        ("steps: [{weight: .nan}, {weight: 100}]", "spec.steps[0].weight"),
        ("steps: [{weight: 10, approval: yes}, {weight: 100}]", None),
        ("steps: [{weight: 10, approval: 'yes'}, {weight: 100}]", "spec.steps[0].approval"),
        ("analysis: {failure_limit: true}", "spec.analysis.failure_limit"),
        ("analysis: {failure_limit: '3'}", "spec.analysis.failure_limit"),
        ("analysis: {failure_limit: 1001}", "spec.analysis.failure_limit"),
    ],
)
def test_yaml_numbers_and_booleans_are_what_they_say(text: str, path: str | None) -> None:
    base = (
        "apiVersion: canary/v1\nkind: Rollout\nmetadata: {name: a}\nspec:\n"
        "  targets: [{kind: lambda-alias, function: f, alias: live, version: '2'}]\n"
    )
    document = base + "  " + text + "\n"
    if path is None:  # YAML's own boolean: yes is true
        parse_text(document)
        return
    with pytest.raises(SpecError) as caught:
        parse_text(document)
    assert path in [p.path for p in caught.value.problems]


def test_a_whole_float_is_a_whole_number_but_a_fraction_is_not() -> None:
    data = with_field("spec.analysis.failure_limit", 3.0)
    assert parse_document(data).spec.analysis.failure_limit == 3
    assert "spec.analysis.failure_limit" in problems(with_field("spec.analysis.failure_limit", 3.5))


def test_a_confidence_too_close_to_1_is_refused_not_computed_forever() -> None:
    path = "spec.analysis.gates.0.statistical.confidence"
    assert rendered(path) in problems(with_field(path, 0.99999999999))


def test_the_json_schema_carries_each_duration_range() -> None:
    from config.durations import RANGES

    defs = config.schema.schema()["$defs"]
    fields = {
        "bake": defs["Step"]["properties"]["bake"],
        "interval": defs["Analysis"]["properties"]["interval"],
        "window": defs["Gate"]["properties"]["window"],
        "statistical-step": defs["Statistical"]["properties"]["step"],
        "warmup": defs["Analysis"]["properties"]["warmup"],
    }
    for name, field in fields.items():
        text, number = field["anyOf"]
        assert text["format"] == RANGES[name].format
        assert (number["minimum"], number["maximum"]) == (RANGES[name].low, RANGES[name].high)


@pytest.mark.parametrize(
    "text",
    [
        "a:\n" + "  " * 0 + "- " * 40 + "x\n",
        "a: " + "[" * 40 + "]" * 40 + "\n",
    ],
    ids=["block", "flow"],
)
def test_yaml_deeper_than_the_limit_is_a_syntax_problem(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_text(text, "deep.yaml")
    assert "32 levels" in str(caught.value)


def test_a_long_value_is_echoed_short() -> None:
    data = minimal()
    data["metadata"]["name"] = "X" * 100_000
    message = problems(data)["metadata.name"]
    assert len(message) < 300
    assert "100002 characters" in message


def test_a_json_key_given_twice_is_an_error_too() -> None:
    with pytest.raises(SpecError, match="'kind' is given twice in the same object"):
        parse_text('{"apiVersion": "canary/v1", "kind": "Rollout", "kind": "Rollout"}', "r.json")


# (path, value): refused by canary, and so by the JSON Schema (the OpenAPI start body)
REFUSED_BY_BOTH = [
    ("metadata.name", ""),
    ("metadata.name", "Checkout"),
    ("metadata.build", ""),
    ("spec.targets.0.version", ""),
    ("spec.targets.0.version", "$LATEST"),
    ("spec.targets.0.version", "４２"),
    ("spec.targets.0.region", "Europe"),
    ("spec.steps.0.weight", 0),
    ("spec.steps.0.weight", 100.5),
    ("spec.steps.0.weight", True),
    ("spec.steps.0.weight", "10"),
    ("spec.steps.0.approval", "yes"),
    ("spec.steps.0.bake", 8 * 86400),
    ("spec.steps.0.bake", "5 minutes"),
    ("spec.analysis.interval", 0.5),
    ("spec.analysis.interval", "５m"),
    ("spec.analysis.failure_limit", 1001),
    ("spec.analysis.failure_limit", True),
    ("spec.analysis.gates.0.window", 2 * 86400),
    ("spec.analysis.gates.0.min_samples", -1),
    ("metadata.labels", {"": "x"}),
    ("metadata.labels", {"team": "x" * 254}),
]


@pytest.mark.parametrize(("path", "value"), REFUSED_BY_BOTH, ids=[repr(c) for c in REFUSED_BY_BOTH])
def test_the_json_schema_refuses_what_canary_refuses(
    validator: jsonschema.protocols.Validator, path: str, value: Any
) -> None:
    data = with_field(path, value)
    assert problems(data)
    assert list(validator.iter_errors(data)), f"the schema allows {path}: {value!r}"


@pytest.mark.parametrize(
    "gate_fields",
    [
        {"query": "errors"},  # preset and query both
        {"preset": None, "max": None},  # neither, and no check
        {"preset": "http-error-rate"},  # a prometheus preset on cloudwatch
        {"samples_query": "invocations"},  # not with a preset
        {"preset_options": {}},  # prometheus presets only
        {"metrics": {"m1": {"namespace": "n", "metric": "m", "stat": "Sum"}}},  # not with a preset
        {"relative": {}},  # no allowance
    ],
)
def test_the_json_schema_refuses_a_gate_canary_refuses(
    validator: jsonschema.protocols.Validator, gate_fields: dict[str, Any]
) -> None:
    data = minimal()
    data["spec"]["analysis"] = {"gates": [gate(**gate_fields)]}
    assert problems(data)
    assert list(validator.iter_errors(data)), f"the schema allows {gate_fields}"
