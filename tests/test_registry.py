"""One declaration per extension point: what is derived from the kind and provider
declarations stays equal to them, and the layering that lets a kind's spec model live in
its own module holds."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

import config.schema
from analysis.registry import PROVIDERS, provider_names
from config.settings import Settings, unknown_environment
from config.spec import Gate, PresetOptions, RolloutSpec, known_field_names, parse_document
from strategies.registry import KINDS, PLANNED, kind_names

ROOT = Path(__file__).resolve().parent.parent


def test_each_kind_declares_the_kind_its_spec_model_accepts() -> None:
    for kind in KINDS:
        assert get_args(kind.spec.model_fields["kind"].annotation) == (kind.name,)
    assert not set(PLANNED) & set(kind_names()), "a built kind is no longer planned"


def test_the_spec_union_and_the_schema_are_the_declared_kinds() -> None:
    schema = config.schema.schema()
    defs = schema["$defs"]
    items = defs["RolloutSpec"]["properties"]["targets"]["items"]
    refs = [items["$ref"]] if "$ref" in items else [v["$ref"] for v in items["oneOf"]]
    kinds = [defs[ref.rsplit("/", 1)[1]]["properties"]["kind"]["const"] for ref in refs]
    assert kinds == list(kind_names())
    assert defs["Gate"]["properties"]["provider"]["enum"] == list(provider_names())
    stored = json.loads((ROOT / "config" / "schema.json").read_text(encoding="utf-8"))
    assert stored == schema


def test_gate_providers_and_presets_come_from_the_declarations() -> None:
    assert get_args(Gate.model_fields["provider"].annotation) == provider_names()
    for provider in PROVIDERS:
        for preset in provider.presets:
            gate = Gate(name="g", provider=provider.name, preset=preset.name, max=1)
            assert gate.preset == preset.name
    with pytest.raises(ValueError, match="unknown prometheus preset 'lambda-error-rate'"):
        Gate(name="g", provider="prometheus", preset="lambda-error-rate", max=1)


def test_a_providers_settings_are_daemon_settings_under_their_old_names() -> None:
    """CANARY_PROMETHEUS_* are declared by the prometheus module, read as before."""
    declared = {
        f"CANARY_{name.upper()}"
        for provider in PROVIDERS
        if provider.settings is not None
        for name in provider.settings.model_fields
    }
    assert "CANARY_PROMETHEUS_URL" in declared
    assert unknown_environment(dict.fromkeys(declared, "x")) == []
    settings = Settings(prometheus_url="http://prometheus:9090", prometheus_timeout=3)
    assert (settings.prometheus_url, settings.prometheus_timeout) == ("http://prometheus:9090", 3)


def test_every_models_field_is_known_for_suggestions() -> None:
    names = set(known_field_names())
    for model in (*(k.spec for k in KINDS), PresetOptions, RolloutSpec):
        assert set(model.model_fields) <= names, model.__name__
    assert {"function", "account", "requests_metric", "namespace", "dimensions"} <= names


def test_the_readme_tables_are_the_declarations() -> None:
    """The README's tables of kinds, providers and presets, as ``--tables`` prints them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for table in config.schema.tables().split("\n\n"):
        assert table.strip() in readme, (
            "the README's tables differ from the declarations; paste the output of "
            f"`python -m config.schema --tables`:\n{table}"
        )


def test_a_minimal_spec_of_every_kind_is_accepted() -> None:
    """What docs/architecture.md promises a new kind: its model is in the union at once."""
    samples: dict[str, dict[str, Any]] = {
        "lambda-alias": {"function": "f", "alias": "live", "version": "2"},
        "k8s-gateway-api": {"route": "r", "stable_service": "a", "canary_service": "b"},
        "k8s-istio": {
            "virtual_service": "r",
            "host": "r",
            "stable_subset": "a",
            "canary_subset": "b",
        },
        "k8s-nginx": {"ingress": "w", "canary_ingress": "c", "canary_service": "s"},
        "k8s-smi": {
            "traffic_split": "t",
            "root_service": "r",
            "stable_service": "a",
            "canary_service": "b",
        },
        "appconfig-flag": {
            "application": "a",
            "environment": "e",
            "profile": "p",
            "flag": "f",
            "variant": "v",
        },
    }
    assert set(samples) == set(kind_names()), "add a sample target for the new kind here"
    for name, fields in samples.items():
        doc = parse_document(
            {
                "apiVersion": "canary/v1",
                "kind": "Rollout",
                "metadata": {"name": "x"},
                "spec": {"targets": [{"kind": name, **fields}]},
            }
        )
        assert doc.spec.targets[0].kind == name


