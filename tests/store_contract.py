"""The behaviour every ``Store`` backend must show, written once.

A backend gets the whole suite by subclassing ``StoreContract`` and providing a ``store``
fixture (see ``test_store_memory.py``), so a new backend (PostgreSQL, say) cannot quietly
differ from the ones simulations and the daemon were proven against. The helpers that build
test rollouts live here too, so the contract is self-contained.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog.testing

from canary.model import (
    Counters,
    Event,
    NewEvent,
    Phase,
    Rollout,
    TargetState,
    new_rollout_id,
)
from canary.store import (
    DuplicateKey,
    FrozenField,
    NotFound,
    Quarantined,
    StaleWrite,
    Store,
    StoreError,
    TargetBusy,
    Unreadable,
)
from config.spec import RolloutDocument, parse_document

# A whole second: times without a fraction must store and sort like those with one.
T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def document(*functions: str, name: str = "checkout", **spec: Any) -> RolloutDocument:
    """A minimal document moving the ``live`` alias of each Lambda function in ``functions``."""
    targets = [
        {"kind": "lambda-alias", "function": f, "alias": "live", "version": "2"}
        for f in functions or ("checkout",)
    ]
    return parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {"targets": targets, **spec},
        }
    )


def make_rollout(
    *functions: str,
    name: str = "checkout",
    at: datetime = T0,
    key: str | None = None,
) -> Rollout:
    """A new (version 0, pending) rollout of ``document(*functions)`` created at ``at``."""
    doc = document(*functions, name=name)
    return Rollout(
        id=new_rollout_id(at),
        document=doc,
        targets=tuple(TargetState(key=t.key(), kind=t.kind) for t in doc.spec.targets),
        created_at=at,
        updated_at=at,
        idempotency_key=key,
    )


def lambda_key(function: str) -> str:
    return document(function).spec.targets[0].key()


def new_events(*kinds: str, **data: Any) -> list[NewEvent]:
    return [NewEvent(kind=kind, message=f"{kind} happened", data=data) for kind in kinds]


async def all_pages(store: Store, **query: Any) -> list[Rollout]:
    """Every page of ``store.list(**query)``, following ``before`` until an empty page."""
    pages: list[Rollout] = []
    for _ in range(100):  # a cursor that stops advancing must fail the test, not hang it
        page = await store.list(before=pages[-1].id if pages else None, **query)
        if not page:
            return pages
        assert len(page) <= query["limit"]
        pages += page
    raise AssertionError(f"still paging after 100 pages: {len(pages)} rollouts")


# Replace a stored record by this JSON text, as a hand edit (or an older canary) would.
Corrupt = Callable[[Store, str, str], Awaitable[None]]


def with_infinite_bake(rollout: Rollout) -> str:
    """``rollout``'s record as an older canary stored ``bake: .inf``: not a duration."""
    data = json.loads(rollout.model_dump_json())
    data["document"]["spec"]["steps"][0]["bake"] = "Infinitys"
    return json.dumps(data)


