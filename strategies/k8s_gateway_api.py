"""Gateway API HTTPRoute weights: two Services in one rule's ``backendRefs``.

This module is the whole ``k8s-gateway-api`` kind. The user creates the HTTPRoute
(``gateway.networking.k8s.io/v1``) with a rule whose ``backendRefs`` hold the stable and
the canary Service (the canary at weight 0); canary rewrites the two integer weights, out
of 100 (or out of 1000, 10000... when a step's share needs a finer weight), and leaves the
rest of the route alone. The rule is the one named by ``rule`` or, without it, the route's
only rule. Any other backend with a weight above 0 in that rule is a third version: refused
at preflight, drift afterwards.

The key names the route object, not the rule: every write is conditional on the whole
object's ``resourceVersion``, so two rollouts on two rules of one route would only fight;
one live rollout per HTTPRoute is the rule (``k8s-gateway-api/<context>/<namespace>/<route>``).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from config.targets import Target
from strategies.base import TrafficSplit
from strategies.k8s import (
    K8sTarget,
    KubeClients,
    ObjectName,
    RouterStrategy,
    from_settings,
    integer_weights,
    share,
    two_services,
    with_context,
)
from strategies.kind import TargetKind


class GatewayApiTarget(K8sTarget):
    """An HTTPRoute rule whose backendRefs split traffic between two Services."""

    kind: Literal["k8s-gateway-api"]
    route: ObjectName = Field(description="the HTTPRoute whose rule carries the weights")
    rule: ObjectName | None = Field(
        default=None,
        description="the name of the rule (spec.rules[].name); default: the route's only rule",
    )
    stable_service: ObjectName = Field(description="the Service that serves the stable version")
    canary_service: ObjectName = Field(
        description="the Service that serves the canary (also {{ canary_version }})"
    )

    @model_validator(mode="after")
    def _two_services(self) -> GatewayApiTarget:
        two_services(self.stable_service, self.canary_service)
        return self

    def key(self) -> str:
        return f"k8s-gateway-api/{self._context_key()}/{self.namespace}/{self.route}"

    @property
    def canary_version(self) -> str:
        return self.canary_service


def _is_service(ref: dict[str, Any], name: str, namespace: str) -> bool:
    return (
        ref.get("name") == name
        and ref.get("group", "") in ("", "core")
        and ref.get("kind", "Service") == "Service"
        and ref.get("namespace", namespace) == namespace
    )


class GatewayApiStrategy(RouterStrategy):
    kind: ClassVar[str] = "k8s-gateway-api"
    group: ClassVar[str] = "gateway.networking.k8s.io"
    version: ClassVar[str] = "v1"
    plural: ClassVar[str] = "httproutes"
    object_kind: ClassVar[str] = "HTTPRoute"

    target: GatewayApiTarget

    @property
    def name(self) -> str:
        return self.target.route

    @property
    def stable_name(self) -> str:
        return self.target.stable_service

    # ------------------------------------------------------------ the object's shape

    def _rule(self, obj: dict[str, Any]) -> tuple[int | None, str | None]:
        """(index of the rule, None) or (None, why there is none)."""
        rules = (obj.get("spec") or {}).get("rules") or []
        wanted = self.target.rule
        if wanted is not None:
            for index, rule in enumerate(rules):
                if rule.get("name") == wanted:
                    return index, None
            names = [r["name"] for r in rules if r.get("name")]
            return None, (
                f"has no rule named {wanted!r} (rule; its named rules: "
                f"{', '.join(names) or 'none'}); name the rule in spec.rules[].name or fix rule"
            )
        if len(rules) != 1:
            return None, (
                f"has {len(rules)} rules; set the target's rule to the name of the one whose "
                "backendRefs carry the split (spec.rules[].name)"
            )
        return 0, None

    def _refs(self, rule: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
        """Indexes of the stable refs, the canary refs and every other backendRef."""
        ns = self.target.namespace
        stable, canary, other = [], [], []
        for index, ref in enumerate(rule.get("backendRefs") or []):
            if _is_service(ref, self.target.stable_service, ns):
                stable.append(index)
            elif _is_service(ref, self.target.canary_service, ns):
                canary.append(index)
            else:
                other.append(index)
        return stable, canary, other

    def problems(self, obj: dict[str, Any]) -> list[str]:
        index, why = self._rule(obj)
        if index is None:
            return [why or "no rule"]
        rule = obj["spec"]["rules"][index]
        refs = rule.get("backendRefs") or []
        stable, canary, other = self._refs(rule)
        found: list[str] = []
        where = f"rule {rule.get('name') or index}"
        for field, service, indexes in (
            ("stable_service", self.target.stable_service, stable),
            ("canary_service", self.target.canary_service, canary),
        ):
            if not indexes:
                found.append(
                    f"{where}'s backendRefs do not reference Service {service} ({field}); add "
                    f"{{name: {service}, port: <port>, weight: "
                    f"{0 if field == 'canary_service' else 100}}} to them"
                )
            elif len(indexes) > 1:
                found.append(
                    f"{where}'s backendRefs reference Service {service} ({field}) "
                    f"{len(indexes)} times; keep one entry"
                )
        for i in other:
            if int(refs[i].get("weight", 1)) > 0:
                found.append(
                    f"{where} also sends traffic to {refs[i].get('kind', 'Service')} "
                    f"{refs[i].get('name')} (weight {refs[i].get('weight', 1)}), a third "
                    "backend; set its weight to 0 or remove it first"
                )
        if not found and stable and canary:
            weights = [int(refs[i].get("weight", 1)) for i in (*stable, *canary)]
            if sum(weights) <= 0:
                found.append(
                    f"{where} gives both Services weight 0 (no traffic at all); give "
                    f"{self.target.stable_service} a weight above 0"
                )
        return found

    def split(self, obj: dict[str, Any]) -> TrafficSplit:
        stable_name = self.stable or self.target.stable_service
        index, _ = self._rule(obj)
        if index is None:
            return TrafficSplit(None, stable=stable_name, detail="the rule is gone")
        rule = obj["spec"]["rules"][index]
        refs = rule.get("backendRefs") or []
        stable, canary, other = self._refs(rule)
        detail = ", ".join(f"{r.get('name')} {r.get('weight', 1)}" for r in refs)
        live_others = [i for i in other if int(refs[i].get("weight", 1)) > 0]
        if len(stable) != 1 or len(canary) > 1 or live_others:
            return TrafficSplit(None, stable=stable_name, detail=detail)
        stable_weight = int(refs[stable[0]].get("weight", 1))
        canary_weight = int(refs[canary[0]].get("weight", 1)) if canary else 0
        return TrafficSplit(share(canary_weight, stable_weight), stable=stable_name, detail=detail)

    def weighted(self, obj: dict[str, Any], canary_percent: float) -> dict[str, Any]:
        rules = copy.deepcopy(obj["spec"]["rules"])
        index, _ = self._rule(obj)
        assert index is not None  # problems() was empty
        rule = rules[index]
        stable, canary, _ = self._refs(rule)
        canary_weight, stable_weight = integer_weights(canary_percent)
        rule["backendRefs"][stable[0]]["weight"] = stable_weight
        rule["backendRefs"][canary[0]]["weight"] = canary_weight
        return {"spec": {"rules": rules}}


def build(target: Target, stable: str | None, kube: KubeClients) -> GatewayApiStrategy:
    if not isinstance(target, GatewayApiTarget):
        raise TypeError(f"not a k8s-gateway-api target: {target.kind}")
    return GatewayApiStrategy(target, stable, kube)


KIND = TargetKind(
    name="k8s-gateway-api",
    spec=GatewayApiTarget,
    summary="Gateway API HTTPRoute backendRefs weights between a stable and a canary Service",
    clients=from_settings,
    build=build,
    canonical=with_context,
)
