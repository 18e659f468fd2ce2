"""deploy/: the manifests apply to a real API server, and canary's RBAC is exactly enough.

The manifests are applied server-side as a dry run (validated and admitted, nothing stored),
then for real. Then, with a token for the ``canary`` ServiceAccount from the TokenRequest
API, SelfSubjectAccessReviews ask the API server what that service account may do: get and
patch on each router kind's objects in the Role's namespace, and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROUTERS = {
    "k8s-gateway-api": ("gateway.networking.k8s.io", "httproutes", "shop"),
    "k8s-istio": ("networking.istio.io", "virtualservices", "bookinfo"),
    "k8s-smi": ("split.smi-spec.io", "trafficsplits", "orders"),
    "k8s-nginx": ("networking.k8s.io", "ingresses", "web"),
}
VERBS = ("get", "patch", "list", "watch", "create", "update", "delete", "deletecollection")


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in [DEPLOY / "canary.yaml", *sorted(DEPLOY.glob("rbac-*.yaml"))]:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def deployed(k8s: Any) -> Path:
    """deploy/ applied (dry run first); a kubeconfig for the canary service account."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(k8s.api())
    for namespace in {ns for _, _, ns in ROUTERS.values()}:
        try:
            core.create_namespace({"metadata": {"name": namespace}})
        except ApiException as exc:
            if exc.status != 409:
                raise
    docs = manifests()
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    k8s.apply(namespaces)  # a dry run cannot admit objects into a namespace it did not create
    k8s.apply(docs, dry_run=True)
    with pytest.raises(ApiException) as absent:
        core.read_namespaced_service_account("canary", "canary-system")
    assert absent.value.status == 404, "the dry run stored nothing"
    k8s.apply(docs)
    token = core.create_namespaced_service_account_token(
        "canary", "canary-system", {"spec": {"expirationSeconds": 3600}}
    ).status.token
    path: Path = k8s.kubeconfig_with_token("system:serviceaccount:canary-system:canary", token)
    return path


def test_the_manifests_are_stored_as_written(k8s: Any, deployed: Path) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(k8s.api())
    deployment = apps.read_namespaced_deployment("canary", "canary-system")
    assert deployment.spec.template.spec.service_account_name == "canary"
    core = client.CoreV1Api(k8s.api())
    assert core.read_namespaced_service("canary", "canary-system").spec.ports[0].port == 8080
    rbac = client.RbacAuthorizationV1Api(k8s.api())
    for kind, (_, _, namespace) in ROUTERS.items():
        binding = rbac.read_namespaced_role_binding(f"canary-{kind}", namespace)
        assert binding.subjects[0].name == "canary"


def _allowed(kubeconfig: Path, verb: str, group: str, resource: str, namespace: str) -> bool:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(
            {
                "spec": {
                    "resourceAttributes": {
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        "namespace": namespace,
                    }
                }
            }
        )
        return bool(review.status.allowed)
    finally:
        api.close()


def test_the_service_account_may_get_and_patch_its_router_objects_and_nothing_else(
    deployed: Path,
) -> None:
    granted = set()
    namespaces = {ns for _, _, ns in ROUTERS.values()} | {"default", "canary-system"}
    resources = [(g, r) for g, r, _ in ROUTERS.values()] + [
        ("", "secrets"),
        ("", "pods"),
        ("apps", "deployments"),
    ]
    for namespace in sorted(namespaces):
        for group, resource in resources:
            for verb in VERBS:
                if _allowed(deployed, verb, group, resource, namespace):
                    granted.add((namespace, resource, verb))
    assert granted == {
        (namespace, resource, verb)
        for _, resource, namespace in ROUTERS.values()
        for verb in ("get", "patch")
    }


async def test_preflight_passes_as_the_service_account(k8s: Any, deployed: Path) -> None:
    """What canary itself checks at preflight, as the deployed service account."""
    from helpers import document
    from kubernetes import client

    from strategies.k8s import KubeClients, from_settings
    from strategies.registry import Clients, create_strategy

    client.CustomObjectsApi(k8s.api()).create_namespaced_custom_object(
        "gateway.networking.k8s.io",
        "v1",
        "shop",
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "rbac-check"},
            "spec": {
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "catalog-stable", "port": 80, "weight": 100},
                            {"name": "catalog-canary", "port": 80, "weight": 0},
                        ]
                    }
                ]
            },
        },
    )
    doc = document(
        targets=[
            {
                "kind": "k8s-gateway-api",
                "namespace": "shop",
                "route": "rbac-check",
                "stable_service": "catalog-stable",
                "canary_service": "catalog-canary",
            }
        ]
    )
    kube = KubeClients(str(deployed))
    try:
        strategy = create_strategy(doc.spec.targets[0], None, Clients(None, {from_settings: kube}))
        await strategy.validate()
        split = await strategy.shift(10)
    finally:
        kube.close()
    assert split.canary_weight == 10
