"""A real Kubernetes API server for the tests: etcd + kube-apiserver, no kubelet (envtest's way).

The binaries are built from Go modules by ``scripts/build-k8s-test-servers.sh`` into a cache
directory keyed by version, once per machine (``.ci/run`` builds them before the tests). The
fixture asks the script for that directory: a cached build answers at once. Without Go the
tests are skipped with the reason, and under ``CANARY_REQUIRE_SERVICES=1`` they fail.

``K8sServer`` starts etcd and kube-apiserver on free ports in a temporary directory, with a
static token file (an admin in ``system:masters``, and any user a test adds), RBAC as the
only authorizer, and a service-account signing key (so ServiceAccount tokens and
TokenRequest work). It installs the CRDs under ``tests/k8s/crds/`` (written from the
published API references) and writes a kubeconfig for each user, which the real
``kubernetes`` client loads like any other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from services import REQUIRE_SERVICES, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build-k8s-test-servers.sh"
CRDS = Path(__file__).resolve().parent / "k8s" / "crds"
ADMIN_TOKEN = "admin-token-for-tests"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_SERVICES) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_SERVICES}=1 requires it", pytrace=False)
    pytest.skip(reason)


def server_binaries() -> Path:
    """The directory holding ``etcd`` and ``kube-apiserver``, built beforehand by the script
    (``.ci/run`` runs it; a first build takes minutes, too long for a test's timeout)."""
    given = os.environ.get("CANARY_K8S_BIN")
    where = Path(given) if given else _script_dir()
    if all(os.access(where / b, os.X_OK) for b in ("etcd", "kube-apiserver")):
        return where
    if shutil.which("go") is None:
        _unavailable(
            "Go is not installed, so the Kubernetes test servers (etcd, kube-apiserver) "
            "cannot be built (scripts/build-k8s-test-servers.sh)"
        )
    _unavailable(
        f"no etcd and kube-apiserver in {where}; build them once with "
        "scripts/build-k8s-test-servers.sh (a few minutes; later runs reuse them)"
    )
    raise AssertionError("unreachable")


def _script_dir() -> Path:
    done = subprocess.run(
        [str(BUILD_SCRIPT), "--dir"], capture_output=True, text=True, timeout=30, check=True
    )
    return Path(done.stdout.strip())


@dataclass(frozen=True)
class User:
    name: str
    token: str
    groups: tuple[str, ...] = ()


class K8sServer:
    """etcd and kube-apiserver for one test session, plus a kubeconfig per user."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="canary-k8s-"))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.users: dict[str, User] = {}
        self._procs: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------ start / stop

    def start(self, users: Sequence[User] = ()) -> None:
        self.users = {u.name: u for u in (User("admin", ADMIN_TOKEN, ("system:masters",)), *users)}
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=error",
            ],
        )
        key = self.dir / "sa.key"
        _write_rsa_key(key)
        (self.dir / "tokens.csv").write_text(
            "".join(
                f'{u.token},{u.name},{u.name},"{",".join(u.groups)}"\n' for u in self.users.values()
            )
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.dir / 'certs'}",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--v=0",
            ],
        )
        self._wait_ready()
        self.install_crds()
        self.apply(TEST_RBAC)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        self._procs.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        )

    def _wait_ready(self) -> None:
        import requests

        def ready() -> bool | None:
            for proc in self._procs:
                if proc.poll() is not None:
                    pytest.fail(f"{proc.args[0]} exited: {self.log_tail()}", pytrace=False)
            answer = requests.get(
                f"{self.url}/readyz",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                verify=str(self.ca_file),
                timeout=5,
            )
            return answer.status_code == 200 or None

        wait_for(ready, "kube-apiserver /readyz", timeout=90)

    def log_tail(self, lines: int = 8) -> str:
        out = []
        for name in ("etcd", "kube-apiserver"):
            path = self.dir / f"{name}.log"
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ clients

    @property
    def ca_file(self) -> Path:
        return self.dir / "certs" / "apiserver.crt"

    def kubeconfig(self, user: str = "admin", namespace: str = "default") -> Path:
        """A kubeconfig file whose current context is ``user`` on this server."""
        return self.kubeconfig_with_token(user, self.users[user].token, namespace)

    def kubeconfig_with_token(self, name: str, token: str, namespace: str = "default") -> Path:
        """A kubeconfig whose current context, ``name``, authenticates with ``token`` (a test
        user's, or a ServiceAccount's from the TokenRequest API)."""
        path = self.dir / f"kubeconfig-{name.replace(':', '-')}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [
                {
                    "name": name,
                    "context": {"cluster": "test", "user": name, "namespace": namespace},
                }
            ],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def api(self, user: str = "admin") -> Any:
        """A ``kubernetes.client.ApiClient`` for ``user``, from that user's kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig(user)))

    # ------------------------------------------------------------ objects

    def apply(self, documents: Any, dry_run: bool = False) -> None:
        """Server-side apply of each object in a list of manifests, as the admin; with
        ``dry_run`` the server validates and admits them but stores nothing."""
        from kubernetes import dynamic

        client = dynamic.DynamicClient(self.api())
        extra = {"dry_run": "All"} if dry_run else {}
        for doc in documents:
            resource = client.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            namespace = doc["metadata"].get("namespace") if resource.namespaced else None
            client.server_side_apply(
                resource,
                body=doc,
                namespace=namespace,
                field_manager="tests",
                force_conflicts=True,
                **extra,
            )

    def install_crds(self) -> None:
        from kubernetes import client

        documents = [
            doc
            for path in sorted(CRDS.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
        ]
        self.apply(documents)
        ext = client.ApiextensionsV1Api(self.api())

        def established() -> bool:
            for doc in documents:
                crd = ext.read_custom_resource_definition(doc["metadata"]["name"])
                conditions = {c.type: c.status for c in (crd.status.conditions or [])}
                if conditions.get("Established") != "True":
                    return False
            return True

        wait_for(established, "the CRDs to be established", timeout=60)


def _write_rsa_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


TEST_USERS = (
    User("canary", "canary-token-for-tests", ("canary-operators",)),
    User("readonly", "readonly-token-for-tests", ("canary-readers",)),
)


def _grant(group: str, verbs: list[str]) -> list[dict[str, Any]]:
    name = f"tests-{group}"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": [
                        "gateway.networking.k8s.io",
                        "networking.istio.io",
                        "split.smi-spec.io",
                        "networking.k8s.io",
                    ],
                    "resources": ["httproutes", "virtualservices", "trafficsplits", "ingresses"],
                    "verbs": verbs,
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        },
    ]


# The test users' rights: "canary" may get and patch the router objects, "readonly" only get.
TEST_RBAC = [*_grant("canary-operators", ["get", "patch"]), *_grant("canary-readers", ["get"])]


def session_server() -> Iterator[K8sServer]:
    """The body of a session fixture: one API server for every Kubernetes test."""
    server = K8sServer(server_binaries())
    try:
        server.start(TEST_USERS)
        yield server
    finally:
        server.stop()