class StoreContract:
    """The contract's tests; they run once a subclass named ``Test...`` exists.

    The subclass (or its module) provides a ``store`` fixture that yields a fresh, empty
    store and closes it afterwards, and a ``corrupt`` fixture (a ``Corrupt``).
    """

    # ------------------------------------------------------------ records round-trip

    async def test_create_then_get_returns_the_whole_record(self, store: Store) -> None:
        doc = document(
            "checkout",
            "payments",
            steps=[{"weight": 5, "bake": "90s", "approval": True}, {"weight": 100}],
            analysis={
                "interval": "15s",
                "gates": [
                    {"name": "errors", "provider": "prometheus", "query": "rate(x[1m])", "max": 1}
                ],
            },
            notify={},
        )
        rollout = Rollout(
            id=new_rollout_id(T0),
            document=doc,
            phase=Phase.BAKING,
            step=0,
            weight=5.0,
            targets=tuple(
                TargetState(key=t.key(), kind=t.kind, stable="1", weight=5.0)
                for t in doc.spec.targets
            ),
            bake_elapsed=12.25,
            watching_since=T0 + timedelta(seconds=3, microseconds=1),
            next_check_at=T0 + timedelta(seconds=18),
            retry_at=T0 + timedelta(minutes=1, microseconds=999_999),
            attempts=2,
            counters=Counters(failures=1, inconclusive=2, consecutive_errors=3),
            paused_reason="drift",
            reason="because",
            created_at=T0,
            updated_at=T0,
            created_by="ci@example.com",
            idempotency_key="build-1",
        )
        at = T0 + timedelta(microseconds=250)

        created, events = await store.create(rollout, [], at)

        assert created == rollout.model_copy(update={"version": 1, "updated_at": at})
        assert events == []
        assert await store.get(rollout.id) == created
        assert await store.find_by_key("build-1") == created
        assert await store.list() == [created]

    async def test_create_rejects_a_rollout_that_was_already_saved(self, store: Store) -> None:
        created, _ = await store.create(make_rollout(), [], T0)

        with pytest.raises(ValueError, match="version 0"):
            await store.create(created, [], T0)

    async def test_create_rejects_an_id_that_exists(self, store: Store) -> None:
        first = make_rollout("a")
        await store.create(first, [], T0)
        again = make_rollout("b").model_copy(update={"id": first.id})

        with pytest.raises(StoreError, match="already exists"):
            await store.create(again, [], T0)
        assert (await store.get(first.id)).targets == first.targets
        await store.create(make_rollout("b"), [], T0)  # the refused one claimed nothing

    async def test_unknown_ids_are_not_found(self, store: Store) -> None:
        ghost = make_rollout().model_copy(update={"version": 1})

        for call in (
            lambda: store.get(ghost.id),
            lambda: store.save(ghost, new_events("x"), T0),
            lambda: store.events(ghost.id),
        ):
            with pytest.raises(NotFound) as caught:
                await call()
            assert caught.value.rollout_id == ghost.id

    # ------------------------------------------------------------ notifiers' message refs

    async def test_a_message_ref_is_kept_per_rollout_and_notifier(self, store: Store) -> None:
        a, _ = await store.create(make_rollout("checkout"), [], T0)
        b, _ = await store.create(make_rollout("payments", name="payments"), [], T0)
        assert await store.message_ref(a.id, "slack") is None

        await store.set_message_ref(a.id, "slack", "C1 1.000100")
        await store.set_message_ref(b.id, "slack", "C1 2.000200")
        await store.set_message_ref(a.id, "slack", "C1 1.000100 again")  # replaces

        assert await store.message_ref(a.id, "slack") == "C1 1.000100 again"
        assert await store.message_ref(b.id, "slack") == "C1 2.000200"
        assert await store.message_ref(a.id, "other") is None
        assert await store.get(a.id) == a, "the record itself is not touched"

    async def test_message_refs_of_unknown_rollouts_are_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            await store.message_ref("nope", "slack")
        with pytest.raises(NotFound):
            await store.set_message_ref("nope", "slack", "C1 1.0")

    # ------------------------------------------------------------ saves and events

    async def test_save_bumps_version_and_updated_at(self, store: Store) -> None:
        created, _ = await store.create(make_rollout(), [], T0)
        later = T0 + timedelta(minutes=5)

        saved, _ = await store.save(created.model_copy(update={"phase": Phase.SHIFTING}), [], later)

        assert (saved.version, saved.updated_at, saved.phase) == (2, later, Phase.SHIFTING)
        assert saved.created_at == T0
        assert await store.get(created.id) == saved

    async def test_events_are_numbered_gaplessly_across_saves(self, store: Store) -> None:
        r, first = await store.create(make_rollout(), new_events("created", "planned"), T0)
        t1, t2 = T0 + timedelta(seconds=30), T0 + timedelta(seconds=61, microseconds=5)
        r, second = await store.save(
            r.model_copy(update={"phase": Phase.BAKING, "weight": 10.0}),
            new_events("shifted", "bake.started", weight=10.0, observed=[10.0, None]),
            t1,
        )
        r, third = await store.save(r, [], t1)
        r, fourth = await store.save(
            r.model_copy(update={"step": 1, "weight": 25.0}), new_events("shifted"), t2
        )

        assert [e.seq for e in first + second + third + fourth] == [1, 2, 3, 4, 5]
        # at, step (1-based) and weight come from the save, not from the event.
        assert [(e.at, e.step, e.weight) for e in first] == [(T0, 1, 0.0)] * 2
        assert [(e.at, e.step, e.weight) for e in second] == [(t1, 1, 10.0)] * 2
        assert [(e.at, e.step, e.weight) for e in fourth] == [(t2, 2, 25.0)]
        assert second[0].data == {"weight": 10.0, "observed": [10.0, None]}
        assert await store.events(r.id) == first + second + fourth

    async def test_event_fields_round_trip(self, store: Store) -> None:
        data = {"results": [{"gate": "errors", "value": 0.015, "verdict": "FAIL"}], "n": None}
        event = NewEvent(kind="command.abort", message="abort — by ünïcode", data=data, actor="al")
        r, (stored,) = await store.create(make_rollout(), [event], T0)

        assert stored == Event(
            rollout_id=r.id,
            seq=1,
            at=T0,
            kind="command.abort",
            step=1,
            weight=0.0,
            message="abort — by ünïcode",
            data=data,
            actor="al",
        )
        assert await store.events(r.id) == [stored]

    async def test_an_event_may_speak_of_its_own_step_and_weight(self, store: Store) -> None:
        # The evaluation that completes step 1 is saved with the record already at step 2.
        r, _ = await store.create(make_rollout(), [], T0)
        moved = r.model_copy(update={"step": 1, "weight": 10.0})
        own = NewEvent(kind="analysis.evaluated", message="gates", step=1, weight=10.0)
        plain = NewEvent(kind="step.started", message="step 2")
        _, (first, second) = await store.save(moved, [own, plain], T0)
        assert (first.step, first.weight) == (1, 10.0)
        assert (second.step, second.weight) == (2, 10.0)
        assert await store.events(r.id) == [first, second]

    async def test_events_after_and_limit_page_through_the_log(self, store: Store) -> None:
        r, _ = await store.create(make_rollout(), new_events(*"abcde"), T0)
        other, _ = await store.create(make_rollout("other"), new_events("z"), T0)

        assert [e.kind for e in await store.events(r.id, after=2, limit=2)] == ["c", "d"]
        assert [e.kind for e in await store.events(r.id, after=3)] == ["d", "e"]
        assert await store.events(r.id, after=5) == []
        assert await store.events(r.id, limit=0) == []
        assert await store.events(r.id, limit=-1) == []  # never "no limit"
        assert [e.kind for e in await store.events(other.id)] == ["z"]

    async def test_stale_save_raises_and_writes_nothing(self, store: Store) -> None:
        v1, _ = await store.create(make_rollout("checkout"), new_events("created"), T0)
        v2, _ = await store.save(v1, new_events("checked"), T0 + timedelta(seconds=1))
        stale = v1.model_copy(update={"phase": Phase.SUCCEEDED})

        with pytest.raises(StaleWrite, match="at version 2, not 1"):
            await store.save(stale, new_events("succeeded"), T0 + timedelta(seconds=2))

        assert await store.get(v1.id) == v2
        assert [e.kind for e in await store.events(v1.id)] == ["created", "checked"]
        # The stale terminal save did not release the target either.
        with pytest.raises(TargetBusy):
            await store.create(make_rollout("checkout", name="again"), [], T0)

    async def test_concurrent_saves_of_one_version_have_one_winner(self, store: Store) -> None:
        r, _ = await store.create(make_rollout(), [], T0)

        async def writer(n: int) -> Rollout:
            saved, _ = await store.save(
                r.model_copy(update={"attempts": n}), new_events(f"w{n}"), T0
            )
            return saved

        results = await asyncio.gather(*(writer(n) for n in range(20)), return_exceptions=True)

        winners = [x for x in results if isinstance(x, Rollout)]
        assert len(winners) == 1
        assert all(isinstance(x, StaleWrite) for x in results if x is not winners[0])
        assert await store.get(r.id) == winners[0]
        assert [e.kind for e in await store.events(r.id)] == [f"w{winners[0].attempts}"]

    async def test_writers_that_reload_and_retry_all_get_through(self, store: Store) -> None:
        r, _ = await store.create(make_rollout(), [], T0)

        async def writer(n: int) -> None:
            while True:
                current = await store.get(r.id)
                try:
                    await store.save(current, new_events(f"w{n}"), T0)
                    return
                except StaleWrite:
                    await asyncio.sleep(0)

        await asyncio.gather(*(writer(n) for n in range(10)))

        assert (await store.get(r.id)).version == 11
        log = await store.events(r.id)
        assert [e.seq for e in log] == list(range(1, 11))
        assert sorted(e.kind for e in log) == sorted(f"w{n}" for n in range(10))

    # ------------------------------------------------------------ hygiene

    @pytest.mark.parametrize(
        ("field", "change"),
        [
            ("document", lambda r: {"document": document("checkout", name="renamed")}),
            (
                "targets",
                lambda r: {"targets": (r.targets[0].model_copy(update={"key": "lambda-alias/x"}),)},
            ),
            ("idempotency_key", lambda r: {"idempotency_key": "another-build"}),
            ("created_at", lambda r: {"created_at": r.created_at + timedelta(seconds=1)}),
            ("created_by", lambda r: {"created_by": "someone else"}),
        ],
    )
    async def test_save_refuses_to_change_what_a_rollout_was_created_with(
        self, store: Store, field: str, change: Callable[[Rollout], dict[str, Any]]
    ) -> None:
        r, _ = await store.create(make_rollout("checkout", key="build-1"), new_events("a"), T0)

        with pytest.raises(FrozenField, match=field) as caught:
            await store.save(r.model_copy(update=change(r)), new_events("b"), T0)

        assert caught.value.fields == (field,)
        assert await store.get(r.id) == r
        assert [e.kind for e in await store.events(r.id)] == ["a"]
        # What does change (a target's weight, the phase) still saves.
        moved = (r.targets[0].model_copy(update={"weight": 10.0, "stable": "1"}),)
        await store.save(r.model_copy(update={"targets": moved, "weight": 10.0}), [], T0)

    async def test_a_cancelled_save_commits_all_of_it_or_nothing(self, store: Store) -> None:
        r, _ = await store.create(make_rollout(), [], T0)
        batch = new_events(*(f"e{n}" for n in range(50)))
        for delay in (0, 0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02):
            current = await store.get(r.id)
            before = len(await store.events(r.id))
            save = asyncio.ensure_future(
                store.save(current.model_copy(update={"attempts": before}), batch, T0)
            )
            await asyncio.sleep(delay)
            save.cancel()
            await asyncio.gather(save, return_exceptions=True)
            for _ in range(100):  # a write already handed to a worker may still land
                after = await store.get(r.id)
                log = await store.events(r.id)
                if len(log) in (before, before + len(batch)) and (
                    (after.version == current.version) == (len(log) == before)
                ):
                    break
                await asyncio.sleep(0.01)
            assert len(log) in (before, before + len(batch)), f"half a batch at {delay}s"
            assert (after.version == current.version) == (len(log) == before), (
                "the record and its events commit together"
            )
            assert [e.seq for e in log] == list(range(1, len(log) + 1))

    async def test_prune_deletes_ended_rollouts_past_retention_and_nothing_live(
        self, store: Store
    ) -> None:
        old_end = T0 + timedelta(days=1)
        ended, _ = await store.create(make_rollout("a", key="build-1"), new_events("x"), T0)
        ended, _ = await store.save(
            ended.model_copy(update={"phase": Phase.SUCCEEDED}), new_events("y"), old_end
        )
        await store.set_message_ref(ended.id, "slack", "C1 1.0")
        recent, _ = await store.create(make_rollout("b"), [], T0)
        recent, _ = await store.save(
            recent.model_copy(update={"phase": Phase.ROLLED_BACK}), [], old_end + timedelta(days=9)
        )
        live, _ = await store.create(make_rollout("c"), new_events("x"), T0)  # old, but live

        cutoff = old_end + timedelta(days=5)
        assert await store.prune(cutoff) == 1
        assert await store.prune(cutoff) == 0

        for call in (lambda: store.get(ended.id), lambda: store.events(ended.id)):
            with pytest.raises(NotFound):
                await call()
        assert await store.find_by_key("build-1") is None
        assert {r.id for r in await store.list()} == {live.id, recent.id}
        assert [e.kind for e in await store.events(live.id)] == ["x"]
        assert await store.prune(cutoff + timedelta(days=3650), limit=0) == 0
        assert await store.prune(cutoff + timedelta(days=3650)) == 1, "recent, once old"
        assert await store.live() == [live]
        # The pruned rollout's key and target are free again.
        await store.create(make_rollout("a", key="build-1"), [], T0)

    # ------------------------------------------------------------ one live rollout per target

    async def test_a_live_rollout_holds_its_targets(self, store: Store) -> None:
        first, _ = await store.create(make_rollout("checkout", "payments", name="first"), [], T0)
        second = make_rollout("search", "payments", name="second", key="build-2")

        with pytest.raises(TargetBusy) as caught:
            await store.create(second, new_events("created"), T0)

        busy = caught.value
        assert (busy.target_key, busy.rollout_id, busy.rollout_name) == (
            lambda_key("payments"),
            first.id,
            "first",
        )
        assert f"{first.id} (first)" in str(busy)
        # Nothing of the refused rollout was written: not the record, its events, its key
        # or a claim on its other target.
        with pytest.raises(NotFound):
            await store.get(second.id)
        with pytest.raises(NotFound):
            await store.events(second.id)
        assert await store.find_by_key("build-2") is None
        assert await store.list() == [first]
        await store.create(make_rollout("search"), [], T0)

    async def test_ending_a_rollout_frees_its_targets(self, store: Store) -> None:
        first, _ = await store.create(make_rollout("checkout", name="first"), [], T0)
        first, _ = await store.save(first.model_copy(update={"phase": Phase.ROLLING_BACK}), [], T0)
        with pytest.raises(TargetBusy):
            await store.create(make_rollout("checkout"), [], T0)

        first, _ = await store.save(first.model_copy(update={"phase": Phase.ROLLED_BACK}), [], T0)
        second, _ = await store.create(make_rollout("checkout", name="second"), [], T0)

        # Saving the ended rollout again must not take the target back or free it.
        await store.save(first, new_events("note"), T0)
        with pytest.raises(TargetBusy) as caught:
            await store.create(make_rollout("checkout", name="third"), [], T0)
        assert caught.value.rollout_id == second.id

    async def test_concurrent_creates_on_one_target_have_one_winner(self, store: Store) -> None:
        rollouts = [make_rollout("checkout", name=f"r{n}") for n in range(10)]

        results = await asyncio.gather(
            *(store.create(r, [], T0) for r in rollouts), return_exceptions=True
        )

        winners = [x[0] for x in results if isinstance(x, tuple)]
        assert len(winners) == 1
        losers = [x for x in results if not isinstance(x, tuple)]
        assert all(isinstance(x, TargetBusy) and x.rollout_id == winners[0].id for x in losers)
        assert await store.live() == winners

    async def test_rollouts_on_different_targets_run_side_by_side(self, store: Store) -> None:
        rollouts = [make_rollout(f"fn{n}", name=f"r{n}") for n in range(5)]

        await asyncio.gather(*(store.create(r, [], T0) for r in rollouts))

        assert {r.id for r in await store.live()} == {r.id for r in rollouts}

    # ------------------------------------------------------------ idempotency keys

    async def test_duplicate_idempotency_key_is_refused(self, store: Store) -> None:
        first, _ = await store.create(make_rollout("checkout", key="build-7"), [], T0)
        other = make_rollout("search", key="build-7")

        with pytest.raises(DuplicateKey) as caught:
            await store.create(other, [], T0)

        assert (caught.value.key, caught.value.rollout_id) == ("build-7", first.id)
        with pytest.raises(NotFound):
            await store.get(other.id)
        assert await store.find_by_key("build-7") == first

    async def test_a_retried_create_reports_the_key_not_the_busy_target(self, store: Store) -> None:
        first, _ = await store.create(make_rollout("checkout", key="build-7"), [], T0)

        with pytest.raises(DuplicateKey) as caught:
            await store.create(make_rollout("checkout", key="build-7"), [], T0)

        assert caught.value.rollout_id == first.id

    async def test_find_by_key(self, store: Store) -> None:
        keyed, _ = await store.create(make_rollout("a", key="build-1"), [], T0)
        await store.create(make_rollout("b"), [], T0)
        keyed, _ = await store.save(keyed.model_copy(update={"phase": Phase.SUCCEEDED}), [], T0)

        assert await store.find_by_key("build-1") == keyed
        assert await store.find_by_key("build-2") is None

    # ------------------------------------------------------------ queries

    async def test_list_is_newest_first_and_pages_without_gaps(self, store: Store) -> None:
        # Half-second steps: times with and without a fraction of a second.
        times = [T0 + timedelta(milliseconds=500 * n) for n in range(7)]
        created = [
            (await store.create(make_rollout(f"fn{n}", at=at), [], at))[0]
            for n, at in enumerate(times)
        ]
        # Created last, in the same millisecond as the oldest and with the larger id: the id
        # breaks the tie, as it does for ids made by new_rollout_id.
        twin = make_rollout("twin").model_copy(update={"id": created[0].id[:12] + "f" * 10})
        await store.create(twin, [], T0)
        expected = [r.id for r in reversed(created[1:])] + [twin.id, created[0].id]

        everything = await store.list()

        assert [r.id for r in everything] == expected
        assert await all_pages(store, limit=3) == everything
        assert [r.id for r in await store.list(limit=2)] == expected[:2]
        assert await store.list(limit=0) == []
        assert await store.list(limit=-1) == []  # never "no limit"

    async def test_list_filters_by_phase_and_target(self, store: Store) -> None:
        a, _ = await store.create(make_rollout("checkout", "payments", name="a"), [], T0)
        a, _ = await store.save(a.model_copy(update={"phase": Phase.SUCCEEDED}), [], T0)
        b, _ = await store.create(
            make_rollout("payments", name="b", at=T0 + timedelta(seconds=1)), [], T0
        )
        c, _ = await store.create(
            make_rollout("search", name="c", at=T0 + timedelta(seconds=2)), [], T0
        )

        assert await store.list(phase=Phase.SUCCEEDED) == [a]
        assert await store.list(phase=Phase.PENDING) == [c, b]
        assert await store.list(phase=Phase.PAUSED) == []
        assert await store.list(target=lambda_key("payments")) == [b, a]
        assert await store.list(target=lambda_key("checkout")) == [a]
        assert await store.list(target=lambda_key("payments"), phase=Phase.PENDING) == [b]
        assert await store.list(target="lambda-alias/nowhere") == []

    async def test_filtered_pages_have_no_gaps(self, store: Store) -> None:
        created = []
        for n in range(7):
            at = T0 + timedelta(seconds=n)
            r, _ = await store.create(make_rollout(f"fn{n}", at=at), [], at)
            if n % 2:
                r, _ = await store.save(r.model_copy(update={"phase": Phase.FAILED}), [], at)
            created.append(r)

        pages = await all_pages(store, phase=Phase.FAILED, limit=2)

        assert [r.id for r in pages] == [r.id for r in reversed(created[1::2])]

    async def test_list_before_an_unknown_id_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            await store.list(before="no-such-rollout")

    async def test_live_is_every_unfinished_rollout_oldest_first(self, store: Store) -> None:
        phases = [Phase.PAUSED, Phase.SUCCEEDED, Phase.ROLLBACK_FAILED, Phase.FAILED, Phase.PENDING]
        saved = []
        for n, phase in enumerate(phases):
            at = T0 - timedelta(minutes=n)  # created in reverse order of the list
            r, _ = await store.create(make_rollout(f"fn{n}", at=at), [], at)
            r, _ = await store.save(r.model_copy(update={"phase": phase}), [], at)
            saved.append(r)

        live = await store.live()

        assert live == [saved[4], saved[2], saved[0]]

    # ------------------------------------------------------------ quarantine

    async def _broken(self, store: Store, corrupt: Corrupt) -> tuple[Rollout, Rollout]:
        """A valid rollout, and a newer one in phase baking whose record no longer reads."""
        ok, _ = await store.create(make_rollout("ok"), [], T0)
        later = T0 + timedelta(seconds=1)
        bad, _ = await store.create(
            make_rollout("bad", at=later, key="build-7"), new_events("created"), later
        )
        bad, _ = await store.save(bad.model_copy(update={"phase": Phase.BAKING}), [], later)
        await corrupt(store, bad.id, with_infinite_bake(bad))
        return ok, bad

    async def test_a_record_that_no_longer_validates_is_quarantined(
        self, store: Store, corrupt: Corrupt
    ) -> None:
        _ok, bad = await self._broken(store, corrupt)

        with pytest.raises(Unreadable) as caught:
            await store.get(bad.id)

        q = caught.value.quarantined
        assert (q.id, q.phase, q.live, q.name, q.version) == (bad.id, "baking", True, "checkout", 2)
        assert "spec.steps[0].bake" in q.error
        assert "Infinitys" in q.error
        assert "\n" not in q.error
        assert q.targets == (lambda_key("bad"),)
        assert isinstance(caught.value, NotFound)  # code that runs rollouts drops it
        assert [e.kind for e in await store.events(bad.id)] == ["created"]

    async def test_a_quarantined_record_is_listed_but_never_live(
        self, store: Store, corrupt: Corrupt
    ) -> None:
        ok, bad = await self._broken(store, corrupt)

        listed = await store.list()

        assert [r.id for r in listed] == [bad.id, ok.id]
        assert isinstance(listed[0], Quarantined)
        assert listed[1] == ok
        assert [r.id for r in await store.list(phase=Phase.BAKING)] == [bad.id]
        assert [r.id for r in await store.list(target=lambda_key("bad"))] == [bad.id]
        assert await store.list(before=bad.id) == [ok]
        with structlog.testing.capture_logs() as logged:
            assert await store.live() == [ok]
            assert await store.live() == [ok]
        warned = [e for e in logged if e["event"] == "rollout.quarantined"]
        assert [(e["rollout_id"], e["log_level"]) for e in warned] == [(bad.id, "warning")]
        assert "Infinitys" in warned[0]["error"]

    async def test_a_quarantined_rollout_keeps_its_targets_and_key(
        self, store: Store, corrupt: Corrupt
    ) -> None:
        _, bad = await self._broken(store, corrupt)

        with pytest.raises(TargetBusy) as busy:
            await store.create(make_rollout("bad", name="other"), [], T0)
        assert busy.value.rollout_id == bad.id
        with pytest.raises(Unreadable):
            await store.find_by_key("build-7")

    async def test_resolving_a_quarantined_rollout_frees_its_targets(
        self, store: Store, corrupt: Corrupt
    ) -> None:
        _, bad = await self._broken(store, corrupt)
        with pytest.raises(Unreadable) as caught:
            await store.get(bad.id)
        q = caught.value.quarantined
        at = T0 + timedelta(minutes=1)

        resolved, added = await store.resolve(
            q, Phase.ROLLED_BACK, "aborted", new_events("rollout.rolled_back"), at
        )

        assert (resolved.phase, resolved.live, resolved.version) == ("rolled_back", False, 3)
        assert [(e.seq, e.kind, e.at) for e in added] == [(2, "rollout.rolled_back", at)]
        assert [e.kind for e in await store.events(bad.id)] == ["created", "rollout.rolled_back"]
        listed = (await store.list(phase=Phase.ROLLED_BACK))[0]
        assert isinstance(listed, Quarantined)
        assert listed.error == q.error
        with pytest.raises(StaleWrite):  # it was resolved from version 2 already
            await store.resolve(q, Phase.ROLLED_BACK, "again", [], at)
        await store.create(make_rollout("bad", name="next"), [], at)  # the target is free

    # ------------------------------------------------------------ lifecycle

    async def test_a_closed_store_refuses_calls(self, store: Store) -> None:
        r, _ = await store.create(make_rollout(), [], T0)
        await store.ping()

        await store.close()

        for call in (
            store.ping,
            lambda: store.get(r.id),
            lambda: store.create(make_rollout("x"), [], T0),
        ):
            with pytest.raises(StoreError, match="closed"):
                await call()
        await store.close()  # closing twice is harmless
