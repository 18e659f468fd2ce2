"""Crash chaos and a flaky Lambda API, in the suite: ``bench/chaos.py`` with a small N.

The bench kills ``canary serve`` with SIGKILL at random moments while rollouts run on moto,
and after every kill checks the store against moto's real routing (see its docstring for
the invariants). Here it runs 6 kills on SQLite, 3 on PostgreSQL, and separately a pool
of rollouts behind a proxy that throttles, fails (5xx) or times out 30% of the Lambda
calls. ``python bench/chaos.py --kills 50 --store both`` is the full run.

The last test holds a rollback down: every UpdateAlias is refused until the backend
"recovers"; the rollout stays in ``rollback_failed``, retries with a growing backoff, says
so in an event and in ``/metrics`` each time, and completes once the alias can be written.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import document, lambda_target
from helpers import rollout as make_rollout

from canary.model import Phase, Rollout
from canary.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import chaos


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'canary.db'}"


# Daemons as subprocesses on a busy 2-core machine: more than pytest's default 120 s.
@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_holds_every_invariant(tmp_path: Path) -> None:
    options = chaos.Options(kills=6, pool=4, seed=15, quiet=True)
    report = chaos.run(options, sqlite(tmp_path), tmp_path)
    print("\n".join(report.lines()))
    assert report.broken == []
    assert report.kills == 6
    assert report.restarts == 6
    assert report.checks == 7, "one check after each kill, and one at the end"
    assert report.rollouts >= 4
    ended = {outcome.split(":")[0]: outcome.split(":")[1] for outcome in report.outcomes}
    assert ended == {"good": "succeeded", "bad": "rolled_back", "late": "rolled_back"}


@pytest.mark.timeout(300)
def test_kill_9_on_postgresql_holds_every_invariant(tmp_path: Path, pg_url: str) -> None:
    """The same on PostgreSQL: a restarted replica takes its rollouts back once the killed
    one's leases lapse (2 s here), and the store keeps every invariant."""
    options = chaos.Options(kills=3, pool=3, seed=16, quiet=True)
    report = chaos.run(options, pg_url, tmp_path)
    print("\n".join(report.lines()))
    assert report.broken == []
    assert report.kills == 3
    assert report.checks == 4
    ended = {outcome.split(":")[0]: outcome.split(":")[1] for outcome in report.outcomes}
    assert ended == {"good": "succeeded", "bad": "rolled_back", "late": "rolled_back"}


@pytest.mark.timeout(300)
def test_a_lambda_api_failing_30_percent_of_calls_still_ends_every_rollout_right(
    tmp_path: Path,
) -> None:
    options = chaos.Options(kills=0, pool=3, faults=0.3, seed=5, quiet=True)
    report = chaos.run(options, sqlite(tmp_path), tmp_path)
    print("\n".join(report.lines()))
    assert report.broken == []
    assert set(report.faults) >= {"throttle", "5xx"}, report.faults
    assert report.faults["timeout"] + report.faults["timeout-after-write"] > 0
    assert sum(report.outcomes.values()) == 3
    assert report.outcomes["good:succeeded"] == 1
    assert report.outcomes["bad:rolled_back"] == 1
    assert report.outcomes["late:rolled_back"] == 1


# ---------------------------------------------------------------- the checker itself


def baking_at(weight: float) -> Rollout:
    doc = document(
        targets=[lambda_target()],
        steps=[{"weight": 10, "bake": "3s"}, {"weight": 50, "bake": "3s"}, {"weight": 100}],
    )
    r = make_rollout(Phase.BAKING, doc)
    return r.model_copy(
        update={"weight": weight, "targets": (r.targets[0].model_copy(update={"weight": weight}),)}
    )


