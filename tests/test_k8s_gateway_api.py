"""The k8s-gateway-api strategy against a real API server, driven by the real engine.

The engine runs on a virtual clock while every read and write of the HTTPRoute is a real
call of the ``kubernetes`` client to kube-apiserver (tests/k8sserver.py), as the user
``canary`` (granted get and patch on httproutes). The admin client reads the route
independently, as a person with kubectl would, and plays the other writer.
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

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
_names = itertools.count()


class Routes:
    """HTTPRoutes in the test server, created and read as the admin."""

    def __init__(self, k8s: Any) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(k8s.api())
        self.name = f"catalog-{next(_names)}"

    def create(
        self,
        backends: list[tuple[str, int]] = (("catalog-stable", 100), ("catalog-canary", 0)),  # type: ignore[assignment]
        rules: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        refs = [{"name": name, "port": 80, "weight": weight} for name, weight in backends]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HTTPRoute",
            "metadata": {"name": self.name, "labels": {"team": "shop"}},
            "spec": {
                "parentRefs": [{"name": "edge"}],
                "hostnames": ["catalog.example.com"],
                "rules": rules
                or [
                    {
                        "name": "main",
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": refs,
                    }
                ],
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

    def weights(self, rule: int = 0) -> Weights:
        refs = self.get()["spec"]["rules"][rule]["backendRefs"]
        return {ref["name"]: ref["weight"] for ref in refs}

    def set_weights(self, weights: Weights, rule: int = 0) -> None:
        rules = self.get()["spec"]["rules"]
        for ref in rules[rule]["backendRefs"]:
            ref["weight"] = weights.get(ref["name"], ref["weight"])
        self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            self.name,
            {"spec": {"rules": rules}},
            _content_type="application/merge-patch+json",
        )


def target(routes: Routes, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "k8s-gateway-api",
        "route": routes.name,
        "stable_service": "catalog-stable",
        "canary_service": "catalog-canary",
    } | extra


def spec(routes: Routes, analysis: dict[str, Any] | None = None, **extra: Any) -> RolloutDocument:
    return document(targets=[target(routes, **extra)], analysis=analysis, name=routes.name)


def strategy_for(
    kube: KubeClients, routes: Routes, stable: str | None = None, **extra: Any
) -> Strategy:
    return create_strategy(
        spec(routes, **extra).spec.targets[0], stable, Clients(None, {from_settings: kube})
    )


STABLE, CANARY = "catalog-stable", "catalog-canary"


def split(stable: int, canary: int) -> Weights:
    return {STABLE: stable, CANARY: canary}


# ---------------------------------------------------------------- whole rollouts


async def test_each_step_weights_the_canary_and_the_promotion_puts_all_on_it(
    k8s: Any, kube: KubeClients
) -> None:
    routes = Routes(k8s)
    routes.create()
    rig = Rig(kube, routes)
    r = await rig.run(spec(routes))
    assert r.phase == Phase.SUCCEEDED, r.reason
    assert rig.seen == [
        ("shift", 10, split(90, 10)),
        ("shift", 25, split(75, 25)),
        ("shift", 50, split(50, 50)),
        ("shift", 100, split(0, 100)),
        ("promote", None, split(0, 100)),
    ]
    assert r.targets[0].stable == STABLE


async def test_a_gate_failing_at_25_puts_everything_back_on_stable_and_leaves_the_rest(
    k8s: Any, kube: KubeClients
) -> None:
    routes = Routes(k8s)
    before = routes.create()
    rig = Rig(kube, routes, spike_from(25))
    r = await rig.run(spec(routes, analysis=GATES))
    assert r.phase == Phase.ROLLED_BACK
    assert "error-rate 0.05 > max 0.01" in (r.reason or "")
    assert [w for what, w, _ in rig.seen if what == "shift"] == [10, 25]
    after = routes.get()
    assert routes.weights() == split(100, 0)
    # Only the weights were ever written: matches, parents, hostnames and labels are as made.
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == {"team": "shop"}


async def test_a_route_changed_by_hand_mid_bake_pauses_the_rollout_as_drift(
    k8s: Any, kube: KubeClients
) -> None:
    routes = Routes(k8s)
    routes.create()
    rig = Rig(kube, routes)

    async def hand_edit() -> None:
        await asyncio.to_thread(routes.set_weights, split(70, 30))

    when = rig.clock.now() + timedelta(minutes=2)  # inside the 5-minute bake at 10%
    r = await rig.run(spec(routes), scheduled=[(when, hand_edit)])
    assert r.phase == Phase.PAUSED
    assert "drift" in (r.paused_reason or "")
    assert "canary 30%" in (r.paused_reason or "")
    assert routes.weights() == split(70, 30), "canary never fights a person's change"
    assert "traffic.drift" in await rig.events(r)


async def test_a_write_over_a_concurrent_change_gets_409_and_a_foreign_split_is_drift(
    k8s: Any, kube: KubeClients
) -> None:
    routes = Routes(k8s)
    routes.create()
    raced: list[float] = []

    def race(weight: float) -> None:
        if weight == 25 and not raced:
            raced.append(weight)
            routes.set_weights(split(60, 40))  # between canary's last read and its patch

    rig = Rig(kube, routes, before_shift=race)
    r = await rig.run(spec(routes))
    assert r.phase == Phase.PAUSED
    assert "canary 40%" in (r.paused_reason or "")
    assert routes.weights() == split(60, 40)
    # The patch carried the resourceVersion of canary's last read: refused with 409, and
    # nothing of canary's reached the route.
    assert [(what, w) for what, w, _ in rig.seen] == [("shift", 10), ("409", 25)]


# ---------------------------------------------------------------- preflight


def _third_backend(routes: Routes) -> None:
    routes.create([(STABLE, 80), (CANARY, 0), ("catalog-legacy", 20)])


def _two_unnamed_rules(routes: Routes) -> None:
    refs = [{"name": STABLE, "port": 80, "weight": 100}, {"name": CANARY, "port": 80, "weight": 0}]
    routes.create(rules=[{"backendRefs": refs}, {"backendRefs": refs}])


REFUSALS: dict[str, tuple[dict[str, Any], Callable[[Routes], Any] | None, str, str]] = {
    "missing route": ({}, None, "canary", "does not exist; create it first"),
    "one backend": (
        {},
        lambda r: r.create([(STABLE, 100)]),
        "canary",
        "rule main's backendRefs do not reference Service catalog-canary (canary_service)",
    ),
    "third backend": ({}, _third_backend, "canary", "also sends traffic to Service catalog-legacy"),
    "no weight anywhere": (
        {},
        lambda r: r.create([(STABLE, 0), (CANARY, 0)]),
        "canary",
        "gives both Services weight 0",
    ),
    "unknown rule": ({"rule": "api"}, lambda r: r.create(), "canary", "has no rule named 'api'"),
    "rule needed": ({}, _two_unnamed_rules, "canary", "has 2 rules; set the target's rule"),
    "no patch rights": (
        {},
        lambda r: r.create(),
        "readonly",
        "the daemon may not patch httproutes.gateway.networking.k8s.io",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_preflight_refuses_with_the_fix_and_changes_nothing(case: str, k8s: Any) -> None:
    fields, prepare, user, expected = REFUSALS[case]
    routes = Routes(k8s)
    if prepare is not None:
        prepare(routes)
    before = routes.get()["metadata"]["resourceVersion"] if prepare is not None else None
    kube = KubeClients(str(k8s.kubeconfig(user)))
    try:
        with pytest.raises(PermanentError) as refused:
            await strategy_for(kube, routes, **fields).validate()
    finally:
        kube.close()
    assert expected in str(refused.value)
    if before is not None:
        assert routes.get()["metadata"]["resourceVersion"] == before, "validate never writes"


async def test_a_rollout_on_a_route_with_one_backend_fails_before_any_change(
    k8s: Any, kube: KubeClients
) -> None:
    routes = Routes(k8s)
    version = routes.create([(STABLE, 100)])["metadata"]["resourceVersion"]
    r = await Rig(kube, routes).run(spec(routes))
    assert r.phase == Phase.FAILED
    assert (r.reason or "").startswith("preflight failed, nothing was changed")
    assert "catalog-canary (canary_service)" in (r.reason or "")
    assert routes.get()["metadata"]["resourceVersion"] == version


def test_the_same_service_twice_is_refused_by_the_spec_itself() -> None:
    with pytest.raises(SpecError) as refused:
        document(
            targets=[
                {
                    "kind": "k8s-gateway-api",
                    "route": "catalog",
                    "stable_service": "catalog",
                    "canary_service": "catalog",
                }
            ]
        )
    assert "canary_service is the same Service as stable_service" in str(refused.value)


# ---------------------------------------------------------------- single calls


async def test_a_share_that_needs_finer_weights_gets_them(k8s: Any, kube: KubeClients) -> None:
    routes = Routes(k8s)
    routes.create()
    strategy = strategy_for(kube, routes, stable=STABLE)
    await strategy.observe()
    got = await strategy.shift(2.5)
    assert routes.weights() == split(975, 25)
    assert got.canary_weight == pytest.approx(2.5)


async def test_a_named_rule_among_several_is_the_one_shifted(k8s: Any, kube: KubeClients) -> None:
    routes = Routes(k8s)
    refs = [{"name": STABLE, "port": 80, "weight": 100}, {"name": CANARY, "port": 80, "weight": 0}]
    routes.create(
        rules=[{"name": "api", "backendRefs": refs}, {"name": "web", "backendRefs": refs}]
    )
    strategy = strategy_for(kube, routes, stable=STABLE, rule="web")
    await strategy.validate()
    await strategy.shift(25)
    assert routes.weights(rule=1) == split(75, 25)
    assert routes.weights(rule=0) == split(100, 0)


def test_one_route_has_one_key_whatever_the_rule_or_context_named(k8s: Any) -> None:
    kube = KubeClients(str(k8s.kubeconfig("canary")))
    clients = Clients(None, {from_settings: kube})
    routes = Routes(k8s)
    keys = {
        canonical(spec(routes, **extra).spec.targets[0], clients).key()
        for extra in (
            {},
            {"context": "canary"},
            {"rule": "main"},
            {"context": "canary", "rule": "main"},
        )
    }
    assert keys == {f"k8s-gateway-api/canary/default/{routes.name}"}


def test_reading_and_keying_a_kubernetes_spec_loads_no_kubernetes_client(tmp_path: Any) -> None:
    """The ``kubernetes`` package loads on the first call to a cluster, not before."""
    import subprocess
    import sys
    from pathlib import Path

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("current-context: prod-eu\ncontexts: [{name: prod-eu}]\n")
    check = (
        "import sys\n"
        "from config.spec import load_file\n"
        "import canary.daemon\n"
        "from strategies.registry import Clients, canonical\n"
        "doc = load_file('config/examples/k8s-gateway-api.yaml')\n"
        "print(canonical(doc.spec.targets[0], Clients(None)).key())\n"
        "print('kubernetes' in sys.modules)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["k8s-gateway-api/prod-eu/shop/catalog", "False"]
