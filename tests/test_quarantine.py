"""Aborting a quarantined rollout: what can be read is rolled back, the rest is named.

In-memory targets (``strategies.memory``) and store; the daemon-level proof, over SQLite
and moto, is tests/aws/test_quarantined_daemon.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from api_rig import ApiRig, auth, spec_data
from store_contract import T0, document, lambda_key, make_rollout, new_events, with_infinite_bake

from canary import quarantine
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.model import Phase, Rollout, TargetState
from canary.simulate import drive
from canary.store import MemoryStore, Quarantined, TargetBusy, Unreadable
from strategies.base import TemporaryError
from strategies.memory import MemoryFleet

LATER = T0 + timedelta(minutes=5)


async def baking(store: MemoryStore, fleet: MemoryFleet, *functions: str) -> Rollout:
    """A rollout of ``functions`` at 10%, its backends at 10% too."""
    r = make_rollout(*functions)
    r, _ = await store.create(r, new_events("rollout.created"), T0)
    states = tuple(TargetState(key=t.key, kind=t.kind, stable="1", weight=10.0) for t in r.targets)
    for t in r.targets:
        fleet.backend(t.key).set_by_hand("1", "2", 10.0)
    r, _ = await store.save(
        r.model_copy(update={"phase": Phase.BAKING, "weight": 10.0, "targets": states}), [], T0
    )
    return r


def broken(store: MemoryStore, r: Rollout, edit: Any = None) -> Quarantined:
    data = json.loads(r.model_dump_json())
    data["document"]["spec"]["steps"][0]["bake"] = "Infinitys"
    if edit is not None:
        edit(data)
    found = store.replace_record(r.id, json.dumps(data))
    assert isinstance(found, Quarantined)
    return found


async def abort(store: MemoryStore, fleet: MemoryFleet, q: Quarantined) -> Quarantined:
    return await quarantine.abort(
        store, fleet.factory, q, actor="ana", reason="bad record", now=LATER
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


async def test_abort_rolls_every_target_back_and_ends_it(store: MemoryStore) -> None:
    fleet = MemoryFleet(stable="1")
    r = await baking(store, fleet, "checkout", "payments")
    q = broken(store, r)

    done = await abort(store, fleet, q)

    assert (done.phase, done.live, done.weight) == ("rolled_back", False, 0.0)
    assert quarantine.summary(done)["weight"] == 0.0
    assert [(b.primary, b.extra) for b in fleet.backends.values()] == [("1", None)] * 2
    events = await store.events(r.id)
    assert [e.kind for e in events[-2:]] == ["command.abort", "rollout.rolled_back"]
    assert [e.weight for e in events[-2:]] == [10.0, 0.0]  # aborted at 10%, then 0%
    assert events[-2].actor == "ana"
    assert "Infinitys" in events[-2].message
    assert set(events[-1].data["restored"]) == {lambda_key("checkout"), lambda_key("payments")}
    await store.create(make_rollout("checkout", name="next"), [], LATER)  # targets are free


async def test_an_unreadable_target_is_named_and_the_others_are_rolled_back(
    store: MemoryStore,
) -> None:
    fleet = MemoryFleet(stable="1")
    r = await baking(store, fleet, "checkout", "payments")

    def break_payments(data: dict[str, Any]) -> None:
        data["document"]["spec"]["targets"][1]["version"] = "$LATEST"

    q = broken(store, r, break_payments)

    done = await abort(store, fleet, q)

    assert (done.phase, done.live) == ("rollback_failed", True)
    checkout, payments = (fleet.backend(lambda_key(f)) for f in ("checkout", "payments"))
    assert (checkout.extra, payments.extra) == (None, "2"), "payments is left as it was"
    failed = (await store.events(r.id))[-1]
    assert failed.kind == "rollback.failed"
    assert "$LATEST cannot take weighted traffic" in failed.data["errors"][lambda_key("payments")]
    assert lambda_key("checkout") in failed.data["restored"]
    with pytest.raises(TargetBusy):  # its traffic is not known to be restored: still held
        await store.create(make_rollout("payments", name="next"), [], LATER)


async def test_a_failed_rollback_is_recorded_and_another_abort_retries(
    store: MemoryStore,
) -> None:
    fleet = MemoryFleet(stable="1")
    r = await baking(store, fleet, "checkout")
    fleet.backend(lambda_key("checkout")).fail("rollback", TemporaryError("throttled"))

    first = await abort(store, fleet, broken(store, r))
    assert first.phase == "rollback_failed"
    assert "throttled" in (await store.events(r.id))[-1].message

    second = await abort(store, fleet, first)
    assert second.phase == "rolled_back"
    assert fleet.backend(lambda_key("checkout")).extra is None


async def test_abort_is_refused_when_no_target_can_be_read(store: MemoryStore) -> None:
    fleet = MemoryFleet(stable="1")
    r = await baking(store, fleet, "checkout")
    q = store.replace_record(r.id, "{not json")
    assert isinstance(q, Quarantined)
    before = await store.events(r.id)

    with pytest.raises(quarantine.Refused, match="none of its targets can be read"):
        await abort(store, fleet, q)

    assert await store.events(r.id) == before
    assert fleet.backend(lambda_key("checkout")).calls == []
    assert fleet.backend(lambda_key("checkout")).extra == "2"


async def test_abort_of_an_ended_rollout_is_refused(store: MemoryStore) -> None:
    fleet = MemoryFleet(stable="1")
    r, _ = await store.create(make_rollout("checkout"), [], T0)
    r, _ = await store.save(r.model_copy(update={"phase": Phase.SUCCEEDED}), [], T0)

    with pytest.raises(quarantine.Refused, match="already ended"):
        await abort(store, fleet, broken(store, r))


async def test_only_abort_applies_to_a_quarantined_rollout(store: MemoryStore) -> None:
    fleet = MemoryFleet(stable="1")
    r = await baking(store, fleet, "checkout")
    q = broken(store, r)

    for name in ("promote", "pause", "resume"):
        with pytest.raises(quarantine.Refused, match=f"{name} does not apply to it, only abort"):
            await quarantine.command(None, q, name, actor="ana", reason=None)  # type: ignore[arg-type]


async def test_the_view_of_an_unparseable_record_has_every_summary_field(
    store: MemoryStore,
) -> None:
    r, _ = await store.create(make_rollout("checkout"), [], T0)
    q = store.replace_record(r.id, "][")
    assert isinstance(q, Quarantined)

    shown = quarantine.summary(q)

    assert shown["id"] == r.id
    assert shown["phase"] == "pending"
    assert shown["live"] is True
    assert shown["targets"] == [
        {
            "key": lambda_key("checkout"),
            "kind": "lambda-alias",
            "stable": None,
            "weight": 0.0,
            "restored": False,
        }
    ]
    assert shown["quarantine"]["error"] == (
        "the stored record does not validate: Invalid JSON: expected value at line 1 column 1"
    )
    with pytest.raises(Unreadable):
        await store.get(r.id)


@pytest.mark.parametrize(
    ("where", "stored", "named"),
    [
        (("steps", 0, "bake"), "Infinitys", "document.spec.steps[0].bake: 'Infinitys'"),
        (("steps", 0, "bake"), "NaNs", "document.spec.steps[0].bake: 'NaNs'"),
        (("analysis", "interval"), "NaNs", "document.spec.analysis.interval: 'NaNs'"),
    ],
)
async def test_each_stored_form_of_issue_8_is_quarantined_naming_the_field(
    store: MemoryStore, where: tuple[str | int, ...], stored: str, named: str
) -> None:
    r, _ = await store.create(make_rollout("checkout"), [], T0)
    data = json.loads(r.model_dump_json())
    spec = data["document"]["spec"]
    for key in where[:-1]:
        spec = spec[key]
    spec[where[-1]] = stored

    found = store.replace_record(r.id, json.dumps(data))

    assert isinstance(found, Quarantined)
    assert named in found.error
    assert await store.live() == []


async def test_a_record_that_breaks_while_its_rollout_runs_stops_its_task(
    store: MemoryStore,
) -> None:
    fleet = MemoryFleet(stable="1")
    clock = VirtualClock(T0)
    engine = Engine(store, clock, fleet.factory, {}, options=EngineOptions(step_retry=1.0))
    await engine.start()
    try:
        doc = document("checkout", steps=[{"weight": 10, "bake": "1h"}, {"weight": 100}])
        r = await engine.submit(doc, actor="ci")
        await drive(engine, clock, until=T0 + timedelta(minutes=10))
        r = await store.get(r.id)
        assert (r.phase, r.weight) == (Phase.BAKING, 10.0)

        store.replace_record(r.id, with_infinite_bake(r))
        await drive(engine, clock, until=T0 + timedelta(hours=2))

        assert not engine.active(), "dropped, not retried forever"
        assert fleet.backend(lambda_key("checkout")).extra_weight == 10.0  # left alone
        assert await store.live() == []
    finally:
        await engine.stop()


async def test_the_api_never_answers_500_for_a_quarantined_rollout() -> None:
    store = MemoryStore()
    async with ApiRig(store=store) as rig:
        spec = spec_data(build="77", steps=[{"weight": 10, "bake": "1h"}, {"weight": 100}])
        started = await rig.client.post("/api/v1/rollouts", json=spec, headers=auth("ci"))
        r = await rig.wait_phase((await started.json())["id"], Phase.BAKING)
        broken(store, r)
        client = rig.client

        listed = await client.get("/api/v1/rollouts", headers=auth("reader"))
        one = await client.get(f"/api/v1/rollouts/{r.id}", headers=auth("reader"))
        events = await client.get(f"/api/v1/rollouts/{r.id}/events", headers=auth("reader"))
        retried = await client.post("/api/v1/rollouts", json=spec, headers=auth("ci"))
        paused = await client.post(f"/api/v1/rollouts/{r.id}/pause", json={}, headers=auth("ana"))
        aborted = await client.post(
            f"/api/v1/rollouts/{r.id}/abort", json={"reason": "bad record"}, headers=auth("ana")
        )

        assert [x.status for x in (listed, one, events, retried, paused, aborted)] == [
            200,
            200,
            200,
            409,
            409,
            200,
        ]
        [item] = (await listed.json())["items"]
        assert "Infinitys" in item["quarantine"]["error"]
        assert (await one.json())["phase"] == "baking"
        problem = await retried.json()
        assert problem["type"] == "urn:canary:problem:rollout-quarantined"
        assert problem["rollout_id"] == r.id
        assert "idempotency key 'build:checkout:77' started it" in problem["detail"]
        assert "only abort" in (await paused.json())["detail"]
        done = await aborted.json()
        assert (done["phase"], done["live"]) == ("rolled_back", False)
        assert rig.fleet.backend(r.targets[0].key).extra is None
