"""``canary rollout ...`` against a live ``canary serve``, as a CI job runs it.

The daemon is a real subprocess with a real SQLite store and real tokens. Its targets are
in-memory and its metrics scripted (``CANARY_STRATEGIES=memory`` with ``CANARY_SCENARIO``,
settings that exist for tests and demos and are announced with a warning), because no cloud
backend is reachable here; everything else (API, auth, engine, gates, event stream, exit
codes) is what production runs. Bakes last a second or three, so rollouts end in seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner
from daemon import CANARY, Daemon, serve, token_setting
from services import free_port

from canary.cli import cli
from canary.client import ApiError, Client

TOKENS = {
    "reader": ("r-secret", "read"),
    "ci": ("d-secret", "deploy"),
    "ana": ("o-secret", "operate"),
}
SCENARIO = """\
description: error-rate is fine, bad-error-rate is not
metrics:
  error-rate: {canary: 0.002}
  bad-error-rate: {canary: 0.05}
"""


def spec(function: str, gate: str = "error-rate", bake: str = "1s", approval: bool = False) -> str:
    step = f"{{weight: 50, bake: {bake}{', approval: true' if approval else ''}}}"
    return f"""\
apiVersion: canary/v1
kind: Rollout
metadata: {{name: {function}}}
spec:
  targets:
    - {{kind: lambda-alias, function: {function}, alias: live, version: "2"}}
  steps: [{step}, {{weight: 100}}]
  analysis:
    interval: 1s
    failure_limit: 0
    gates:
      - {{name: {gate}, provider: cloudwatch, query: errors, max: 0.01}}
