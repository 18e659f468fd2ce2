"""The README's "Against moto" example, run as a newcomer runs it: a real ``canary serve``
on moto, and ``canary rollout start --wait`` from the CLI.

The example leaves out the percentile gate, which moto cannot serve; the second test puts
it back and shows what a newcomer then sees: a gate that is ERROR with one line of moto's
HTML 500 page (never the page) in the events, the rollback reason, the ``--wait`` output
and ``rollout list``.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from daemon import CANARY, Daemon
from motohelpers import REGION, Moto

README = (Path(__file__).parent.parent.parent / "README.md").read_text()
P95 = (
    "      - {name: p95-duration, provider: cloudwatch, preset: lambda-p95-duration, max: 800, "
    "delay: 0s}\n"
)


def moto_example() -> str:
    return README.split("# checkout-moto.yaml\n")[1].split("```")[0]


def start_and_wait(daemon: Daemon, spec: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CANARY, "rollout", "start", "-f", str(spec), "--wait", "--url", daemon.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=daemon.env,
    )


def test_the_readme_says_which_gates_moto_cannot_serve() -> None:
    section = README.split("### Against moto")[1].split("```")[0]
    assert "cannot serve percentile gates" in section
    assert "lambda-p95-duration" in section
    assert "p95" not in moto_example()


def test_the_readmes_moto_example_runs_against_moto(moto: Moto, tmp_path: Path) -> None:
    moto.function("checkout-api", versions=2)
    spec = tmp_path / "checkout-moto.yaml"
    spec.write_text(moto_example())
    daemon = Daemon(tmp_path, CANARY_AWS_ENDPOINT_URL=moto.url, CANARY_AWS_REGION=REGION).start()
    try:
        run = start_and_wait(daemon, spec)
    finally:
        assert daemon.stop() == 0
    assert run.returncode == 0, run.stdout + run.stderr
    assert " succeeded " in run.stdout.splitlines()[-1]
    assert moto.alias("checkout-api") == ("2", {})


def test_a_p95_gate_against_moto_shows_one_line_of_its_error_everywhere(
    moto: Moto, tmp_path: Path
) -> None:
    moto.function("checkout-api", versions=2)
    with_p95 = moto_example().replace("    on_inconclusive: continue\n", "")
    with_p95 = with_p95.replace("min_samples: 200}\n", "min_samples: 200}\n" + P95)
    with_p95 += "    consecutive_error_limit: 2\n"
    # moto answers 500 to a p95 stat only when it has data points to compute it over.
    moto.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Duration",
                "Dimensions": [
                    {"Name": "FunctionName", "Value": "checkout-api"},
                    {"Name": "Resource", "Value": "checkout-api:live"},
                    {"Name": "ExecutedVersion", "Value": v},
                ],
                "Value": 300.0,
            }
            for v in ("1", "2")
        ],
    )
    spec = tmp_path / "checkout-p95.yaml"
    spec.write_text(with_p95)
    daemon = Daemon(tmp_path, CANARY_AWS_ENDPOINT_URL=moto.url, CANARY_AWS_REGION=REGION).start()
    try:
        run = start_and_wait(daemon, spec)
        listing = subprocess.run(
            [*CANARY, "rollout", "list", "--url", daemon.url, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=daemon.env,
        )
        [rollout] = json.loads(listing.stdout)["items"]
        url = f"{daemon.url}/api/v1/rollouts/{rollout['id']}/events"
        with urllib.request.urlopen(url, timeout=30) as answer:
            events = json.loads(answer.read())["items"]
    finally:
        assert daemon.stop() == 0
    assert run.returncode == 1, run.stdout + run.stderr
    said = "cloudwatch:GetMetricData failed, AWS answered 500 Internal Server Error"
    assert said in run.stdout  # the gate lines of --wait
    assert said in run.stdout.splitlines()[-1]  # the final line, with the reason
    assert said in rollout["reason"]
    for text in (run.stdout, run.stderr, rollout["reason"], *(e["message"] for e in events)):
        assert "<" not in text, text
    assert all("\n" not in e["message"] for e in events)