# ---------------------------------------------------------------- layering


def _imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions, not for type checking)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


ASSEMBLED = {"config.spec", "config.settings", "config.schema", "config.scenario"}
BELOW_THE_SPEC = [
    "config.targets",
    "config.durations",
    "config.errors",
    "config.templates",
    "config.metricmath",
    "config.expressions",
    "strategies.base",
    "strategies.kind",
    "strategies.aws",
    "strategies.retry",
    "strategies.registry",
    "strategies.lambda_alias",
    "analysis.base",
    "analysis.kind",
    "analysis.registry",
    "analysis.cloudwatch",
    "analysis.prometheus",
    "analysis.hooks.kind",
    "analysis.hooks.registry",
    "analysis.hooks.webhook",
    "analysis.hooks.lambda_hook",
    "analysis.hooks.cloudwatch_alarm",
    "analysis.hooks.prometheus_alert",
]


@pytest.mark.parametrize("module", BELOW_THE_SPEC)
def test_declarations_sit_below_the_assembled_spec(module: str) -> None:
    """docs/architecture.md: kind and provider modules (and what they use) never import the
    assembled spec or settings, nor canary; the field helpers of config import only config."""
    path = ROOT / (module.replace(".", "/") + ".py")
    imported = _imports(path)
    assert not imported & ASSEMBLED, f"{module} imports {imported & ASSEMBLED}"
    assert not any(m == "canary" or m.startswith("canary.") for m in imported)
    if module.startswith("config."):
        ours = {m for m in imported if m.split(".")[0] in {"canary", "strategies", "analysis"}}
        assert not ours, f"{module} imports {ours}"


def test_strategies_never_import_analysis_nor_canary() -> None:
    for path in sorted((ROOT / "strategies").glob("*.py")):
        imported = _imports(path)
        assert not any(m.split(".")[0] in {"analysis", "canary"} for m in imported), path.name


def test_analysis_imports_strategies_only_for_aws_access_and_error_wording() -> None:
    for path in sorted((ROOT / "analysis").glob("*.py")):
        imported = {m for m in _imports(path) if m.split(".")[0] in {"strategies", "canary"}}
        allowed = {"strategies.errortext"}  # a leaf: one line of a backend's error
        if _module(path) == "analysis.cloudwatch":
            allowed.add("strategies.aws")
        assert imported <= allowed, f"{path.name} imports {imported}"


def test_hook_kinds_import_strategies_only_for_aws_access_and_error_wording() -> None:
    """The AWS hook kinds share the daemon's AWS access (and read its errors as the AWS
    kinds do); no hook kind imports canary: timeouts and retries are the engine's."""
    for path in sorted((ROOT / "analysis" / "hooks").glob("*.py")):
        imported = {m for m in _imports(path) if m.split(".")[0] in {"strategies", "canary"}}
        allowed = {"strategies.errortext"}
        if _module(path) in {"analysis.hooks.lambda_hook", "analysis.hooks.cloudwatch_alarm"}:
            allowed |= {"strategies.aws", "strategies.base"}
        assert imported <= allowed, f"{path.name} imports {imported}"


def test_reading_a_spec_and_starting_a_daemon_load_no_sdk() -> None:
    """Declarations are cheap: SDKs and HTTP clients load on the first call that needs one."""
    check = (
        "import sys\n"
        "from config.spec import load_file\n"
        "import canary.daemon\n"
        "load_file('config/examples/lambda-alias-prometheus.yaml')\n"
        "sdks = ('boto3', 'botocore', 'requests', 'prometheus_api_client', 'kubernetes')\n"
        "print(sorted(m for m in sdks if m in sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