"""


def memory_daemon(tmp: Path) -> Daemon:
    scenario = tmp / "scenario.yaml"
    scenario.write_text(SCENARIO)
    return Daemon(
        tmp,
        CANARY_TOKENS=token_setting(TOKENS),
        CANARY_STRATEGIES="memory",
        CANARY_SCENARIO=str(scenario),
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = memory_daemon(tmp_path_factory.mktemp("daemon")).start()
    yield d
    assert d.stop() == 0
    assert "Traceback" not in d.log()


def write(tmp_path: Path, text: str, name: str = "rollout.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def command(url: str, *args: str, token: str | None = "ci") -> list[str]:
    auth = ["--token", TOKENS[token][0]] if token else []
    return [*CANARY, "rollout", *args, "--url", url, *auth]


def canary(url: str, *args: str, token: str | None = "ci") -> subprocess.CompletedProcess[str]:
    """``canary rollout ARGS`` as CI runs it: a process of its own."""
    return subprocess.run(
        command(url, *args, token=token), capture_output=True, text=True, timeout=90
    )


def invoke(daemon: Daemon, *args: str, token: str = "ana") -> tuple[int, str]:
    """``canary rollout ARGS`` in-process (quicker than a subprocess): exit code, output."""
    run = CliRunner().invoke(
        cli, ["rollout", *args, "--url", daemon.url, "--token", TOKENS[token][0]]
    )
    return run.exit_code, run.output


def started_id(output: str) -> str:
    return output.split("started: ")[1].split()[0]


def until(condition: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_start_wait_exits_0_when_promoted_showing_progress(daemon: Daemon, tmp_path: Path) -> None:
    run = canary(daemon.url, "start", "-f", write(tmp_path, spec("fn-ok")), "--wait")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "started: " in out
    assert re.search(r"\+00:0\d\s+1/2\s+50%\s+traffic at 50%", out)
    assert re.search(r"1/2\s+50%\s+gates: error-rate 0.002 PASS", out)
    assert re.search(r"2/2\s+100%\s+promoted: the canary is now the stable version", out)
    assert out.splitlines()[-1].startswith("final: ")
    assert " succeeded " in out.splitlines()[-1]


def test_start_wait_exits_1_when_rolled_back_naming_the_value(
    daemon: Daemon, tmp_path: Path
) -> None:
    path = write(tmp_path, spec("fn-bad", gate="bad-error-rate"))
    run = canary(daemon.url, "start", "-f", path, "--wait", "--output", "json")
    assert run.returncode == 1, run.stderr
    final = json.loads(run.stdout)
    assert final["phase"] == "rolled_back"
    assert "bad-error-rate 0.05 > max 0.01" in final["reason"]
    assert "rolling back: " in run.stderr, "progress goes to stderr with --output json"


def test_start_wait_exits_3_on_timeout_and_the_rollout_goes_on(
    daemon: Daemon, tmp_path: Path
) -> None:
    path = write(tmp_path, spec("fn-slow", bake="1h"))
    run = canary(daemon.url, "start", "-f", path, "--wait", "--timeout", "2s", "--output", "json")
    assert run.returncode == 3, run.stderr
    assert "timed out after 2s" in run.stderr
    now = json.loads(run.stdout)  # the rollout as it was when the CLI gave up
    rid = now["id"]
    assert now["phase"] == "baking"
    assert f"canary rollout abort {rid}" in run.stderr
    code, out = invoke(daemon, "status", rid, token="reader")
    assert code == 0
    assert " baking " in out
    code, out = invoke(daemon, "abort", rid, "--reason", "timed out in CI", "--output", "json")
    assert code == 0, out
    assert json.loads(out)["phase"] in ("rolling_back", "rolled_back")


def test_unreachable_daemon_exits_4(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    run = canary(nobody, "start", "-f", write(tmp_path, spec("fn-x")), "--wait")
    assert run.returncode == 4
    assert f"cannot reach canary at {nobody}" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("unknown-secret", "not one this daemon knows"),
        (None, "needs a bearer token"),
        ("r-secret", "has role read; starting a rollout needs role deploy"),
    ],
)
def test_a_refused_token_exits_4(
    daemon: Daemon, tmp_path: Path, token: str | None, expected: str
) -> None:
    args = ["rollout", "start", "-f", write(tmp_path, spec("fn-auth")), "--url", daemon.url]
    if token is not None:
        args += ["--token", token]
    run = CliRunner().invoke(cli, args, env={"CANARY_TOKEN": None})
    assert run.exit_code == 4, run.output
    assert expected in run.output


def test_invalid_spec_exits_2_naming_each_field(daemon: Daemon, tmp_path: Path) -> None:
    bad = spec("fn-invalid").replace("weight: 50", "weight: 150").replace("alias: live", "alas: x")
    run = canary(daemon.url, "start", "-f", write(tmp_path, bad))
    assert run.returncode == 2
    assert "spec.steps[0].weight: 150 is out of range" in run.stderr
    assert "spec.targets[0].alas: unknown field 'alas'" in run.stderr


def test_retried_start_is_the_same_rollout(daemon: Daemon, tmp_path: Path) -> None:
    path = write(tmp_path, spec("fn-retry", bake="1h"))
    key = ["--idempotency-key", "build-991", "--output", "json"]
    first = canary(daemon.url, "start", "-f", path, *key)
    second = canary(daemon.url, "start", "-f", path, *key)
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert json.loads(first.stdout)["id"] == json.loads(second.stdout)["id"]
    changed = write(tmp_path, spec("fn-retry", bake="2h"), "changed.yaml")
    third = canary(daemon.url, "start", "-f", changed, *key)
    assert third.returncode == 1
    assert "different spec" in third.stderr


def test_operate_commands_and_events(daemon: Daemon, tmp_path: Path) -> None:
    started = canary(daemon.url, "start", "-f", write(tmp_path, spec("fn-ops", approval=True)))
    rid = started_id(started.stdout)

    def approval_awaited() -> bool:
        return "awaiting_approval" in invoke(daemon, "status", rid, token="reader")[1]

    until(approval_awaited)
    code, out = invoke(daemon, "resume", rid)
    assert code == 1, "not paused: refused in its phase"
    assert "it is not paused" in out
    code, out = invoke(daemon, "promote", rid, token="ci")
    assert code == 4, "a deploy token cannot promote"
    assert "needs role operate" in out
    code, out = invoke(daemon, "pause", rid, "--reason", "checking dashboards")
    assert (code, " paused " in out) == (0, True)
    assert invoke(daemon, "resume", rid)[0] == 0
    until(approval_awaited)
    assert invoke(daemon, "promote", rid)[0] == 0

    code, out = invoke(daemon, "events", rid, "--follow", token="reader")
    assert code == 0, out
    for line in ("pause by ana", "resume by ana", "promote by ana", "promoted: the canary"):
        assert line in out
    code, out = invoke(daemon, "events", rid, "--output", "json", token="reader")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["actor"] for e in events if e["kind"].startswith("command.")] == ["ana"] * 3


def test_list_filters_by_phase(daemon: Daemon) -> None:
    code, out = invoke(daemon, "list", "--phase", "rolled_back", "--output", "json", token="reader")
    assert code == 0, out
    assert {r["phase"] for r in json.loads(out)["items"]} <= {"rolled_back"}


def test_wait_survives_a_daemon_restart(tmp_path: Path) -> None:
    daemon = memory_daemon(tmp_path).start()
    path = write(tmp_path, spec("fn-restart", bake="3s"))
    waiting = subprocess.Popen(
        command(daemon.url, "start", "-f", path, "--wait"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(waiting.stdout or []), daemon=True)
    reader.start()
    try:
        until(lambda: any("baking 3s" in line for line in lines))
        assert daemon.stop() == 0  # SIGTERM mid-bake: the event stream is closed
        time.sleep(1.0)  # the CLI keeps trying a port where nobody listens
        assert waiting.poll() is None, "the CLI must not give up while the daemon is away"
        daemon.start()  # the next daemon, same store, same port
        # In-memory targets do not outlive a daemon: the new one finds the canary's weight
        # gone and pauses as drift (it never fights a hand-edit); resume re-applies it.
        until(lambda: any("drift found at restart" in line for line in lines))
        code, out = invoke(daemon, "resume", started_id(lines[0]))
        assert code == 0, out
        code = waiting.wait(timeout=60)
        reader.join(10)
        stderr = waiting.stderr.read() if waiting.stderr else ""
        assert code == 0, (stderr, lines)
        assert "event stream lost" in stderr
        shifted = [line for line in lines if "traffic at 50%" in line]
        assert len(shifted) == 2, "the first shift and the re-applied one, each printed once"
        assert " succeeded " in lines[-1]
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        daemon.stop()
    assert "Traceback" not in daemon.log()


def test_serve_refuses_to_start_without_tokens_or_anonymous_access(tmp_path: Path) -> None:
    proc = serve(tmp_path, CANARY_ALLOW_ANONYMOUS="false", CANARY_LISTEN=f"127.0.0.1:{free_port()}")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "CANARY_TOKENS" in err
    assert "CANARY_ALLOW_ANONYMOUS=true" in err


def test_memory_strategies_and_anonymous_access_are_announced(tmp_path: Path) -> None:
    d = Daemon(tmp_path, CANARY_STRATEGIES="memory").start()
    assert d.stop() == 0
    log = d.log()
    assert "daemon.anonymous_access" in log
    assert "daemon.memory_strategies" in log


def test_a_scenario_without_memory_targets_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    proc = serve(tmp_path, CANARY_SCENARIO=str(scenario))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "CANARY_SCENARIO: scripted metrics are for in-memory targets only" in err


def test_an_unreadable_scenario_is_refused_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    proc = serve(tmp_path, CANARY_STRATEGIES="memory", CANARY_SCENARIO=str(missing))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"CANARY_SCENARIO: cannot read {missing}" in err


def test_a_missing_spec_file_exits_2() -> None:
    run = CliRunner().invoke(cli, ["rollout", "start", "-f", "/nonexistent/rollout.yaml"])
    assert run.exit_code == 2
    assert "cannot read /nonexistent/rollout.yaml" in run.output


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["events"],
        ["promote"],
        ["pause"],
        ["resume"],
        ["abort", "--reason", "x"],
    ],
)
@pytest.mark.parametrize("rollout_id", ["../../../metrics", "019B76DAA8009E34524779", "42"])
def test_a_rollout_id_is_checked_before_any_request(args: list[str], rollout_id: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # a request would be exit 4, not 2
    command_args = ["rollout", args[0], rollout_id, *args[1:], "--url", nobody]
    run = CliRunner().invoke(cli, command_args)
    assert run.exit_code == 2, run.output
    assert "Invalid value for 'ROLLOUT_ID'" in run.output
    assert f"{rollout_id!r} is not a rollout id: a rollout id is 22 hex digits" in run.output


async def test_the_client_escapes_a_rollout_id_into_one_path_segment() -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"detail": "no"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with Client(f"http://127.0.0.1:{port}") as client:
            for call in (
                client.get("../../../metrics"),
                client.command("../x?y#z", "abort", {"reason": "r"}),
                client.events("../../healthz"),
            ):
                with pytest.raises(ApiError):
                    await call
    finally:
        await runner.cleanup()
    assert seen == [
        "/api/v1/rollouts/..%2F..%2F..%2Fmetrics",
        "/api/v1/rollouts/..%2Fx%3Fy%23z/abort",
        "/api/v1/rollouts/..%2F..%2Fhealthz/events?after=0",
    ]


@pytest.mark.parametrize(
    "url", ["notaurl", "ftp://127.0.0.1:8080", "http://127.0.0.1:port", "http://", "127.0.0.1:8080"]
)
def test_a_bad_url_is_a_usage_error(url: str) -> None:
    run = CliRunner().invoke(cli, ["rollout", "list", "--url", url], env={"CANARY_URL": None})
    assert run.exit_code == 2, run.output
    assert "Invalid value for '--url'" in run.output
    assert "is not the daemon's address" in run.output


def test_a_refusal_with_output_json_prints_the_problem_on_stdout(
    daemon: Daemon, tmp_path: Path
) -> None:
    path = write(tmp_path, spec("fn-busy", bake="1h"))
    first = canary(daemon.url, "start", "-f", path, "--output", "json")
    assert first.returncode == 0, first.stderr
    live = json.loads(first.stdout)["id"]
    second = canary(
        daemon.url, "start", "-f", path, "--idempotency-key", "another", "--output", "json"
    )
    assert second.returncode == 1
    problem = json.loads(second.stdout)
    assert problem["type"] == "urn:canary:problem:target-busy"
    assert problem["status"] == 409
    assert problem["rollout_id"] == live
    assert "already being rolled out" in second.stderr
    invoke(daemon, "abort", live, "--reason", "done")


def test_an_unreachable_daemon_with_output_json_prints_a_problem(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    run = canary(nobody, "list", "--output", "json")
    assert run.returncode == 4
    problem = json.loads(run.stdout)
    assert problem["type"] == "urn:canary:problem:unreachable"
    assert f"cannot reach canary at {nobody}" in problem["detail"]
