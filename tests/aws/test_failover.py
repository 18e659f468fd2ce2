"""Several ``canary serve`` replicas on one real PostgreSQL and one moto server.

What an operator running replicas relies on: a replica killed with ``kill -9`` loses its
rollouts to the survivor within the lease's TTL, and each one finishes there as it would
have; a replica that froze (SIGSTOP, a long pause) past its lease and then wakes cannot
write anything, so no alias is shifted twice; a command given to either replica reaches
the one driving the rollout within a second, and either replica streams its events.

Leases are short here (``CANARY_LEASE_TTL=3``, renewed every second) so that each test
runs in well under a minute; the defaults are 15 s and 5 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import boto3
import psycopg
import pytest
from motohelpers import DUMMY, REGION, Moto
from services import free_port

from canary.model import Event, Phase, Rollout
from canary.store.postgres import PostgresStore

TTL = 3.0
RENEW = 1.0
TIMEOUT = 60.0
ORDER = [("1", {"2": 0.5}), ("2", {})]  # the alias at 50%, then promoted


class Replica:
    """One ``canary serve`` over the shared database; its JSON log goes to a file."""

    def __init__(self, name: str, tmp: Path, endpoint: str, store_url: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"replica-{name}.log"
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
            "CANARY_STORE_URL": store_url,
            "CANARY_LOG_FORMAT": "json",
            "CANARY_ALLOW_ANONYMOUS": "true",
            "CANARY_LISTEN": f"127.0.0.1:{self.port}",
            "CANARY_LEASE_TTL": f"{TTL:g}",
            "CANARY_LEASE_RENEW": f"{RENEW:g}",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> Replica:
        self._out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "canary", "serve"],
            env=self.env,
            stdout=self._out,
            stderr=self._out,
        )
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.tail()
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    @property
    def id(self) -> str:
        """The replica id it announced (the owner column of the rollouts it holds)."""
        for line in self.lines():
            if line.get("event") == "replica.started":
                return str(line["replica"])
        raise AssertionError(f"replica {self.name} never said it started: {self.tail()}")

    def lines(self, since: int = 0) -> list[dict[str, Any]]:
        with self.log_path.open("rb") as log:
            log.seek(since)
            found = []
            for raw in log.read().splitlines():
                try:
                    found.append(json.loads(raw))
                except ValueError:
                    continue
            return found

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        if self._out is not None:
            self._out.close()
        return code


@pytest.fixture
async def replicas(
    moto: Moto, pg_url: str, tmp_path: Path
) -> AsyncIterator[Callable[[str], Replica]]:
    started: list[Replica] = []

    def make(name: str) -> Replica:
        replica = Replica(name, tmp_path, moto.url, pg_url).start()
        started.append(replica)
        return replica

    yield make
    for replica in started:
        if replica.proc is not None and replica.proc.poll() is None:
            replica.stop()


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    reader = PostgresStore(pg_url)
    yield reader
    await reader.close()


async def until(
    what: str, check: Callable[[], Any], *replicas: Replica, within: float = TIMEOUT
) -> Any:
    """Poll ``check`` (sync or async) until it is truthy; fail with the replicas' logs."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {r.name}:\n{r.tail()}" for r in replicas)
            raise AssertionError(f"never saw: {what}\n{logs}")
        await asyncio.sleep(0.1)