def test_the_checker_names_a_phase_that_does_not_match_the_alias() -> None:
    """The invariant can fail: a rollout baking at 10% over an alias at 50% is reported."""
    r = baking_at(10)
    assert chaos.agrees(r, chaos.canary_share("1", {"2": 0.1})) is None
    assert chaos.agrees(r, chaos.canary_share("1", {"2": 0.5})) == "allowed: canary at 10%"
    assert chaos.agrees(r, chaos.canary_share("3", {})) == "a split canary never writes"
    shifting = r.model_copy(update={"phase": Phase.SHIFTING, "step": 1})
    assert chaos.agrees(shifting, 50.0) is None, "its own write may have landed"
    assert chaos.agrees(shifting, 10.0) is None, "or not yet"
    assert chaos.agrees(shifting, 0.0) == "allowed: canary at 10% or canary at 50%"
    done = r.model_copy(update={"phase": Phase.SUCCEEDED})
    assert chaos.agrees(done, chaos.canary_share("2", {})) is None
    assert chaos.agrees(done, 10.0) == "allowed: the canary as primary"


# ---------------------------------------------------------------- a rollback held down


@pytest.fixture
def world() -> Iterator[chaos.Aws]:
    with chaos.world(chaos.Options(faults=0.0)) as aws:
        yield aws


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body.startswith((b"{", b"[")) else body.decode()


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def until(what: str, check: Any, daemon: chaos.Daemon, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"never saw: {what}; daemon log:\n{daemon.tail()}")


def metric(daemon: chaos.Daemon, name: str, labels: str = "") -> float:
    text = get(f"{daemon.url}/metrics")
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def test_a_rollback_that_keeps_failing_retries_with_backoff_alerts_and_completes(
    world: chaos.Aws, tmp_path: Path
) -> None:
    plan = chaos.Plan(1, "good")
    world.add(plan)
    daemon = chaos.Daemon(tmp_path, sqlite(tmp_path), world.proxy.url)
    daemon.start()
    try:
        daemon.wait_healthy()
        plan.id = daemon.submit(plan)
        api = f"{daemon.url}/api/v1/rollouts/{plan.id}"
        until("the rollout baking at 10%", lambda: get(api)["phase"] == "baking", daemon)
        assert world.alias(plan.function) == ("1", {"2": 0.1})

        # The backend refuses every alias write from now on (a policy change, an outage).
        world.proxy.fail(
            "PUT", r"/aliases/live$", 403, "AccessDeniedException",
            "User is not authorized to perform: lambda:UpdateAlias", times=10**6,
        )  # fmt: skip
        post(f"{api}/abort", {"reason": "chaos: roll it back"})

        def failures() -> list[dict[str, Any]]:
            events = get(f"{api}/events?limit=1000")["items"]
            return [e for e in events if e["kind"] == "rollback.failed"]

        until("two failed rollback attempts", lambda: len(failures()) >= 2, daemon)
        assert get(api)["phase"] == "rollback_failed"
        first, second = failures()[:2]
        assert "ROLLBACK FAILED (attempt 1)" in first["message"]
        assert "lambda:UpdateAlias" in first["message"], "the backend's answer, in one line"
        assert second["data"]["retry_in"] > first["data"]["retry_in"], "backing off"
        assert metric(daemon, "canary_rollouts", '{phase="rollback_failed"}') == 1
        assert metric(daemon, "canary_rollback_failures_total") >= 2
        assert world.alias(plan.function) == ("1", {"2": 0.1}), "nothing pretended otherwise"

        # The backend recovers: the next attempt restores stable and the rollout ends.
        world.proxy.heal()
        until("the rollout rolled back", lambda: get(api)["phase"] == "rolled_back", daemon)
        assert world.alias(plan.function) == ("1", {})
        assert metric(daemon, "canary_rollouts", '{phase="rollback_failed"}') == 0
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
    final = asyncio.run(stored(sqlite(tmp_path), plan.id))
    assert final.cause is not None
    assert final.cause.value == "aborted"


async def stored(url: str, rollout_id: str) -> Rollout:
    store = open_store(url)
    try:
        return await store.get(rollout_id)
    finally:
        await store.close()
