"""The Kubernetes test server itself: built from Go modules, started, serving our CRDs.

What the router kinds' tests stand on: the real ``kubernetes`` client, through a generated
kubeconfig, creates a custom resource that the CRD's schema defaults and validates, and RBAC
refuses a user who was granted nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


def _route(name: str, backends: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"rules": [{"name": "main", "backendRefs": backends}]},
    }


def test_a_custom_resource_is_created_defaulted_and_read_back(k8s: Any) -> None:
    from kubernetes import client

    api = client.CustomObjectsApi(k8s.api())
    created = api.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, _route("smoke", [{"name": "web", "port": 80}])
    )
    read = api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "smoke")
    assert read["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    (backend,) = read["spec"]["rules"][0]["backendRefs"]
    # The CRD's defaults are applied by the server: weight 1, kind Service.
    assert backend == {"name": "web", "port": 80, "weight": 1, "kind": "Service", "group": ""}


def test_the_crd_schema_refuses_what_the_published_api_refuses(k8s: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(k8s.api())
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, _route("bad", [{"name": "web", "weight": -1}])
        )
    assert refused.value.status == 422
    assert "weight" in str(refused.value.body)
    assert "Must have port for Service reference" in str(refused.value.body)


def test_rbac_refuses_a_user_granted_nothing(k8s: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(k8s.api("readonly"))
    with pytest.raises(ApiException) as refused:
        api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert refused.value.status == 403
