"""Opt-in: the Kubernetes kinds against a real cluster (``KUBECONFIG`` and ``CANARY_IT_K8S=1``).

Each test creates a scratch namespace, the router object of one kind in it, runs a whole
plan through the real engine (virtual clock, scripted metrics) as the kubeconfig's current
user, checks the weights the cluster serves, and deletes the namespace. A kind whose
resource the cluster does not serve (no Gateway API CRDs) is skipped with the reason. CI sets
neither variable: these never run there, and never touch a cluster by accident.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import document
from k8srig import Rig

from canary.model import Phase
from strategies.k8s import KubeClients

pytestmark = pytest.mark.skipif(
    not (os.environ.get("KUBECONFIG") and os.environ.get("CANARY_IT_K8S") == "1"),
    reason="opt-in: set KUBECONFIG and CANARY_IT_K8S=1 to run against a real cluster",
)

HTTPROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")


@pytest.fixture
def scratch() -> Iterator[tuple[Any, str]]:
    """An ApiClient of the current context and a namespace deleted afterwards."""
    from kubernetes import client, config

    api = config.new_client_from_config()
    name = f"canary-it-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name, "labels": {"canary.dev/scratch": "true"}}})
    try:
        yield api, name
    finally:
        core.delete_namespace(name)
        api.close()


class Route:
    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client

        self.api, self.namespace = client.CustomObjectsApi(api), namespace

    def weights(self) -> dict[str, int]:
        found = self.api.get_namespaced_custom_object(
            *HTTPROUTES[:2], self.namespace, HTTPROUTES[2], "catalog"
        )
        return {r["name"]: r["weight"] for r in found["spec"]["rules"][0]["backendRefs"]}


class CanaryIngress:
    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client

        self.api, self.namespace = client.NetworkingV1Api(api), namespace

    def weights(self) -> dict[str, int]:
        found = self.api.read_namespaced_ingress("web-canary", self.namespace)
        notes = found.metadata.annotations or {}
        return {"canary-weight": int(notes["nginx.ingress.kubernetes.io/canary-weight"])}


async def test_a_whole_plan_on_an_httproute(scratch: tuple[Any, str]) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api, namespace = scratch
    refs = [
        {"name": "catalog-stable", "port": 80, "weight": 100},
        {"name": "catalog-canary", "port": 80, "weight": 0},
    ]
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            *HTTPROUTES[:2],
            namespace,
            HTTPROUTES[2],
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "catalog"},
                "spec": {"rules": [{"backendRefs": refs}]},
            },
        )
    except ApiException as exc:
        if exc.status == 404:
            pytest.skip("the cluster serves no gateway.networking.k8s.io/v1 HTTPRoute")
        raise
    target = {
        "kind": "k8s-gateway-api",
        "namespace": namespace,
        "route": "catalog",
        "stable_service": "catalog-stable",
        "canary_service": "catalog-canary",
    }
    kube = KubeClients()
    try:
        rig = Rig(kube, Route(api, namespace))
        r = await rig.run(document(targets=[target], name="it-gateway"))
    finally:
        kube.close()
    assert r.phase == Phase.SUCCEEDED, r.reason
    assert Route(api, namespace).weights() == {"catalog-stable": 0, "catalog-canary": 100}


async def test_a_whole_plan_on_an_ingress_nginx_canary(scratch: tuple[Any, str]) -> None:
    from kubernetes import client

    api, namespace = scratch
    net = client.NetworkingV1Api(api)
    for name, notes in (
        ("web", {}),
        (
            "web-canary",
            {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "0",
            },
        ),
    ):
        backend = {"service": {"name": name, "port": {"number": 80}}}
        net.create_namespaced_ingress(
            namespace,
            {
                "metadata": {"name": name, "annotations": notes},
                "spec": {
                    "rules": [
                        {
                            "host": f"{namespace}.example.invalid",
                            "http": {
                                "paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]
                            },
                        }
                    ]
                },
            },
        )
    target = {
        "kind": "k8s-nginx",
        "namespace": namespace,
        "ingress": "web",
        "canary_ingress": "web-canary",
        "canary_service": "web-canary",
    }
    kube = KubeClients()
    try:
        rig = Rig(kube, CanaryIngress(api, namespace))
        r = await rig.run(document(targets=[target], name="it-nginx"))
    finally:
        kube.close()
    assert r.phase == Phase.SUCCEEDED, r.reason
    assert [w for what, _, w in rig.seen if what == "shift"][-1] == {"canary-weight": 100}
