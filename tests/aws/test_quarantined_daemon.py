"""A stored record that no longer validates never wedges the daemon (issue 8, item 2).

An older canary stored ``bake: .inf`` as ``"Infinitys"``, which no model reads back. The
test writes such a record into the SQLite file with plain SQL, beside a valid rollout,
then restarts a real ``canary serve`` over the file against moto: the daemon starts, runs
the valid rollout to the end, lists the broken one with its error, leaves its Lambda alias
at the weight it was left at, refuses anything but an abort on it, and an abort (from the
CLI) rolls the alias back and marks the rollout rolled back with events saying so.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon import CANARY, Daemon
from helpers import document, lambda_target
from motohelpers import REGION, Moto

from canary.machine import new_rollout
from canary.model import Phase, Rollout, TargetState
from canary.store.sqlite import SQLiteStore


def api(daemon: Daemon, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        daemon.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CANARY, "rollout", *args, "--url", daemon.url],
        capture_output=True,
        text=True,
        timeout=90,
        env=daemon.env,
    )


async def write_rollouts(path: Path) -> tuple[Rollout, Rollout, TargetState]:
    """A rollout baking at 10% on checkout (to be broken), and a new one on payments."""
    now = datetime.now(UTC)
    store = SQLiteStore(path)
    broken_doc = document(
        name="checkout",
        targets=[lambda_target("checkout", "2", region=REGION)],
        steps=[{"weight": 10, "bake": "1h"}, {"weight": 100}],
    )
    broken, created = new_rollout(broken_doc, "older-canary", now)
    broken, _ = await store.create(broken, [created], now)
    state = TargetState(key=broken.targets[0].key, kind="lambda-alias", stable="1", weight=10)
    baking = {"phase": Phase.BAKING, "weight": 10.0, "targets": (state,), "watching_since": now}
    broken, _ = await store.save(broken.model_copy(update=baking), [], now)
    healthy_doc = document(
        name="payments",
        targets=[lambda_target("payments", "2", region=REGION)],
        steps=[{"weight": 100}],
    )
    healthy, created = new_rollout(healthy_doc, "ci", now)
    healthy, _ = await store.create(healthy, [created], now)
    await store.close()
    return broken, healthy, state


def test_a_record_that_no_longer_validates_is_quarantined_not_fatal(
    moto: Moto, tmp_path: Path
) -> None:
    moto.function("checkout")
    moto.function("payments")
    # checkout was at 10% when the older canary stopped; its record is the broken one.
    moto.client("lambda").update_alias(
        FunctionName="checkout",
        Name="live",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    broken, healthy, state = asyncio.run(write_rollouts(tmp_path / "canary.db"))
    with sqlite3.connect(tmp_path / "canary.db") as db:  # what the older canary wrote
        (record,) = db.execute("SELECT record FROM rollouts WHERE id = ?", (broken.id,)).fetchone()
        data = json.loads(record)
        data["document"]["spec"]["steps"][0]["bake"] = "Infinitys"
        db.execute("UPDATE rollouts SET record = ? WHERE id = ?", (json.dumps(data), broken.id))

    daemon = Daemon(
        tmp_path, CANARY_AWS_ENDPOINT_URL=moto.url, CANARY_AWS_REGION=REGION
    ).start()  # today: exits 1, "'Infinitys' is not a duration"
    try:
        # The engine runs the valid rollout to the end.
        deadline = time.monotonic() + 60
        while api(daemon, "GET", f"/api/v1/rollouts/{healthy.id}")[1]["phase"] != "succeeded":
            assert time.monotonic() < deadline, daemon.log()[-3000:]
            time.sleep(0.1)
        assert moto.alias("payments") == ("2", {})

        # The broken one is listed with its raw id and what is wrong with it.
        status, page = api(daemon, "GET", "/api/v1/rollouts")
        assert status == 200
        listed = {r["id"]: r for r in page["items"]}
        assert set(listed) == {broken.id, healthy.id}
        assert "quarantine" not in listed[healthy.id]
        shown = listed[broken.id]
        assert (shown["phase"], shown["live"], shown["name"]) == ("baking", True, "checkout")
        assert "spec.steps[0].bake" in shown["quarantine"]["error"]
        assert "'Infinitys'" in shown["quarantine"]["error"]

        status, one = api(daemon, "GET", f"/api/v1/rollouts/{broken.id}")
        assert status == 200
        assert (one["id"], one["phase"]) == (broken.id, "baking")
        assert f"canary rollout abort {broken.id}" in one["quarantine"]["fix"]

        # It is never run: its traffic stays where it was left.
        assert moto.alias("checkout") == ("1", {"2": 0.1})
        status, problem = api(daemon, "POST", f"/api/v1/rollouts/{broken.id}/promote", {})
        assert status == 409
        assert problem["type"].endswith("rollout-quarantined")
        assert "only abort" in problem["detail"]

        listing = cli(daemon, "list")
        assert listing.returncode == 0, listing.stderr
        line = next(x for x in listing.stdout.splitlines() if x.startswith(broken.id))
        assert "QUARANTINED" in line
        assert "Infinitys" in line

        followed = cli(daemon, "events", broken.id, "--follow")
        assert followed.returncode == 1, "it is never run: it would never end"
        assert "created by older-canary" in followed.stdout
        assert "QUARANTINED" in followed.stderr
        assert "nothing to follow" in followed.stderr

        # An abort rolls its alias back and ends it.
        aborted = cli(daemon, "abort", broken.id, "--reason", "bad record", "--output", "json")
        assert aborted.returncode == 0, aborted.stderr
        after = json.loads(aborted.stdout)
        assert (after["phase"], after["live"]) == ("rolled_back", False)
        assert moto.alias("checkout") == ("1", {})
        _, events = api(daemon, "GET", f"/api/v1/rollouts/{broken.id}/events")
        kinds = [e["kind"] for e in events["items"]]
        assert kinds[-2:] == ["command.abort", "rollout.rolled_back"]
        done = events["items"][-1]["data"]["restored"]
        assert done == {state.key: "restored: serves its stable version 1"}
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()
    assert "rollout.quarantined" in daemon.log()  # the operator is told at start
