"""SMI TrafficSplit weights: two backend Services behind one root Service.

This module is the whole ``k8s-smi`` kind. The user creates the TrafficSplit
(``split.smi-spec.io/v1alpha2``, the version Linkerd's SMI extension and Open Service Mesh
serve) whose ``service`` is the root Service clients call and whose ``backends`` are the
stable and the canary Service (the canary at weight 0). canary rewrites the two integer
weights (relative, out of 100, or finer when a share needs it). Any other backend with a
weight above 0 is a third version: refused at preflight, drift afterwards.

The key names the TrafficSplit: ``k8s-smi/<context>/<namespace>/<traffic_split>``.
"""

from __future__ import annotations

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


class SmiTarget(K8sTarget):
    """A TrafficSplit whose backends split a root Service between two Services."""

    kind: Literal["k8s-smi"]
    traffic_split: ObjectName = Field(description="the TrafficSplit")
    root_service: ObjectName = Field(description="the Service clients address (spec.service)")
    stable_service: ObjectName = Field(description="the backend Service of the stable version")
    canary_service: ObjectName = Field(
        description="the backend Service of the canary (also {{ canary_version }})"
    )

    @model_validator(mode="after")
    def _two_services(self) -> SmiTarget:
        two_services(self.stable_service, self.canary_service)
        return self

    def key(self) -> str:
        return f"k8s-smi/{self._context_key()}/{self.namespace}/{self.traffic_split}"

    @property
    def canary_version(self) -> str:
        return self.canary_service


class SmiStrategy(RouterStrategy):
    kind: ClassVar[str] = "k8s-smi"
    group: ClassVar[str] = "split.smi-spec.io"
    version: ClassVar[str] = "v1alpha2"
    plural: ClassVar[str] = "trafficsplits"
    object_kind: ClassVar[str] = "TrafficSplit"

    target: SmiTarget

    @property
    def name(self) -> str:
        return self.target.traffic_split

    @property
    def stable_name(self) -> str:
        return self.target.stable_service

    def _backends(self, obj: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
        stable, canary, other = [], [], []
        for index, backend in enumerate((obj.get("spec") or {}).get("backends") or []):
            if backend.get("service") == self.target.stable_service:
                stable.append(index)
            elif backend.get("service") == self.target.canary_service:
                canary.append(index)
            else:
                other.append(index)
        return stable, canary, other

    def problems(self, obj: dict[str, Any]) -> list[str]:
        spec = obj.get("spec") or {}
        backends = spec.get("backends") or []
        found: list[str] = []
        if spec.get("service") != self.target.root_service:
            found.append(
                f"splits Service {spec.get('service')}, not {self.target.root_service} "
                "(root_service); name the TrafficSplit of that Service, or fix root_service"
            )
        stable, canary, other = self._backends(obj)
        for field, service, indexes in (
            ("stable_service", self.target.stable_service, stable),
            ("canary_service", self.target.canary_service, canary),
        ):
            if not indexes:
                found.append(
                    f"its backends do not include Service {service} ({field}); add "
                    f"{{service: {service}, weight: {0 if field == 'canary_service' else 100}}}"
                )
            elif len(indexes) > 1:
                found.append(f"its backends name Service {service} ({field}) {len(indexes)} times")
        for i in other:
            if int(backends[i].get("weight", 0)) > 0:
                found.append(
                    f"it also sends traffic to Service {backends[i].get('service')} (weight "
                    f"{backends[i].get('weight')}), a third backend; set its weight to 0 or "
                    "remove it first"
                )
        if not found and sum(int(backends[i].get("weight", 0)) for i in (*stable, *canary)) <= 0:
            found.append(
                f"it gives both Services weight 0 (no traffic at all); give "
                f"{self.target.stable_service} a weight above 0"
            )
        return found

    def split(self, obj: dict[str, Any]) -> TrafficSplit:
        stable_name = self.stable or self.target.stable_service
        backends = (obj.get("spec") or {}).get("backends") or []
        stable, canary, other = self._backends(obj)
        detail = ", ".join(f"{b.get('service')} {b.get('weight')}" for b in backends)
        live_others = [i for i in other if int(backends[i].get("weight", 0)) > 0]
        if len(stable) != 1 or len(canary) > 1 or live_others:
            return TrafficSplit(None, stable=stable_name, detail=detail)
        stable_w = int(backends[stable[0]].get("weight", 0))
        canary_w = int(backends[canary[0]].get("weight", 0)) if canary else 0
        return TrafficSplit(share(canary_w, stable_w), stable=stable_name, detail=detail)

    def weighted(self, obj: dict[str, Any], canary_percent: float) -> dict[str, Any]:
        backends = [dict(b) for b in obj["spec"]["backends"]]
        stable, canary, _ = self._backends(obj)
        canary_w, stable_w = integer_weights(canary_percent)
        backends[stable[0]]["weight"] = stable_w
        backends[canary[0]]["weight"] = canary_w
        return {"spec": {"backends": backends}}


def build(target: Target, stable: str | None, kube: KubeClients) -> SmiStrategy:
    if not isinstance(target, SmiTarget):
        raise TypeError(f"not a k8s-smi target: {target.kind}")
    return SmiStrategy(target, stable, kube)


KIND = TargetKind(
    name="k8s-smi",
    spec=SmiTarget,
    summary="SMI TrafficSplit backend weights between a stable and a canary Service",
    clients=from_settings,
    build=build,
    canonical=with_context,
)
