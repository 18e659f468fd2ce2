"""Istio VirtualService weights: two subsets of one host in one http route.

This module is the whole ``k8s-istio`` kind. The user creates the VirtualService
(``networking.istio.io/v1``) with an http route whose ``route`` holds two destinations of
``host``, the stable and the canary subset of a DestinationRule (the canary at weight 0);
canary rewrites their two weights, which Istio requires to be integers summing to 100. A
share that is not a whole percentage (2.5%) cannot be written and is refused with the fix.
The route is the one named ``route`` or, without it, the first http route.

The key names the VirtualService, not the route inside it (every write is conditional on
the whole object's ``resourceVersion``): a target without ``route`` and one naming the
first route have one key, ``k8s-istio/<context>/<namespace>/<virtual_service>``.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from config.targets import Target
from strategies.base import PermanentError, TrafficSplit
from strategies.k8s import (
    K8sTarget,
    KubeClients,
    ObjectName,
    RouterStrategy,
    from_settings,
    with_context,
)
from strategies.kind import TargetKind


class IstioTarget(K8sTarget):
    """A VirtualService http route whose two destinations split traffic between subsets."""

    kind: Literal["k8s-istio"]
    virtual_service: ObjectName = Field(description="the VirtualService")
    host: str = Field(
        min_length=1, description="the destination host of the route's two destinations"
    )
    stable_subset: str = Field(
        min_length=1, description="the DestinationRule subset of the stable version"
    )
    canary_subset: str = Field(
        min_length=1, description="the subset of the canary (also {{ canary_version }})"
    )
    route: str | None = Field(
        default=None,
        min_length=1,
        description="the name of the http route (spec.http[].name); default: the first one",
    )

    @model_validator(mode="after")
    def _two_subsets(self) -> IstioTarget:
        if self.stable_subset == self.canary_subset:
            raise ValueError(
                "canary_subset is the same subset as stable_subset; give the canary a subset "
                "of its own in the DestinationRule and name it here"
            )
        return self

    def key(self) -> str:
        return f"k8s-istio/{self._context_key()}/{self.namespace}/{self.virtual_service}"

    @property
    def canary_version(self) -> str:
        return self.canary_subset


class IstioStrategy(RouterStrategy):
    kind: ClassVar[str] = "k8s-istio"
    group: ClassVar[str] = "networking.istio.io"
    version: ClassVar[str] = "v1"
    plural: ClassVar[str] = "virtualservices"
    object_kind: ClassVar[str] = "VirtualService"

    target: IstioTarget

    @property
    def name(self) -> str:
        return self.target.virtual_service

    @property
    def stable_name(self) -> str:
        return self.target.stable_subset

    def _route(self, obj: dict[str, Any]) -> tuple[int | None, str | None]:
        routes = (obj.get("spec") or {}).get("http") or []
        wanted = self.target.route
        if not routes:
            return None, "has no http routes (spec.http); add one with the two destinations"
        if wanted is None:
            return 0, None
        for index, route in enumerate(routes):
            if route.get("name") == wanted:
                return index, None
        names = [r["name"] for r in routes if r.get("name")]
        return None, (
            f"has no http route named {wanted!r} (route; its named routes: "
            f"{', '.join(names) or 'none'}); fix route or name the route in spec.http[].name"
        )

    def _destinations(self, route: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
        stable, canary, other = [], [], []
        for index, dest in enumerate(route.get("route") or []):
            d = dest.get("destination") or {}
            if d.get("host") == self.target.host and d.get("subset") == self.target.stable_subset:
                stable.append(index)
            elif d.get("host") == self.target.host and d.get("subset") == self.target.canary_subset:
                canary.append(index)
            else:
                other.append(index)
        return stable, canary, other

    def problems(self, obj: dict[str, Any]) -> list[str]:
        index, why = self._route(obj)
        if index is None:
            return [why or "no route"]
        route = obj["spec"]["http"][index]
        dests = route.get("route") or []
        stable, canary, other = self._destinations(route)
        where = f"http route {route.get('name') or index}"
        found: list[str] = []
        for field, subset, indexes in (
            ("stable_subset", self.target.stable_subset, stable),
            ("canary_subset", self.target.canary_subset, canary),
        ):
            if not indexes:
                found.append(
                    f"{where} has no destination host {self.target.host} subset {subset} "
                    f"({field}); add {{destination: {{host: {self.target.host}, subset: "
                    f"{subset}}}, weight: {0 if field == 'canary_subset' else 100}}} to its route"
                )
            elif len(indexes) > 1:
                found.append(f"{where} names subset {subset} ({field}) {len(indexes)} times")
        for i in other:
            d = dests[i].get("destination") or {}
            found.append(
                f"{where} also routes to host {d.get('host')} subset {d.get('subset')}, a third "
                "destination; remove it first"
            )
        if len(dests) > 1:
            weights = [dest.get("weight", 0) for dest in dests]
            if sum(weights) != 100:
                found.append(
                    f"{where}'s weights {'+'.join(str(w) for w in weights)} sum to "
                    f"{sum(weights)}, not 100 as Istio requires; fix them (stable 100, canary 0)"
                )
        return found

    def split(self, obj: dict[str, Any]) -> TrafficSplit:
        stable_name = self.stable or self.target.stable_subset
        index, _ = self._route(obj)
        if index is None:
            return TrafficSplit(None, stable=stable_name, detail="the route is gone")
        route = obj["spec"]["http"][index]
        dests = route.get("route") or []
        stable, canary, other = self._destinations(route)
        alone = 100 if len(dests) == 1 else 0  # a lone destination needs no weight
        detail = ", ".join(
            f"{(d.get('destination') or {}).get('subset')} {d.get('weight', alone)}" for d in dests
        )
        if len(stable) != 1 or len(canary) > 1 or other:
            return TrafficSplit(None, stable=stable_name, detail=detail)
        if not canary:
            return TrafficSplit(0.0, stable=stable_name, detail=detail)
        stable_w = int(dests[stable[0]].get("weight", 0))
        canary_w = int(dests[canary[0]].get("weight", 0))
        if stable_w + canary_w != 100:
            return TrafficSplit(None, stable=stable_name, detail=detail)
        return TrafficSplit(float(canary_w), stable=stable_name, detail=detail)

    def weighted(self, obj: dict[str, Any], canary_percent: float) -> dict[str, Any]:
        canary_w = round(canary_percent)
        if abs(canary_w - canary_percent) > 1e-9:
            raise PermanentError(
                f"Istio weights are whole percentages summing to 100; {canary_percent:g}% "
                "cannot be written: use whole-number step weights for a k8s-istio target"
            )
        http = copy.deepcopy(obj["spec"]["http"])
        index, _ = self._route(obj)
        assert index is not None
        route = http[index]
        stable, canary, _ = self._destinations(route)
        route["route"][stable[0]]["weight"] = 100 - canary_w
        route["route"][canary[0]]["weight"] = canary_w
        return {"spec": {"http": http}}


def build(target: Target, stable: str | None, kube: KubeClients) -> IstioStrategy:
    if not isinstance(target, IstioTarget):
        raise TypeError(f"not a k8s-istio target: {target.kind}")
    return IstioStrategy(target, stable, kube)


KIND = TargetKind(
    name="k8s-istio",
    spec=IstioTarget,
    summary="Istio VirtualService route weights between two subsets of a host",
    clients=from_settings,
    build=build,
    canonical=with_context,
)
