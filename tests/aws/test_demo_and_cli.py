"""``canary demo`` as a user runs it, and ``canary validate --preflight`` against moto."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from motohelpers import REGION, Moto
from services import free_port
from test_cli import GOOD

from canary.cli import cli


def test_the_demo_promotes_a_and_the_flag_and_rolls_back_b_offline_within_90_seconds() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CANARY_"))}
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "canary", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "compressed to seconds" in out
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/ ", out), "the dashboard's URL"
    assert "moto does not compute percentiles" in out
    assert "rollout A, version 2" in out
    assert "succeeded at step 4/4 (as expected)" in out
    assert "rollout B, version 3" in out
    assert "rolled_back at step 1/4: 1 failed evaluation(s)" in out
    assert "(as expected)" in out.split("rolled_back at step 1/4")[1]
    assert re.search(r"error-rate 0\.0[5-9]\d* > max 0\.02", out), "B's failing value is shown"
    assert "alias live now serves: 2 (version 2 only, as expected)" in out
    assert "rollout C, variant v2" in out
    assert "flag new-pricing now: variants v2 (v2 is the default, as expected)" in out
    assert re.search(r"C  step 1/4    10%  traffic at 10% .*COMPLETE", out), "C's deployment"
    assert "demo: every outcome as expected" in out
    assert "Traceback" not in run.stderr
    assert took < 90


@pytest.mark.parametrize(
    ("version", "code", "expected"),
    [
        ("2", 0, "ok: checkout: lambda-alias/us-east-1/checkout/live"),
        (
            "9",
            1,
            "preflight: spec.targets[0] (lambda-alias/us-east-1/checkout/live): the "
            "canary version 9 of function checkout does not exist in us-east-1",
        ),
        ("1", 1, "version 1 is already the version alias live serves"),
    ],
)
def test_validate_preflight_asks_lambda_through_the_daemons_settings(
    version: str,
    code: int,
    expected: str,
    moto: Moto,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moto.function()
    monkeypatch.setenv("CANARY_AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("CANARY_AWS_REGION", REGION)
    path = os.path.join(str(tmp_path), "rollout.yaml")
    with open(path, "w") as f:
        f.write(GOOD.replace('version: "2"', f'version: "{version}"'))
    run = CliRunner().invoke(cli, ["validate", "-f", path, "--preflight"])
    assert run.exit_code == code, run.output
    assert expected in run.output
    assert moto.alias() == ("1", {})


def test_a_daemon_loads_boto3_only_when_it_calls_aws() -> None:
    check = (
        "import sys\n"
        "from canary.daemon import build_providers\n"
        "from config.settings import Settings\n"
        "from config.spec import parse_text\n"
        "from strategies.registry import Clients, create_strategy\n"
        "settings = Settings()\n"
        "clients = Clients(settings)\n"
        "build_providers(settings, clients)\n"
        f"doc = parse_text({GOOD!r})\n"
        "create_strategy(doc.spec.targets[0], None, clients)\n"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


GATED = GOOD + (
    "  analysis:\n"
    "    gates:\n"
    "      - {name: errors, provider: cloudwatch, preset: lambda-error-rate, max: 0.01}\n"
    "      - {name: latency, provider: prometheus, query: p95, max: 0.5}\n"
)


@pytest.mark.parametrize("prometheus", ["unreachable", "unset"])
def test_validate_preflight_names_a_provider_that_cannot_answer(
    prometheus: str, moto: Moto, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto.function()
    monkeypatch.setenv("CANARY_AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("CANARY_AWS_REGION", REGION)
    monkeypatch.delenv("CANARY_PROMETHEUS_URL", raising=False)
    port = free_port()
    if prometheus == "unreachable":
        monkeypatch.setenv("CANARY_PROMETHEUS_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("CANARY_PROMETHEUS_TIMEOUT", "2")
    path = os.path.join(str(tmp_path), "rollout.yaml")
    with open(path, "w") as f:
        f.write(GATED)
    run = CliRunner().invoke(cli, ["validate", "-f", path, "--preflight"])
    assert run.exit_code == 1, run.output
    expected = {
        "unreachable": "preflight: spec.analysis: the prometheus provider of gate(s) 'latency' "
        f"is unreachable: cannot connect to http://127.0.0.1:{port}",
        "unset": "preflight: spec.analysis: the prometheus provider of gate(s) 'latency' is not "
        "configured in this daemon: set CANARY_PROMETHEUS_URL",
    }[prometheus]
    assert expected in run.output
    assert "cloudwatch" not in run.output, "CloudWatch (moto) answered its health check"
