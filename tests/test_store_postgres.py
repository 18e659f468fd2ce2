"""What only the PostgreSQL store shows (the contract runs in test_store_contract.py):
leases and fencing tokens checked by the database, the share of a replica, notifications,
migrations, append-only events, and a password never shown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from daemon import serve
from services import free_port
from store_contract import T0, make_rollout, new_events

from canary.model import Phase
from canary.store import LeaseLost, StaleWrite, StoreError, open_store
from canary.store.postgres import SCHEMA_VERSION, Notice, PostgresStore
from config.errors import SpecError
from config.settings import load_settings

TTL = 30.0


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two replicas' stores over one database."""
    a, b = PostgresStore(pg_url, replica="a"), PostgresStore(pg_url, replica="b")
    yield a, b
    await a.close()
    await b.close()


async def lapse(pg_url: str, rollout_id: str) -> None:
    """Make a lease run out now, as it does TTL seconds after its holder stopped renewing."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as db:
        await db.execute(
            "UPDATE rollouts SET lease_until = clock_timestamp() - interval '1 second'"
            " WHERE id = %s",
            (rollout_id,),
        )


async def test_a_stalled_owner_cannot_write_after_another_replica_took_over(
    stores: tuple[PostgresStore, PostgresStore], pg_url: str
) -> None:
    a, b = stores
    r, _ = await a.create(make_rollout("checkout"), new_events("created"), T0)
    (first,) = await a.claim(TTL, replicas=1)
    assert (first.rollout_id, first.fence, first.taken_over) == (r.id, 1, False)
    r, _ = await a.save(r.model_copy(update={"phase": Phase.SHIFTING}), [], T0, fence=first.fence)

    assert await b.claim(TTL, replicas=1) == [], "a live lease is not taken"
    await lapse(pg_url, r.id)  # a stalls past its lease
    (second,) = await b.claim(TTL, replicas=1)
    assert (second.fence, second.taken_over) == (2, True)

    stale = r.model_copy(update={"phase": Phase.BAKING, "weight": 10.0})
    with pytest.raises(LeaseLost, match="another replica took it over") as caught:
        await a.save(stale, new_events("traffic.shifted"), T0, fence=first.fence)
    assert caught.value.fence == 1
    assert await a.get(r.id) == r, "nothing of the stale write was stored"
    assert [e.kind for e in await a.events(r.id)] == ["created"]
    assert await a.renew(TTL) == {}, "a renews nothing: the lease is b's"
    saved, _ = await b.save(stale, new_events("traffic.shifted"), T0, fence=second.fence)
    assert saved.version == r.version + 1


async def test_a_lapsed_lease_refuses_writes_even_before_anyone_takes_it(
    stores: tuple[PostgresStore, PostgresStore], pg_url: str
) -> None:
    a, _ = stores
    r, _ = await a.create(make_rollout("checkout"), [], T0)
    (held,) = await a.claim(TTL, replicas=1)
    await lapse(pg_url, r.id)

    with pytest.raises(LeaseLost, match="lapsed"):
        await a.save(r, new_events("x"), T0, fence=held.fence)
    assert await a.renew(TTL) == {}, "a lapsed lease is not renewed: it is anyone's"
    (again,) = await a.claim(TTL, replicas=1)
    assert again.fence == held.fence + 1
    await a.save(r, new_events("x"), T0, fence=again.fence)


async def test_commands_are_unfenced_compare_and_swap(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    r, _ = await a.create(make_rollout("checkout"), [], T0)
    (held,) = await a.claim(TTL, replicas=1)

    paused, _ = await b.save(r.model_copy(update={"phase": Phase.PAUSED}), new_events("p"), T0)

    with pytest.raises(StaleWrite):  # the owner's next write must reload and apply again
        await a.save(r, new_events("x"), T0, fence=held.fence)
    await a.save(paused, new_events("x"), T0, fence=held.fence)


async def test_new_rollouts_are_shared_out_and_renewed_and_released(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    ids = []
    for n in range(4):
        r, _ = await a.create(make_rollout(f"fn{n}", at=T0 + timedelta(seconds=n)), [], T0)
        ids.append(r.id)
    assert await a.heartbeat(TTL) == 1
    assert await b.heartbeat(TTL) == 2

    mine = await a.claim(TTL, replicas=2)
    theirs = await b.claim(TTL, replicas=2)

    assert [c.rollout_id for c in mine] == ids[:2], "half each, oldest first"
    assert [c.rollout_id for c in theirs] == ids[2:]
    assert await a.claim(TTL, replicas=2) == [], "a has its share"
    assert set(await a.renew(TTL)) == set(ids[:2])
    await a.save(
        (await a.get(ids[0])).model_copy(update={"phase": Phase.SUCCEEDED}),
        [],
        T0,
        fence=mine[0].fence,
    )
    assert set(await a.renew(TTL)) == {ids[1]}, "an ended rollout holds no lease"

    await b.release({c.rollout_id: c.fence for c in theirs})  # b stops cleanly
    assert await a.heartbeat(TTL) == 1, "b is gone"
    taken = await a.claim(TTL, replicas=1)
    assert sorted(c.rollout_id for c in taken) == ids[2:]
    assert all(c.taken_over for c in taken)


async def test_every_committed_write_is_announced_with_its_writer(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    heard: list[Notice] = []

    async def listen() -> None:
        async for notice in b.notifications():
            heard.append(notice)
            if len(heard) == 2:
                return

    await b.ping()
    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.5)  # LISTEN is in place
    r, _ = await a.create(make_rollout("checkout"), new_events("created", "planned"), T0)
    with pytest.raises(StaleWrite):  # refused: rolled back, never announced
        await a.save(r.model_copy(update={"version": 7}), new_events("no"), T0)
    await a.save(r, new_events("shifted"), T0)
    async with asyncio.timeout(10):
        await listener

    assert heard == [
        Notice(r.id, first=1, last=2, writer="a", created=True),
        Notice(r.id, first=3, last=3, writer="a", created=False),
    ]


async def test_events_are_append_only_in_the_database(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    r, _ = await store.create(make_rollout(), new_events("created"), T0)
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as db:
        for statement in ("UPDATE events SET message = 'forged'", "DELETE FROM events"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                await db.execute(statement)
    assert [e.message for e in await store.events(r.id)] == ["created happened"]
    await store.close()


async def test_a_database_of_a_newer_canary_is_refused_untouched(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.ping()
    await store.close()
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as db:
        await db.execute("INSERT INTO canary_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))

    newer = PostgresStore(pg_url)
    with pytest.raises(StoreError, match="newer canary") as caught:
        await newer.ping()
    await newer.close()
    assert f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)


async def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    await asyncio.gather(*(s.ping() for s in stores))
    for s in stores:
        await s.close()
    async with await psycopg.AsyncConnection.connect(pg_url) as db:
        rows = await (await db.execute("SELECT version FROM canary_schema")).fetchall()
    assert rows == [(n,) for n in range(1, SCHEMA_VERSION + 1)]


async def test_a_password_in_the_url_is_never_shown(pg: object) -> None:
    store = open_store("postgresql://canary:s3cret@127.0.0.1:1/nowhere")
    assert isinstance(store, PostgresStore)

    with pytest.raises(StoreError) as caught:
        await store.ping()
    await store.close()

    assert "s3cret" not in str(caught.value)
    assert "postgresql://canary:***@127.0.0.1:1/nowhere" in str(caught.value)
    with pytest.raises(ValueError, match="unsupported store URL") as refused:
        open_store("postgres://canary:s3cret@db/canary")
    assert "s3cret" not in str(refused.value)


async def test_a_store_without_leases_refuses_a_fence() -> None:
    from canary.store import MemoryStore

    store = MemoryStore()
    r, _ = await store.create(make_rollout(), [], T0)
    with pytest.raises(ValueError, match="no leases"):
        await store.save(r, [], T0, fence=1)


def test_serve_refuses_an_unreachable_database_naming_the_setting_not_the_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql://canary:s3cret@127.0.0.1:{free_port()}/canary"
    proc = serve(tmp_path, CANARY_STORE_URL=url, CANARY_LISTEN=f"127.0.0.1:{free_port()}")
    out, err = proc.communicate(timeout=30)

    assert proc.returncode == 2, err
    shown = url.replace(":s3cret@", ":***@")
    assert f"CANARY_STORE_URL {shown!r} cannot be used" in err
    assert "check that the server answers" in err
    assert "s3cret" not in out + err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("env", "path", "message"),
    [
        ({"CANARY_LEASE_TTL": "0"}, "CANARY_LEASE_TTL", "from 0.1 to 3600"),
        (
            {"CANARY_LEASE_TTL": "10", "CANARY_LEASE_RENEW": "6"},
            "CANARY_LEASE_RENEW",
            "more than half of CANARY_LEASE_TTL",
        ),
        ({"CANARY_RETENTION_DAYS": "-1"}, "CANARY_RETENTION_DAYS", "0 (keep forever)"),
        ({"CANARY_STORE_URL": "postgres://u:pw@db/x"}, "CANARY_STORE_URL", "postgresql://"),
    ],
)
def test_lease_and_retention_settings_are_checked(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], path: str, message: str
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(SpecError) as caught:
        load_settings()
    (problem,) = caught.value.problems
    assert problem.path == path
    assert message in problem.message
    assert ":pw@" not in str(caught.value)


def test_lease_and_retention_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.lease_ttl, settings.lease_renew, settings.retention_days) == (15, 5, 90)
