"""kill -9 of ``canary serve`` during a bake and during a shift: the rollout still finishes.

The daemon runs as a subprocess against moto's server (through motoproxy's proxy) and a
SQLite file. There is no HTTP API to start a rollout with yet, so the test writes the new
rollout into the SQLite file itself, as the engine's ``submit`` stores one
(``canary.machine.new_rollout``), before the daemon starts: a starting daemon loads every
live rollout from the store and runs it.

During the shift, the proxy holds the daemon's UpdateAlias for a few seconds; the daemon
is killed while the request is in flight, and the request then reaches moto anyway, as a
request already sent to AWS would. So the next daemon finds the alias at the new weight
without any record that the write succeeded: only the write-ahead ``traffic.shifting``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest
from daemon import token_setting
from helpers import document, lambda_target
from motohelpers import REGION, Moto
from services import free_port

from canary.machine import new_rollout
from canary.model import Event, Phase, Rollout
from canary.store.sqlite import SQLiteStore

BAKE = 6.0
INTERVAL = 1.0
HOLD = 3.0
TIMEOUT = 60.0


class Daemon:
    """``canary serve`` subprocesses over one SQLite file, one at a time."""

    def __init__(self, tmp: Path, endpoint: str) -> None:
        self.db = tmp / "canary.db"
        self.log = tmp / "daemon.log"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "CANARY_"))
        } | {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
            "CANARY_AWS_ENDPOINT_URL": endpoint,
            "CANARY_AWS_REGION": REGION,
            "CANARY_STORE_URL": f"sqlite:///{self.db}",
            "CANARY_LOG_FORMAT": "json",
            # The API is not used here, but a daemon never starts without access control.
            "CANARY_TOKENS": token_setting({"ops": ("not-used", "operate")}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> None:
        self._out = self.log.open("ab")
        env = self.env | {"CANARY_LISTEN": f"127.0.0.1:{free_port()}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "canary", "serve"], env=env, stdout=self._out, stderr=self._out
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self._out is not None
        self._out.close()

    def stop(self) -> int:
        assert self.proc is not None
        assert self._out is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._out.close()
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "canary.db")
    yield s
    await s.close()


async def until(
    what: str, check: Callable[[], object], daemon: Daemon, running: bool = True
) -> None:
    """Poll ``check`` until it is true; fail with the daemon's log after TIMEOUT, or at
    once if the daemon died when it should be ``running``."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not await _call(check):
        died = running and not daemon.alive()
        if asyncio.get_running_loop().time() > deadline or died:
            log = daemon.log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"never saw: {what}; daemon log:\n{log}")
        await asyncio.sleep(0.05)


async def _call(check: Callable[[], object]) -> object:
    result = check()
    return await result if asyncio.iscoroutine(result) else result


async def test_kill_9_during_a_bake_and_during_a_shift_then_the_rollout_finishes(
    moto: Moto, store: SQLiteStore, tmp_path: Path
) -> None:
    moto.function()
    doc = document(
        targets=[lambda_target("checkout", "2")],
        steps=[{"weight": 10, "bake": f"{BAKE:g}s"}, {"weight": 50, "bake": "3s"}, {"weight": 100}],
        analysis={"interval": f"{INTERVAL:g}s"},
    )
    now = datetime.now(UTC)
    record, created = new_rollout(doc, "crash-test", now)  # what Engine.submit stores
    rid = (await store.create(record, [created], now))[0].id
    daemon = Daemon(tmp_path, moto.url)

    async def rollout() -> Rollout:
        return await store.get(rid)

    async def events() -> list[Event]:
        return await store.events(rid)

    # 1. The first daemon finds the rollout pending and starts it. Killed mid-bake, after
    #    at least two checkpoints of the 10% bake.
    daemon.start()

    async def baked_a_while() -> bool:
        r = await rollout()
        return r.phase == Phase.BAKING and r.step == 0 and r.bake_elapsed >= 2 * INTERVAL

    await until("two checkpoints into the 10% bake", baked_a_while, daemon)
    daemon.kill9()
    killed_at = (await rollout()).bake_elapsed
    assert moto.alias() == ("1", {"2": 0.1})

    # 2. Restarted: the bake resumes with the time it had left, it does not start over.
    before = len(await events())
    daemon.start()

    async def resumed() -> Event | None:
        later = (await events())[before:]
        return next((e for e in later if e.kind == "daemon.resumed"), None)

    await until("the restart's daemon.resumed event", resumed, daemon)
    event = await resumed()
    assert event is not None
    left = event.data["bake_remaining"]
    assert 0 < left <= BAKE - killed_at + 1e-6, f"{left}s left after {killed_at}s baked"
    assert "resuming with" in event.message
    assert "of bake left" in event.message

    # 3. Killed mid-shift: the intent to go to 50% is stored, the UpdateAlias is in flight.
    moto.proxy.hold = HOLD

    async def shifting_to_50() -> bool:
        return any(e.kind == "traffic.shifting" and e.data["weight"] == 50 for e in await events())

    await until("the write-ahead traffic.shifting to 50%", shifting_to_50, daemon)
    await until("the UpdateAlias to 50% to be in flight", lambda: moto.proxy.holding, daemon)
    daemon.kill9()
    assert (await events())[-1].kind == "traffic.shifting", "killed before the result was stored"
    assert (await rollout()).phase == Phase.SHIFTING

    def landed() -> bool:  # the request sent before the kill reaches moto after it
        return moto.proxy.count("PUT", "/aliases/live", ok=True) >= 2

    await until("the held UpdateAlias to reach moto", landed, daemon, running=False)
    moto.proxy.hold = 0.0
    assert moto.alias() == ("1", {"2": 0.5})

    # 4. Restarted again: it re-applies 50% (idempotent), bakes, promotes.
    daemon.start()

    async def ended() -> bool:
        return (await rollout()).phase.terminal

    await until("the rollout to end", ended, daemon)
    assert daemon.stop() == 0
    final = await rollout()
    assert final.phase == Phase.SUCCEEDED, final.reason
    assert moto.alias() == ("2", {})
    kinds = [e.kind for e in await events()]
    assert kinds.count("daemon.resumed") == 3, "one per daemon start"
    assert "traffic.drift" not in kinds, "our own in-flight write is not drift"
    shifted = [e.data["weight"] for e in await events() if e.kind == "traffic.shifted"]
    assert shifted == [10, 50, 100]
