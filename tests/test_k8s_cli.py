"""`canary validate --preflight` on each shipped Kubernetes example, against the test server.

The objects each example names are created as its README section says (the user's part);
the CLI then runs as a subprocess with a kubeconfig for the user ``canary`` and a real
Prometheus for the gates' provider. Each example passes; a broken variant of each (its
canary pointing at something the router does not reference) is refused, naming the field.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from promserver import PrometheusServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "config" / "examples"


def _custom(group: str, version: str, plural: str, kind: str, ns: str, name: str, spec: Any) -> Any:
    return (
        group,
        version,
        ns,
        plural,
        {
            "apiVersion": f"{group}/{version}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def _ingress(name: str, service: str, annotations: dict[str, str]) -> dict[str, Any]:
    backend = {"service": {"name": service, "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "rules": [
                {
                    "host": "shop.example.com",
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ]
        },
    }


CUSTOM = [
    _custom(
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
        "HTTPRoute",
        "shop",
        "catalog",
        {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "catalog-stable", "port": 80, "weight": 100},
                        {"name": "catalog-canary", "port": 80, "weight": 0},
                    ]
                }
            ]
        },
    ),
    _custom(
        "networking.istio.io",
        "v1",
        "virtualservices",
        "VirtualService",
        "bookinfo",
        "reviews",
        {
            "hosts": ["reviews"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 100},
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 0},
                    ]
                }
            ],
        },
    ),
    _custom(
        "split.smi-spec.io",
        "v1alpha2",
        "trafficsplits",
        "TrafficSplit",
        "orders",
        "orders",
        {
            "service": "orders",
            "backends": [
                {"service": "orders-v1", "weight": 100},
                {"service": "orders-v2", "weight": 0},
            ],
        },
    ),
]
BROKEN = {  # example -> (field, a value the router does not reference)
    "k8s-gateway-api.yaml": ("canary_service", "catalog-next"),
    "k8s-istio.yaml": ("canary_subset", "v3"),
    "k8s-smi.yaml": ("canary_service", "orders-v3"),
    "k8s-nginx.yaml": ("canary_service", "frontend-next"),
}


@pytest.fixture(scope="module")
def examples_ready(k8s: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = k8s.api()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    for ns in ("shop", "bookinfo", "orders", "web"):
        try:
            core.create_namespace({"metadata": {"name": ns}})
        except ApiException as exc:
            if exc.status != 409:
                raise
    for group, version, ns, plural, body in CUSTOM:
        custom.create_namespaced_custom_object(group, version, ns, plural, body)
    net = client.NetworkingV1Api(api)
    net.create_namespaced_ingress("web", _ingress("frontend", "frontend", {}))
    canary = {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "0",
    }
    net.create_namespaced_ingress("web", _ingress("frontend-canary", "frontend-canary", canary))
    prometheus = PrometheusServer(tmp_path_factory.mktemp("prometheus"), []).start()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CANARY_")}
    env |= {"KUBECONFIG": str(k8s.kubeconfig("canary")), "CANARY_PROMETHEUS_URL": prometheus.url}
    yield env
    prometheus.stop()


def validate(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canary", "validate", "--preflight", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("example", sorted(BROKEN))
def test_each_kubernetes_example_passes_preflight(
    example: str, examples_ready: dict[str, str]
) -> None:
    run = validate(EXAMPLES / example, examples_ready)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok: ")


@pytest.mark.parametrize("example", sorted(BROKEN))
def test_a_broken_variant_is_refused_naming_the_field(
    example: str, examples_ready: dict[str, str], tmp_path: Path
) -> None:
    field, value = BROKEN[example]
    doc = yaml.safe_load((EXAMPLES / example).read_text())
    doc["spec"]["targets"][0][field] = value
    path = tmp_path / example
    path.write_text(yaml.safe_dump(doc))
    run = validate(path, examples_ready)
    assert run.returncode != 0
    assert f"({field})" in run.stderr
    assert "preflight: spec.targets[0]" in run.stderr
