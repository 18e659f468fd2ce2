"""The k8s-smi strategy against a real API server (a TrafficSplit CRD), by the real engine.

As for the Gateway API (tests/test_k8s_gateway_api.py): every read and write is a real call
of the ``kubernetes`` client as the user ``canary``; the admin reads the TrafficSplit back
and plays the other writer.
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
from config.spec import RolloutDocument
from strategies.base import PermanentError, Strategy
from strategies.k8s import KubeClients, from_settings
from strategies.registry import Clients, canonical, create_strategy

GROUP, VERSION, PLURAL = "split.smi-spec.io", "v1alpha2", "trafficsplits"
STABLE, CANARY = "orders-v1", "orders-v2"
_names = itertools.count()


class Splits:
    """TrafficSplits in the test server, created and read as the admin."""

    def __init__(self, k8s: Any) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(k8s.api())
        self.name = f"orders-{next(_names)}"

    def create(
        self,
        backends: tuple[tuple[str, int], ...] = ((STABLE, 100), (CANARY, 0)),
        service: str = "orders",
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrafficSplit",
            "metadata": {"name": self.name},
            "spec": {
                "service": service,
                "backends": [{"service": s, "weight": w} for s, w in backends],
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

    def weights(self) -> Weights:
        return {b["service"]: b["weight"] for b in self.get()["spec"]["backends"]}

    def set_weights(self, weights: Weights) -> None:
        backends = [{"service": s, "weight": w} for s, w in weights.items()]
        self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            self.name,
            {"spec": {"backends": backends}},
            _content_type="application/merge-patch+json",
        )


def target(ts: Splits, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "k8s-smi",
        "traffic_split": ts.name,
        "root_service": "orders",
        "stable_service": STABLE,
        "canary_service": CANARY,
    } | extra


def spec(ts: Splits, analysis: dict[str, Any] | None = None, **extra: Any) -> RolloutDocument:
    return document(targets=[target(ts, **extra)], analysis=analysis, name=ts.name)


def strategy_for(kube: KubeClients, ts: Splits, **extra: Any) -> Strategy:
    return create_strategy(
        spec(ts, **extra).spec.targets[0], None, Clients(None, {from_settings: kube})
    )


def split(stable: int, canary: int) -> Weights:
    return {STABLE: stable, CANARY: canary}


async def test_each_step_weights_the_canary_backend_and_the_promotion_puts_all_on_it(
    k8s: Any, kube: KubeClients
) -> None:
    ts = Splits(k8s)
    ts.create()
    rig = Rig(kube, ts)
    r = await rig.run(spec(ts))
    assert r.phase == Phase.SUCCEEDED, r.reason
    assert rig.seen == [
        ("shift", 10, split(90, 10)),
        ("shift", 25, split(75, 25)),
        ("shift", 50, split(50, 50)),
        ("shift", 100, split(0, 100)),
        ("promote", None, split(0, 100)),
    ]


async def test_a_gate_failing_at_25_puts_everything_back_on_the_stable_backend(
    k8s: Any, kube: KubeClients
) -> None:
    ts = Splits(k8s)
    ts.create()
    rig = Rig(kube, ts, spike_from(25))
    r = await rig.run(spec(ts, analysis=GATES))
    assert r.phase == Phase.ROLLED_BACK
    assert [w for what, w, _ in rig.seen if what == "shift"] == [10, 25]
    assert ts.weights() == split(100, 0)


async def test_a_hand_edit_mid_bake_pauses_the_rollout_as_drift(
    k8s: Any, kube: KubeClients
) -> None:
    ts = Splits(k8s)
    ts.create()
    rig = Rig(kube, ts)

    async def hand_edit() -> None:
        await asyncio.to_thread(ts.set_weights, split(500, 500))

    when = rig.clock.now() + timedelta(minutes=2)
    r = await rig.run(spec(ts), scheduled=[(when, hand_edit)])
    assert r.phase == Phase.PAUSED
    assert "canary 50%" in (r.paused_reason or "")
    assert ts.weights() == split(500, 500)


async def test_a_concurrent_write_gets_409_and_a_foreign_split_is_drift(
    k8s: Any, kube: KubeClients
) -> None:
    ts = Splits(k8s)
    ts.create()
    raced: list[float] = []

    def race(weight: float) -> None:
        if weight == 25 and not raced:
            raced.append(weight)
            ts.set_weights(split(60, 40))

    rig = Rig(kube, ts, before_shift=race)
    r = await rig.run(spec(ts))
    assert r.phase == Phase.PAUSED
    assert "canary 40%" in (r.paused_reason or "")
    assert [(what, w) for what, w, _ in rig.seen] == [("shift", 10), ("409", 25)]


REFUSALS: dict[str, tuple[Callable[[Splits], Any] | None, str, str]] = {
    "missing": (None, "canary", "does not exist; create it first"),
    "one backend": (
        lambda t: t.create(((STABLE, 100),)),
        "canary",
        "its backends do not include Service orders-v2 (canary_service)",
    ),
    "another root": (
        lambda t: t.create(service="payments"),
        "canary",
        "splits Service payments, not orders (root_service)",
    ),
    "no weight anywhere": (
        lambda t: t.create(((STABLE, 0), (CANARY, 0))),
        "canary",
        "gives both Services weight 0",
    ),
    "no patch rights": (
        lambda t: t.create(),
        "readonly",
        "the daemon may not patch trafficsplits.split.smi-spec.io",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_preflight_refuses_with_the_fix_and_changes_nothing(case: str, k8s: Any) -> None:
    prepare, user, expected = REFUSALS[case]
    ts = Splits(k8s)
    if prepare is not None:
        prepare(ts)
    before = ts.get()["metadata"]["resourceVersion"] if prepare is not None else None
    kube = KubeClients(str(k8s.kubeconfig(user)))
    try:
        with pytest.raises(PermanentError) as refused:
            await strategy_for(kube, ts).validate()
    finally:
        kube.close()
    assert expected in str(refused.value)
    if before is not None:
        assert ts.get()["metadata"]["resourceVersion"] == before


def test_one_traffic_split_has_one_key(k8s: Any, kube: KubeClients) -> None:
    ts = Splits(k8s)
    clients = Clients(None, {from_settings: kube})
    keys = {
        canonical(spec(ts, **e).spec.targets[0], clients).key() for e in ({}, {"context": "canary"})
    }
    assert keys == {f"k8s-smi/canary/default/{ts.name}"}
