"""ingress-nginx canary weights: the ``canary-weight`` annotation of a second Ingress.

This module is the whole ``k8s-nginx`` kind. ingress-nginx splits a host's traffic between
an Ingress and a second Ingress of the same host annotated
``nginx.ingress.kubernetes.io/canary: "true"``, which receives ``canary-weight`` out of
``canary-weight-total`` (100 unless set) of the requests. The user creates both Ingresses
(the canary one at ``canary-weight: "0"``, pointing at the canary Service); canary rewrites
that one annotation and nothing else. A share the total cannot express (2.5% of 100) is
refused with the fix (set ``canary-weight-total: "1000"``).

Writing only an annotation of an existing object keeps the rights to ``get`` and ``patch``
on ``ingresses``: canary never creates or deletes an Ingress.

The key names the stable Ingress: ``k8s-nginx/<context>/<namespace>/<ingress>``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

from pydantic import Field, model_validator

from config.targets import Target
from strategies.base import PermanentError, TrafficSplit
from strategies.k8s import (
    MERGE_PATCH,
    K8sTarget,
    KubeClients,
    NotFound,
    ObjectName,
    RouterStrategy,
    from_settings,
    with_context,
)
from strategies.kind import TargetKind

PREFIX = "nginx.ingress.kubernetes.io/"
CANARY, WEIGHT, TOTAL = PREFIX + "canary", PREFIX + "canary-weight", PREFIX + "canary-weight-total"


class NginxTarget(K8sTarget):
    """A stable Ingress and its ingress-nginx canary twin, whose weight canary sets."""

    kind: Literal["k8s-nginx"]
    ingress: ObjectName = Field(description="the stable Ingress (left as it is)")
    canary_ingress: ObjectName = Field(
        description="the canary Ingress: same host, annotated "
        'nginx.ingress.kubernetes.io/canary: "true"'
    )
    canary_service: ObjectName = Field(
        description="the Service the canary Ingress points at (also {{ canary_version }})"
    )

    @model_validator(mode="after")
    def _two_ingresses(self) -> NginxTarget:
        if self.ingress == self.canary_ingress:
            raise ValueError(
                "canary_ingress is the same Ingress as ingress; create a second Ingress for "
                'the same host annotated nginx.ingress.kubernetes.io/canary: "true"'
            )
        return self

    def key(self) -> str:
        return f"k8s-nginx/{self._context_key()}/{self.namespace}/{self.ingress}"

    @property
    def canary_version(self) -> str:
        return self.canary_service


def _services(ingress: dict[str, Any]) -> set[str]:
    spec = ingress.get("spec") or {}
    found = set()
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if default:
        found.add(default)
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            name = ((path.get("backend") or {}).get("service") or {}).get("name")
            if name:
                found.add(name)
    return found


def _hosts(ingress: dict[str, Any]) -> set[str]:
    return {r.get("host", "") for r in (ingress.get("spec") or {}).get("rules") or []}


def _int(text: Any) -> int | None:
    try:
        return int(str(text))
    except ValueError:
        return None


class NginxStrategy(RouterStrategy):
    kind: ClassVar[str] = "k8s-nginx"
    group: ClassVar[str] = "networking.k8s.io"
    version: ClassVar[str] = "v1"
    plural: ClassVar[str] = "ingresses"
    object_kind: ClassVar[str] = "Ingress"

    target: NginxTarget

    def __init__(self, target: NginxTarget, stable: str | None, kube: KubeClients) -> None:
        super().__init__(target, stable, kube)
        self._stable_ingress: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.target.canary_ingress

    @property
    def stable_name(self) -> str:
        return self.target.ingress

    # Ingress is a built-in resource: the typed API, as plain dicts.

    def _get(self, api: Any) -> dict[str, Any]:
        return self._read_ingress(api, self.name)

    def _read_ingress(self, api: Any, name: str) -> dict[str, Any]:
        from kubernetes import client

        found = client.NetworkingV1Api(api).read_namespaced_ingress(name, self.target.namespace)
        return cast(dict[str, Any], api.sanitize_for_serialization(found))

    def _patch(self, api: Any, body: dict[str, Any]) -> None:
        from kubernetes import client

        client.NetworkingV1Api(api).patch_namespaced_ingress(
            self.name, self.target.namespace, body, _content_type=MERGE_PATCH
        )

    async def validate(self) -> None:
        await super().validate()
        t = self.target

        def read(api: Any) -> dict[str, Any]:
            return self._read_ingress(api, t.ingress)

        try:
            stable = await self.kube.call(t.context, "get ingresses.networking.k8s.io", read)
        except NotFound:
            raise PermanentError(
                f"Ingress {t.namespace}/{t.ingress} (ingress) does not exist; create the stable "
                "Ingress first, or check the target's namespace and context"
            ) from None
        problems = []
        if (stable["metadata"].get("annotations") or {}).get(CANARY) == "true":
            problems.append(
                f"Ingress {t.ingress} (ingress) is itself a canary Ingress; name the stable one"
            )
        canary = self._last or {}
        if _hosts(stable) != _hosts(canary):
            problems.append(
                f"Ingress {t.canary_ingress} serves hosts {sorted(_hosts(canary))} but "
                f"{t.ingress} serves {sorted(_hosts(stable))}; ingress-nginx splits a host "
                "only between Ingresses of the same host"
            )
        if problems:
            raise PermanentError("; ".join(problems))

    def _annotations(self, obj: dict[str, Any]) -> dict[str, str]:
        return dict((obj.get("metadata") or {}).get("annotations") or {})

    def _total(self, obj: dict[str, Any]) -> int | None:
        text = self._annotations(obj).get(TOTAL)
        return 100 if text is None else _int(text)

    def problems(self, obj: dict[str, Any]) -> list[str]:
        notes = self._annotations(obj)
        where = f"Ingress {self.target.canary_ingress} (canary_ingress)"
        found = []
        if notes.get(CANARY) != "true":
            found.append(f'{where} is not annotated {CANARY}: "true"; annotate it')
        total = self._total(obj)
        if total is None or total <= 0:
            found.append(f"{where}'s {TOTAL} {notes.get(TOTAL)!r} is not a positive integer")
        weight = _int(notes.get(WEIGHT, "0"))
        if weight is None or weight < 0 or (total is not None and weight > total):
            found.append(
                f"{where}'s {WEIGHT} {notes.get(WEIGHT)!r} is not an integer from 0 to "
                f'{total}; set it to "0"'
            )
        services = _services(obj)
        if services != {self.target.canary_service}:
            found.append(
                f"{where} sends traffic to Services {sorted(services)}, not only "
                f"{self.target.canary_service} (canary_service); point its backends at it"
            )
        return found

    def split(self, obj: dict[str, Any]) -> TrafficSplit:
        stable_name = self.stable or self.target.ingress
        notes = self._annotations(obj)
        total = self._total(obj)
        detail = f"{WEIGHT} {notes.get(WEIGHT, '0')}" + (
            f" of {notes[TOTAL]}" if TOTAL in notes else ""
        )
        weight = _int(notes.get(WEIGHT, "0"))
        if notes.get(CANARY) != "true" or weight is None or not total or total <= 0:
            return TrafficSplit(None, stable=stable_name, detail=detail)
        return TrafficSplit(weight / total * 100, stable=stable_name, detail=detail)

    def weighted(self, obj: dict[str, Any], canary_percent: float) -> dict[str, Any]:
        total = self._total(obj) or 100
        weight = round(canary_percent * total / 100)
        if abs(weight - canary_percent * total / 100) > 1e-9:
            raise PermanentError(
                f"{canary_percent:g}% is not a whole number out of {WEIGHT}-total {total}; "
                f'annotate Ingress {self.name} with {TOTAL}: "1000" (or more) for finer steps'
            )
        return {"metadata": {"annotations": {WEIGHT: str(weight)}}}


def build(target: Target, stable: str | None, kube: KubeClients) -> NginxStrategy:
    if not isinstance(target, NginxTarget):
        raise TypeError(f"not a k8s-nginx target: {target.kind}")
    return NginxStrategy(target, stable, kube)


KIND = TargetKind(
    name="k8s-nginx",
    spec=NginxTarget,
    summary="ingress-nginx canary-weight of a canary Ingress beside the stable one",
    clients=from_settings,
    build=build,
    canonical=with_context,
)
