"""The k8s-istio strategy against a real API server (a VirtualService CRD), by the real engine.

As for the Gateway API (tests/test_k8s_gateway_api.py): every read and write is a real call
of the ``kubernetes`` client as the user ``canary``; the admin reads the VirtualService
back and plays the other writer.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from helpers import document
from k8srig import GATES, Rig, Weights, spike_from

from canary.model import Phase
from config.errors import SpecError
from config.spec import RolloutDocument
from strategies.base import PermanentError, Strategy
from strategies.k8s import KubeClients, from_settings
from strategies.registry import Clients, canonical, create_strategy

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"
_names = itertools.count()


class VirtualServices:
    """VirtualServices in the test server, created and read as the admin."""

    def __init__(self, k8s: Any) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(k8s.api())
        self.name = f"reviews-{next(_names)}"

    def create(
        self,
        subsets: tuple[tuple[str, int], ...] = (("v1", 100), ("v2", 0)),
        routes: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        route = [{"destination": {"host": "reviews", "subset": s}, "weight": w} for s, w in subsets]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VirtualService",
            "metadata": {"name": self.name},
            "spec": {
                "hosts": ["reviews"],
                "http": routes or [{"name": "primary", "timeout": "3s", "route": route}],
            },
        }
        created: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, body
        )
        return created

    def get(self) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, self.name
        )
        return found

    def weights(self, route: int = 0) -> Weights:
        dests = self.get()["spec"]["http"][route]["route"]
        return {d["destination"]["subset"]: d.get("weight", 0) for d in dests}

    def set_weights(self, weights: Weights, route: int = 0) -> None:
        http = self.get()["spec"]["http"]
        for d in http[route]["route"]:
            d["weight"] = weights[d["destination"]["subset"]]
        self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            self.name,
            {"spec": {"http": http}},
            _content_type="application/merge-patch+json",
        )


def target(vs: VirtualServices, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "k8s-istio",
        "virtual_service": vs.name,
        "host": "reviews",
        "stable_subset": "v1",
        "canary_subset": "v2",
    } | extra


def spec(
    vs: VirtualServices, analysis: dict[str, Any] | None = None, **extra: Any
) -> RolloutDocument:
    return document(targets=[target(vs, **extra)], analysis=analysis, name=vs.name)


def strategy_for(
    kube: KubeClients, vs: VirtualServices, stable: str | None = None, **extra: Any
) -> Strategy:
    return create_strategy(
        spec(vs, **extra).spec.targets[0], stable, Clients(None, {from_settings: kube})
    )


def split(stable: int, canary: int) -> Weights:
    return {"v1": stable, "v2": canary}


async def test_each_step_weights_the_canary_subset_and_the_promotion_puts_all_on_it(
    k8s: Any, kube: KubeClients
) -> None:
    vs = VirtualServices(k8s)
    vs.create()
    rig = Rig(kube, vs)
    r = await rig.run(spec(vs))
    assert r.phase == Phase.SUCCEEDED, r.reason
    assert rig.seen == [
        ("shift", 10, split(90, 10)),
        ("shift", 25, split(75, 25)),
        ("shift", 50, split(50, 50)),
        ("shift", 100, split(0, 100)),
        ("promote", None, split(0, 100)),
    ]
    assert vs.get()["spec"]["http"][0]["timeout"] == "3s", "the rest of the route is kept"


async def test_a_gate_failing_at_25_puts_everything_back_on_the_stable_subset(
    k8s: Any, kube: KubeClients
) -> None:
    vs = VirtualServices(k8s)
    before = vs.create()
    rig = Rig(kube, vs, spike_from(25))
    r = await rig.run(spec(vs, analysis=GATES))
    assert r.phase == Phase.ROLLED_BACK
    assert [w for what, w, _ in rig.seen if what == "shift"] == [10, 25]
    assert vs.get()["spec"] == before["spec"]


async def test_a_hand_edit_mid_bake_pauses_the_rollout_as_drift(
    k8s: Any, kube: KubeClients
) -> None:
    vs = VirtualServices(k8s)
    vs.create()
    rig = Rig(kube, vs)

    async def hand_edit() -> None:
        await asyncio.to_thread(vs.set_weights, split(80, 20))

    when = rig.clock.now() + timedelta(minutes=2)
    r = await rig.run(spec(vs), scheduled=[(when, hand_edit)])
    assert r.phase == Phase.PAUSED
    assert "drift" in (r.paused_reason or "")
    assert "canary 20%" in (r.paused_reason or "")
    assert vs.weights() == split(80, 20)


async def test_a_concurrent_write_gets_409_and_a_foreign_split_is_drift(
    k8s: Any, kube: KubeClients
) -> None:
    vs = VirtualServices(k8s)
    vs.create()
    raced: list[float] = []

    def race(weight: float) -> None:
        if weight == 25 and not raced:
            raced.append(weight)
            vs.set_weights(split(60, 40))

    rig = Rig(kube, vs, before_shift=race)
    r = await rig.run(spec(vs))
    assert r.phase == Phase.PAUSED
    assert "canary 40%" in (r.paused_reason or "")
    assert [(what, w) for what, w, _ in rig.seen] == [("shift", 10), ("409", 25)]
    assert vs.weights() == split(60, 40)


REFUSALS: dict[str, tuple[dict[str, Any], Callable[[VirtualServices], Any] | None, str, str]] = {
    "missing": ({}, None, "canary", "does not exist; create it first"),
    "one destination": (
        {},
        lambda v: v.create((("v1", 100),)),
        "canary",
        "has no destination host reviews subset v2 (canary_subset)",
    ),
    "weights not summing to 100": (
        {},
        lambda v: v.create((("v1", 90), ("v2", 0))),
        "canary",
        "weights 90+0 sum to 90, not 100 as Istio requires",
    ),
    "third subset": (
        {},
        lambda v: v.create((("v1", 80), ("v2", 0), ("v3", 20))),
        "canary",
        "also routes to host reviews subset v3",
    ),
    "unknown route": (
        {"route": "api"},
        lambda v: v.create(),
        "canary",
        "no http route named 'api'",
    ),
    "no patch rights": (
        {},
        lambda v: v.create(),
        "readonly",
        "the daemon may not patch virtualservices.networking.istio.io",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_preflight_refuses_with_the_fix_and_changes_nothing(case: str, k8s: Any) -> None:
    fields, prepare, user, expected = REFUSALS[case]
    vs = VirtualServices(k8s)
    if prepare is not None:
        prepare(vs)
    before = vs.get()["metadata"]["resourceVersion"] if prepare is not None else None
    kube = KubeClients(str(k8s.kubeconfig(user)))
    try:
        with pytest.raises(PermanentError) as refused:
            await strategy_for(kube, vs, **fields).validate()
    finally:
        kube.close()
    assert expected in str(refused.value)
    if before is not None:
        assert vs.get()["metadata"]["resourceVersion"] == before


async def test_a_share_istio_cannot_express_is_refused_and_nothing_written(
    k8s: Any, kube: KubeClients
) -> None:
    vs = VirtualServices(k8s)
    version = vs.create()["metadata"]["resourceVersion"]
    strategy = strategy_for(kube, vs, stable="v1")
    with pytest.raises(PermanentError) as refused:
        await strategy.shift(2.5)
    assert "use whole-number step weights" in str(refused.value)
    assert vs.get()["metadata"]["resourceVersion"] == version


def test_the_same_subset_twice_is_refused_by_the_spec() -> None:
    with pytest.raises(SpecError) as refused:
        document(
            targets=[
                {
                    "kind": "k8s-istio",
                    "virtual_service": "r",
                    "host": "r",
                    "stable_subset": "v1",
                    "canary_subset": "v1",
                }
            ]
        )
    assert "canary_subset is the same subset as stable_subset" in str(refused.value)


def test_no_route_and_the_first_route_named_have_one_key(k8s: Any, kube: KubeClients) -> None:
    vs = VirtualServices(k8s)
    clients = Clients(None, {from_settings: kube})
    keys = {
        canonical(spec(vs, **extra).spec.targets[0], clients).key()
        for extra in ({}, {"route": "primary"}, {"context": "canary", "route": "primary"})
    }
    assert keys == {f"k8s-istio/canary/default/{vs.name}"}