def start_rollout(replica: Replica, function: str, steps: list[dict[str, Any]]) -> str:
    document = {
        "apiVersion": "canary/v1",
        "kind": "Rollout",
        "metadata": {"name": function},
        "spec": {
            "targets": [
                {"kind": "lambda-alias", "function": function, "alias": "live", "version": "2"}
            ],
            "steps": steps,
            "analysis": {"interval": "1s"},
        },
    }
    request = urllib.request.Request(
        f"{replica.url}/api/v1/rollouts",
        data=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201
        return str(json.loads(answer.read())["id"])


async def owners(pg_url: str) -> dict[str, str | None]:
    """Live rollout id -> the replica holding its lease (None: nobody)."""
    async with await psycopg.AsyncConnection.connect(pg_url) as db:
        rows = await (
            await db.execute(
                "SELECT id, CASE WHEN lease_until > clock_timestamp() THEN owner END"
                " FROM rollouts WHERE live"
            )
        ).fetchall()
    return {rid: owner for rid, owner in rows}


def moto_alias(moto: Moto, function: str) -> tuple[str, dict[str, float]]:
    """The alias as moto holds it now, read past the proxy."""
    client = boto3.client("lambda", endpoint_url=moto.moto_url, region_name=REGION, **DUMMY)
    found = client.get_alias(FunctionName=function, Name="live")
    weights = (found.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return str(found["FunctionVersion"]), dict(weights)


def shifted(events: list[Event]) -> list[float]:
    return [e.data["weight"] for e in events if e.kind == "traffic.shifted"]


async def all_at(store: PostgresStore, ids: list[str], phase: Phase, step: int) -> bool:
    found = [await store.get(rid) for rid in ids]
    return all(r.phase == phase and r.step == step for r in found)


async def all_ended(store: PostgresStore, ids: list[str]) -> bool:
    found = [await store.get(rid) for rid in ids]
    return all(r.phase.terminal for r in found)


async def test_kill_9_of_the_busiest_replica_then_every_rollout_finishes_on_the_survivor(
    moto: Moto, replicas: Callable[[str], Replica], store: PostgresStore, pg_url: str
) -> None:
    functions = [f"fn{n:02d}" for n in range(20)]
    for function in functions:
        moto.function(function, versions=2)
    a, b = replicas("a"), replicas("b")
    await until("both replicas ready", lambda: a.ready() and b.ready(), a, b)
    steps = [{"weight": 10, "bake": "6s"}, {"weight": 50, "bake": "2s"}, {"weight": 100}]
    ids = [start_rollout(a, f, steps) for f in functions]  # all of them given to one replica
    function_of = dict(zip(ids, functions, strict=True))

    await until(
        "all 20 rollouts baking at 10%",
        lambda: all_at(store, ids, Phase.BAKING, 0),
        a,
        b,
        within=30,
    )
    held = await owners(pg_url)
    counts = {r.name: sum(1 for o in held.values() if o == r.id) for r in (a, b)}
    assert sum(counts.values()) == 20, held
    assert min(counts.values()) >= 5, f"new rollouts are spread across replicas: {counts}"
    victim, survivor = (a, b) if counts["a"] >= counts["b"] else (b, a)
    orphans = [rid for rid, owner in held.items() if owner == victim.id]

    victim.kill9()
    killed_at = datetime.now(UTC)

    await until("every rollout to end", lambda: all_ended(store, ids), survivor, within=45)
    assert survivor.stop() == 0

    for rid in ids:
        final: Rollout = await store.get(rid)
        events = await store.events(rid)
        assert final.phase == Phase.SUCCEEDED, (function_of[rid], final.reason)
        assert moto_alias(moto, function_of[rid]) == ("2", {})
        assert shifted(events) == [10, 50, 100], (function_of[rid], shifted(events))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
    plan = 6 + 2  # the bakes left at most when it was killed mid-way through the first
    for rid in orphans:  # taken over within the lease's TTL and one renewal
        events = await store.events(rid)
        resumed = [e for e in events if e.kind == "daemon.resumed"]
        assert len(resumed) == 1, rid
        waited = (resumed[0].at - killed_at).total_seconds()
        assert waited <= TTL + RENEW + 2, f"{function_of[rid]} resumed {waited:.1f}s after"
        took = (events[-1].at - killed_at).total_seconds()
        assert took <= TTL + RENEW + plan + 5, f"{function_of[rid]} ended {took:.1f}s after"
    taken = {
        line["rollout_id"]
        for line in survivor.lines()
        if line.get("event") == "rollout.lease_taken" and line.get("taken_over")
    }
    assert taken == set(orphans)


async def test_a_replica_frozen_past_its_lease_cannot_write_when_it_wakes(
    moto: Moto, replicas: Callable[[str], Replica], store: PostgresStore, pg_url: str
) -> None:
    functions = [f"frozen{n}" for n in range(6)]
    for function in functions:
        moto.function(function, versions=2)
    a, b = replicas("a"), replicas("b")
    await until("both replicas ready", lambda: a.ready() and b.ready(), a, b)
    steps = [{"weight": 10, "bake": "2s"}, {"weight": 50, "bake": "4s"}, {"weight": 100}]
    ids = [start_rollout(a, f, steps) for f in functions]
    function_of = dict(zip(ids, functions, strict=True))
    await until("every rollout baking at 10%", lambda: all_at(store, ids, Phase.BAKING, 0), a, b)
    held = await owners(pg_url)
    frozen, other = (a, b) if sum(o == a.id for o in held.values()) >= 3 else (b, a)
    stalled = [rid for rid, owner in held.items() if owner == frozen.id]
    assert stalled

    frozen.signal(signal.SIGSTOP)

    async def taken_over_and_shifted() -> bool:
        now = await owners(pg_url)
        return all(now.get(rid) == other.id for rid in stalled) and await all_at(
            store, stalled, Phase.BAKING, 1
        )

    await until("the other replica to drive them at 50%", taken_over_and_shifted, other)
    woke_at = frozen.log_size()
    frozen.signal(signal.SIGCONT)  # its bake timers are long past due: it wants to act now

    seen: dict[str, list[tuple[str, dict[str, float]]]] = {rid: [] for rid in stalled}
    deadline = time.monotonic() + 3 * RENEW
    while time.monotonic() < deadline:  # the routing, as moto holds it, while it wakes
        for rid in stalled:
            seen[rid].append(moto_alias(moto, function_of[rid]))
        await asyncio.sleep(0.05)
    await until("every rollout to end", lambda: all_ended(store, ids), other, frozen)
    assert frozen.stop() == 0

    after = frozen.lines(since=woke_at)
    refused = {
        line.get("rollout_id") for line in after if line.get("event") == "rollout.lease_lost"
    }
    assert set(stalled) <= refused, "it noticed each lease was gone"
    stored = {
        line["rollout_id"] for line in after if "." in line.get("event", "") and line.get("message")
    }
    assert not stored & set(stalled), f"the woken replica stored events: {stored}"
    for rid in stalled:
        # At 50% as the other replica left it, then perhaps promoted by it; never back.
        order = [ORDER.index(split) for split in seen[rid] if split in ORDER]
        assert len(order) == len(seen[rid]), f"a split nobody should write: {seen[rid]}"
        assert order == sorted(order), f"the routing went back while it woke: {seen[rid]}"
    for rid in ids:
        events = await store.events(rid)
        assert (await store.get(rid)).phase == Phase.SUCCEEDED
        assert shifted(events) == [10, 50, 100], shifted(events)
        assert [e.kind for e in events].count("traffic.shifting") == 3, "no shift twice"
        assert moto_alias(moto, function_of[rid]) == ("2", {})


async def test_a_command_given_to_any_replica_reaches_the_owner_within_a_second(
    moto: Moto, replicas: Callable[[str], Replica], store: PostgresStore, pg_url: str
) -> None:
    moto.function("approve", versions=2)
    a, b = replicas("a"), replicas("b")
    await until("both replicas ready", lambda: a.ready() and b.ready(), a, b)
    steps = [{"weight": 10, "bake": "0s", "approval": True}, {"weight": 100}]
    rid = start_rollout(a, "approve", steps)
    await until(
        "awaiting approval",
        lambda: all_at(store, [rid], Phase.AWAITING_APPROVAL, 0),
        a,
        b,
    )
    owner = (await owners(pg_url))[rid]
    elsewhere = b if owner == a.id else a

    async with aiohttp.ClientSession() as http:
        stream = await http.get(
            f"{elsewhere.url}/api/v1/rollouts/{rid}/events",
            headers={"Accept": "text/event-stream"},
        )
        sent = time.monotonic()
        answer = await http.post(f"{elsewhere.url}/api/v1/rollouts/{rid}/promote")
        assert answer.status == 200, await answer.text()

        async def owner_acted() -> bool:
            events = await store.events(rid)
            return any(e.kind == "traffic.shifting" and e.data["weight"] == 100 for e in events)

        await until("the owner to shift to 100%", owner_acted, a, b, within=5)
        took = time.monotonic() - sent
        assert took < 1.0, f"the command took {took:.2f}s to reach the owner"

        kinds: list[str] = []
        async with asyncio.timeout(20):
            async for raw in stream.content:
                line = raw.decode().strip()
                if line.startswith("data: ") and '"kind"' in line:
                    kinds.append(json.loads(line[6:])["kind"])
                if line == "event: end":
                    break
        stream.close()
    assert "command.promote" in kinds
    assert kinds[-1] == "rollout.succeeded", kinds  # stored by the owner, streamed here
    assert moto_alias(moto, "approve") == ("2", {})
