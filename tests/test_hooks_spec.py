"""Hooks in the spec, the example plan, and its simulation with scripted hook answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import lambda_target

from analysis.hooks.registry import HOOKS
from config.errors import SpecError
from config.scenario import load_scenario
from config.schema import tables
from config.spec import load_file, parse_document

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "examples" / "smoke-and-e2e.yaml"
SCENARIOS = ROOT / "config" / "examples" / "scenarios"


def doc(hooks: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": "canary/v1",
        "kind": "Rollout",
        "metadata": {"name": "checkout"},
        "spec": {
            "targets": [lambda_target()],
            "steps": [{"weight": 25, "bake": "1m"}, {"weight": 100}],
            "analysis": {
                "gates": [{"name": "errors", "provider": "cloudwatch", "query": "e", "max": 1}]
            }
            | analysis,
            "hooks": hooks,
        },
    }


def problems(hooks: list[dict[str, Any]]) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_document(doc(hooks))
    return {p.path: p.message for p in caught.value.problems}


WEBHOOK = {"name": "smoke", "kind": "webhook", "point": "step", "url": "https://t.example/s"}


def test_the_example_is_the_plan_of_the_issue() -> None:
    document = load_file(EXAMPLE)
    hooks = {h.name: h for h in document.spec.hooks}
    assert [s.weight for s in document.spec.steps] == [10, 25, 50, 100]
    assert {g.name for g in document.spec.analysis.gates} == {"error-rate", "p95-duration"}
    assert (hooks["smoke"].point, hooks["smoke"].weight) == ("step", 25)
    assert (hooks["e2e"].kind, hooks["e2e"].weight) == ("lambda", 50)
    assert hooks["final-validation"].point == "pre-promotion"
    assert (hooks["alarms"].kind, hooks["alarms"].run) == ("cloudwatch-alarm", "every-interval")
    assert hooks["tell-oncall"].point == "on-rollback"
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "secret" not in yaml.safe_load(text)["spec"].__repr__().lower()


def test_a_step_hook_names_a_step_that_exists() -> None:
    found = problems([WEBHOOK | {"weight": 50}])
    assert found == {
        "spec.hooks[0].weight": "no step has weight 50; give one of 25, 100, or omit weight "
        "to run at every step"
    }


def test_step_fields_at_another_point_are_refused_not_ignored() -> None:
    found = problems([WEBHOOK | {"point": "pre-promotion", "weight": 25, "run": "once"}])
    assert set(found) == {"spec.hooks[0].weight", "spec.hooks[0].run"}
    assert "applies to point step only, not pre-promotion" in found["spec.hooks[0].weight"]


def test_hook_names_are_unique_and_distinct_from_gate_names() -> None:
    found = problems([WEBHOOK, WEBHOOK | {"point": "pre-rollout"}, WEBHOOK | {"name": "errors"}])
    assert "already the name of hooks[0]" in found["spec.hooks[1].name"]
    assert "already the name of a gate" in found["spec.hooks[2].name"]


def test_an_alarm_gate_where_nothing_is_decided_is_refused() -> None:
    alarm = {"name": "a", "kind": "cloudwatch-alarm", "point": "post-rollout", "alarms": ["x"]}
    found = problems([alarm])
    assert (
        "is a gate; give point pre-rollout, step or pre-promotion" in found["spec.hooks[0].point"]
    )


def test_an_unknown_hook_kind_lists_the_kinds() -> None:
    found = problems([WEBHOOK | {"kind": "webhok"}])
    assert found == {
        "spec.hooks[0].kind": "unknown hook kind 'webhok'; expected one of "
        + ", ".join(h.name for h in HOOKS)
    }


def test_a_secret_or_header_has_no_place_in_the_spec() -> None:
    found = problems([WEBHOOK | {"secret": "s3cr3t", "headers": {"Authorization": "x"}}])
    assert set(found) == {"spec.hooks[0].secret", "spec.hooks[0].headers"}


def test_timeout_and_retries_are_bounded() -> None:
    found = problems([WEBHOOK | {"timeout": "2h", "retries": 11}])
    assert "from 1s to 1h" in found["spec.hooks[0].timeout"]
    assert "10 or less" in found["spec.hooks[0].retries"]


def test_alarm_hooks_name_alarms_or_a_prefix_not_both() -> None:
    both = {"name": "a", "kind": "cloudwatch-alarm", "point": "step", "alarms": ["x"]}
    found = problems([both | {"alarm_prefix": "x-"}])
    assert "exactly one of alarms" in found["spec.hooks[0]"]


def test_the_readme_lists_every_hook_kind_from_the_registry() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [table] = [t for t in tables().split("\n\n") if t.startswith("| hook kind |")]
    for kind in HOOKS:
        assert f"| `{kind.name}` |" in table
    assert table.strip() in readme


def test_a_scenario_scripts_hook_answers() -> None:
    scenario = load_scenario(SCENARIOS / "e2e-fails-at-50.yaml")
    assert scenario.hooks["e2e"][0].answer == "fail"
    assert scenario.hooks["smoke"][0].status == 200


def simulate(scenario: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "canary",
            "simulate",
            "-f",
            str(EXAMPLE),
            "--scenario",
            str(SCENARIOS / scenario),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines_with(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


def test_simulate_runs_the_smoke_test_at_25_and_the_end_to_end_suite_at_50() -> None:
    run = simulate("smoke-and-e2e-healthy.yaml")
    assert run.returncode == 0, run.stderr
    [smoke] = lines_with(run.stdout, "hook smoke")
    assert " 25%  " in smoke
    assert "PASS (webhook at step)" in smoke
    [e2e] = lines_with(run.stdout, "hook e2e")
    assert " 50%  " in e2e
    assert "(lambda at step)" in e2e
    [final] = lines_with(run.stdout, "hook final-validation")
    assert "pre-promotion" in final
    assert run.stdout.index("hook final-validation") < run.stdout.index("promoted:")
    assert "final phase: succeeded" in run.stdout


def test_simulate_a_failing_end_to_end_suite_rolls_the_release_back() -> None:
    run = simulate("e2e-fails-at-50.yaml")
    assert run.returncode == 0, run.stderr
    e2e = lines_with(run.stdout, "hook e2e")
    assert e2e
    assert all(" 50%  " in line and "FAIL" in line for line in e2e)
    assert lines_with(run.stdout, "rolling back: 2 failed evaluation(s)")
    assert "payment step returned 502" in lines_with(run.stdout, "rolling back")[0]
    assert "final phase: rolled_back" in run.stdout
    assert not lines_with(run.stdout, "hook final-validation")
    assert lines_with(run.stdout, "hook tell-oncall")  # told after the rollback
