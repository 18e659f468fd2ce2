"""The k8s-nginx strategy against a real API server (built-in Ingress), by the real engine.

ingress-nginx is not running: what canary controls is the canary Ingress's
``nginx.ingress.kubernetes.io/canary-weight`` annotation, which is what the controller reads.
Every read and write is a real call of the ``kubernetes`` client as the user ``canary``; the
admin reads the annotation back and plays the other writer.
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

PREFIX = "nginx.ingress.kubernetes.io/"
_names = itertools.count()


class Ingresses:
    """A stable Ingress and its canary twin in the test server, made and read as the admin."""

    def __init__(self, k8s: Any) -> None:
        from kubernetes import client

        self.admin = k8s.api()
        self.api = client.NetworkingV1Api(self.admin)
        self.name = f"web-{next(_names)}"
        self.canary = f"{self.name}-canary"

    def _ingress(
        self, name: str, service: str, annotations: dict[str, str], host: str
    ) -> dict[str, Any]:
        path = {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"number": 80}}},
        }
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": host, "http": {"paths": [path]}}],
            },
        }

    def create(
        self,
        canary_annotations: dict[str, str] | None = None,
        canary_service: str = "web-canary",
        canary_host: str | None = None,
        stable: bool = True,
    ) -> None:
        host = f"{self.name}.example.com"
        if stable:
            self.api.create_namespaced_ingress(
                "default", self._ingress(self.name, "web-stable", {}, host)
            )
        notes = (
            {PREFIX + "canary": "true", PREFIX + "canary-weight": "0"}
            if canary_annotations is None
            else canary_annotations
        )
        self.api.create_namespaced_ingress(
            "default", self._ingress(self.canary, canary_service, notes, canary_host or host)
        )

    def get(self) -> dict[str, Any]:
        found = self.api.read_namespaced_ingress(self.canary, "default")
        return dict(self.admin.sanitize_for_serialization(found))

    def weights(self) -> Weights:
        notes = self.get()["metadata"].get("annotations") or {}
        return {"canary-weight": int(notes.get(PREFIX + "canary-weight", "0"))}

    def set_weight(self, weight: int) -> None:
        self.api.patch_namespaced_ingress(
            self.canary,
            "default",
            {"metadata": {"annotations": {PREFIX + "canary-weight": str(weight)}}},
            _content_type="application/merge-patch+json",
        )


def target(ing: Ingresses, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "k8s-nginx",
        "ingress": ing.name,
        "canary_ingress": ing.canary,
        "canary_service": "web-canary",
    } | extra


def spec(ing: Ingresses, analysis: dict[str, Any] | None = None, **extra: Any) -> RolloutDocument:
    return document(targets=[target(ing, **extra)], analysis=analysis, name=ing.name)


def strategy_for(kube: KubeClients, ing: Ingresses, **extra: Any) -> Strategy:
    return create_strategy(
        spec(ing, **extra).spec.targets[0], None, Clients(None, {from_settings: kube})
    )


def weight(w: int) -> Weights:
    return {"canary-weight": w}


async def test_each_step_sets_the_canary_weight_and_the_promotion_puts_all_on_it(
    k8s: Any, kube: KubeClients
) -> None:
    ing = Ingresses(k8s)
    ing.create()
    rig = Rig(kube, ing)
    r = await rig.run(spec(ing))
    assert r.phase == Phase.SUCCEEDED, r.reason
    assert rig.seen == [
        ("shift", 10, weight(10)),
        ("shift", 25, weight(25)),
        ("shift", 50, weight(50)),
        ("shift", 100, weight(100)),
        ("promote", None, weight(100)),
    ]


async def test_a_gate_failing_at_25_sets_the_weight_back_to_0(k8s: Any, kube: KubeClients) -> None:
    ing = Ingresses(k8s)
    ing.create()
    before = ing.get()
    rig = Rig(kube, ing, spike_from(25))
    r = await rig.run(spec(ing, analysis=GATES))
    assert r.phase == Phase.ROLLED_BACK
    assert [w for what, w, _ in rig.seen if what == "shift"] == [10, 25]
    after = ing.get()
    assert after["spec"] == before["spec"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]


async def test_a_weight_total_is_honoured(k8s: Any, kube: KubeClients) -> None:
    ing = Ingresses(k8s)
    ing.create(
        {
            PREFIX + "canary": "true",
            PREFIX + "canary-weight": "0",
            PREFIX + "canary-weight-total": "1000",
        }
    )
    strategy = strategy_for(kube, ing)
    await strategy.validate()
    await strategy.observe()
    got = await strategy.shift(2.5)
    assert ing.weights() == weight(25)
    assert got.canary_weight == pytest.approx(2.5)


async def test_a_share_the_total_cannot_express_is_refused_with_the_fix(
    k8s: Any, kube: KubeClients
) -> None:
    ing = Ingresses(k8s)
    ing.create()
    strategy = strategy_for(kube, ing)
    await strategy.observe()
    with pytest.raises(PermanentError) as refused:
        await strategy.shift(2.5)
    assert 'canary-weight-total: "1000"' in str(refused.value)
    assert ing.weights() == weight(0)


async def test_a_hand_edit_mid_bake_pauses_the_rollout_as_drift(
    k8s: Any, kube: KubeClients
) -> None:
    ing = Ingresses(k8s)
    ing.create()
    rig = Rig(kube, ing)

    async def hand_edit() -> None:
        await asyncio.to_thread(ing.set_weight, 30)

    when = rig.clock.now() + timedelta(minutes=2)
    r = await rig.run(spec(ing), scheduled=[(when, hand_edit)])
    assert r.phase == Phase.PAUSED
    assert "canary 30%" in (r.paused_reason or "")
    assert ing.weights() == weight(30)


async def test_a_concurrent_write_gets_409_and_a_foreign_split_is_drift(
    k8s: Any, kube: KubeClients
) -> None:
    ing = Ingresses(k8s)
    ing.create()
    raced: list[float] = []

    def race(w: float) -> None:
        if w == 25 and not raced:
            raced.append(w)
            ing.set_weight(40)

    rig = Rig(kube, ing, before_shift=race)
    r = await rig.run(spec(ing))
    assert r.phase == Phase.PAUSED
    assert "canary 40%" in (r.paused_reason or "")
    assert [(what, w) for what, w, _ in rig.seen] == [("shift", 10), ("409", 25)]


REFUSALS: dict[str, tuple[Callable[[Ingresses], Any] | None, str, str]] = {
    "missing canary ingress": (None, "canary", "does not exist; create it first"),
    "missing stable ingress": (
        lambda i: i.create(stable=False),
        "canary",
        "(ingress) does not exist; create the stable Ingress first",
    ),
    "not annotated canary": (
        lambda i: i.create({PREFIX + "canary-weight": "0"}),
        "canary",
        'is not annotated nginx.ingress.kubernetes.io/canary: "true"',
    ),
    "weight out of range": (
        lambda i: i.create({PREFIX + "canary": "true", PREFIX + "canary-weight": "150"}),
        "canary",
        "canary-weight '150' is not an integer from 0 to 100",
    ),
    "another service": (
        lambda i: i.create(canary_service="web-stable"),
        "canary",
        "sends traffic to Services ['web-stable'], not only web-canary (canary_service)",
    ),
    "another host": (
        lambda i: i.create(canary_host="other.example.com"),
        "canary",
        "ingress-nginx splits a host only between Ingresses of the same host",
    ),
    "no patch rights": (
        lambda i: i.create(),
        "readonly",
        "the daemon may not patch ingresses.networking.k8s.io",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_preflight_refuses_with_the_fix_and_changes_nothing(case: str, k8s: Any) -> None:
    prepare, user, expected = REFUSALS[case]
    ing = Ingresses(k8s)
    if prepare is not None:
        prepare(ing)
    before = ing.get()["metadata"]["resourceVersion"] if prepare is not None else None
    kube = KubeClients(str(k8s.kubeconfig(user)))
    try:
        with pytest.raises(PermanentError) as refused:
            await strategy_for(kube, ing).validate()
    finally:
        kube.close()
    assert expected in str(refused.value)
    if before is not None:
        assert ing.get()["metadata"]["resourceVersion"] == before


def test_one_stable_ingress_has_one_key(k8s: Any, kube: KubeClients) -> None:
    ing = Ingresses(k8s)
    clients = Clients(None, {from_settings: kube})
    keys = {
        canonical(spec(ing, **e).spec.targets[0], clients).key()
        for e in ({}, {"context": "canary"})
    }
    assert keys == {f"k8s-nginx/canary/default/{ing.name}"}
