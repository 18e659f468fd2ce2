"""The ``canary`` command as users and CI meet it: messages, exit codes, no tracebacks."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon import CANARY, serve, wait_healthy
from services import free_port

from canary.cli import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "config" / "examples"

GOOD = """\
apiVersion: canary/v1
kind: Rollout
metadata: {name: checkout}
spec:
  targets:
    - {kind: lambda-alias, function: checkout, alias: live, version: "2"}
"""

BAD_SPECS = {
    "missing target": (
        "apiVersion: canary/v1\nkind: Rollout\nmetadata: {name: x}\nspec: {}\n",
        "spec.targets: required field is missing",
    ),
    "weight 0": (GOOD + "  steps: [{weight: 0}, {weight: 100}]\n", "spec.steps[0].weight: 0 is"),
    "weight 150": (GOOD + "  steps: [{weight: 150}]\n", "spec.steps[0].weight: 150 is out"),
    "not increasing": (
        GOOD + "  steps: [{weight: 50}, {weight: 40}, {weight: 100}]\n",
        "spec.steps[1].weight: 40 is not above the previous step's 50",
    ),
    "last not 100": (
        GOOD + "  steps: [{weight: 10}, {weight: 50}]\n",
        "spec.steps[1].weight: the last step must be 100",
    ),
    "unknown kind": (
        GOOD.replace("lambda-alias", "lambda"),
        "spec.targets[0].kind: unknown target kind 'lambda'; expected one of lambda-alias",
    ),
    "bad duration": (
        GOOD + "  steps: [{weight: 10, bake: 5 minutes}, {weight: 100}]\n",
        "spec.steps[0].bake: '5 minutes' is not a duration",
    ),
    "unknown provider": (
        GOOD + "  analysis:\n    gates: [{name: e, provider: datadog, query: q, max: 1}]\n",
        "spec.analysis.gates[0].provider: unknown metric provider 'datadog'",
    ),
    "negative limit": (
        GOOD + "  analysis: {failure_limit: -1}\n",
        "spec.analysis.failure_limit: must be 0 or more",
    ),
    "duplicate gates": (
        GOOD
        + "  analysis:\n    gates:\n"
        + "      - {name: e, provider: prometheus, query: q, max: 1}\n" * 2,
        "spec.analysis.gates[1].name: 'e' is already the name of gates[0]",
    ),
    "yaml syntax": (GOOD + "  steps: [{weight: 10}\n", "YAML syntax error"),
    "latest": (GOOD.replace('"2"', "$LATEST"), "spec.targets[0].version: $LATEST cannot"),
    "typo": (GOOD + "  stpes: []\n", "spec.stpes: unknown field 'stpes'; did you mean 'steps'?"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_named_with_its_path_and_exits_2(case: str, tmp_path: Path) -> None:
    text, expected = BAD_SPECS[case]
    path = tmp_path / "rollout.yaml"
    path.write_text(text)
    run = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert run.exit_code == 2, run.output
    assert expected in run.output
    assert "Traceback" not in run.output


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    text = GOOD.replace("lambda-alias", "k8s-istio") + "  steps: [{weight: 150}]\n"
    path.write_text(text + "  analysis: {inconclusive_limit: -2}\n")
    run = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    for where in ("spec.targets[0]", "spec.steps[0].weight", "spec.analysis.inconclusive_limit"):
        assert where in run.output


def test_valid_spec_prints_its_plan(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(GOOD)
    run = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert run.exit_code == 0
    assert "10% (5m) → 25% (10m) → 50% (15m) → 100%" in run.output


def test_missing_file_is_a_clear_error() -> None:
    run = CliRunner().invoke(cli, ["validate", "-f", "/nonexistent/rollout.yaml"])
    assert run.exit_code == 2
    assert "cannot read /nonexistent/rollout.yaml" in run.output


def test_an_unknown_kind_is_refused_by_validate_with_the_kinds_there_are(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "rollout.yaml"
    text = (EXAMPLES / "appconfig-flag.yaml").read_text(encoding="utf-8")
    spec.write_text(text.replace("kind: appconfig-flag", "kind: appconfig-flags"))
    run = CliRunner().invoke(cli, ["validate", "-f", str(spec)])
    assert run.exit_code == 2
    assert (
        "spec.targets[0].kind: unknown target kind 'appconfig-flags'; expected one of "
        "lambda-alias, k8s-gateway-api, k8s-istio, k8s-smi, k8s-nginx, appconfig-flag"
    ) in run.output


def simulate(scenario: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *CANARY,
            "simulate",
            "-f",
            str(EXAMPLES / "lambda-alias.yaml"),
            "--scenario",
            str(EXAMPLES / "scenarios" / scenario),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_simulated_error_spike_rolls_back_during_the_25_bake_showing_the_value() -> None:
    run = simulate("error-spike-at-25.yaml", "--expect", "rolled_back")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    rollback = next(line for line in lines if "rolling back:" in line)
    assert " 2/4 " in rollback
    assert " 25%" in rollback
    assert "error-rate 0.05 > max 0.01" in rollback
    assert "50%" not in "".join(lines[lines.index(rollback) :])
    assert lines[-2].startswith("final phase: rolled_back")


def test_simulated_healthy_release_succeeds_after_the_whole_plan() -> None:
    run = simulate("healthy.yaml", "--output", "json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["rollout"]["phase"] == "succeeded"
    shifted = [e["data"]["weight"] for e in result["events"] if e["kind"] == "traffic.shifted"]
    assert shifted == [10, 25, 50, 100]
    assert result["virtual_seconds"] == 1800


def test_simulate_expect_fails_when_the_outcome_differs() -> None:
    run = simulate("healthy.yaml", "--expect", "rolled_back")
    assert run.returncode == 1
    assert "expected rolled_back, got succeeded" in run.stderr


def test_scenario_commands_and_drift_are_played(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "metrics: {error-rate: {canary: 0.001}, p95-duration: {canary: 100}}\n"
        "drift: [{at: 2m, weight: 70}]\n"
        "commands: [{at: 10m, command: abort, reason: drifted, actor: ana}]\n"
    )
    run = CliRunner().invoke(
        cli, ["simulate", "-f", str(EXAMPLES / "lambda-alias.yaml"), "--scenario", str(scenario)]
    )
    assert run.exit_code == 0, run.output
    assert "serves foreign split (stable + hand-edit at 70%)" in run.output
    assert "aborted by ana: drifted" in run.output
    assert "final phase: rolled_back" in run.output


def test_serve_answers_healthz_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = serve(tmp_path, CANARY_LISTEN=f"127.0.0.1:{port}")
    try:
        assert wait_healthy(port, proc)["status"] == "ok"
        second = serve(tmp_path, CANARY_LISTEN=f"127.0.0.1:{free_port()}")
        _, err = second.communicate(timeout=20)
        assert second.returncode == 2
        assert "another canary daemon" in err
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "daemon.stopped" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("/proc/canary.db", "cannot create /proc/canary.db.lock"),  # no files can be made there
        ("{tmp}", "unable to open database file"),  # a directory, not a file
    ],
)
def test_serve_refuses_an_unusable_store_naming_the_setting(
    tmp_path: Path, where: str, why: str
) -> None:
    url = "sqlite:///" + where.format(tmp=tmp_path)
    proc = serve(tmp_path, CANARY_STORE_URL=url, CANARY_LISTEN=f"127.0.0.1:{free_port()}")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2, err
    assert f"CANARY_STORE_URL {url!r} cannot be used" in err
    assert why in err
    assert "Traceback" not in err
    assert "FileNotFoundError" not in err


def test_serve_refuses_a_bad_setting_by_name(tmp_path: Path) -> None:
    proc = serve(tmp_path, CANARY_LISTEN="localhost")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "CANARY_LISTEN: 'localhost' is not host:port" in err
    assert "Traceback" not in err
