"""Kubernetes access for the router kinds: clients per context, one error vocabulary, one write.

Every Kubernetes kind shifts traffic by rewriting the weights inside one router object (an
HTTPRoute, a VirtualService, a TrafficSplit, an Ingress). What they share lives here:

* ``KubeClients``, the kinds' ``clients`` factory: one ``kubernetes.client.ApiClient`` per
  kubeconfig context (a rollout may move several clusters: each target names its
  ``context``), or the in-cluster service account when there is no kubeconfig. The client
  blocks, so calls run on a small thread pool; transient failures are retried by the one
  policy of ``strategies.retry``.
* ``translate``: an ``ApiException`` as the engine needs it (403 names the verb and resource
  to grant, 409 is a ``ConflictError``, 429/5xx are temporary).
* ``RouterStrategy``: the protocol over one object. Every write is a JSON merge patch
  (``application/merge-patch+json``: strategic merge patch is refused on custom resources
  with 415) that carries the ``resourceVersion`` last read, so the API server applies it
  only if nobody changed the object since (409 otherwise: the engine re-reads, and a split
  it did not write is drift). Every write is read back. A kind supplies how to read its
  split, how to write a weight and what preflight checks about the object's shape.
* Preflight asks the API server, through a SelfSubjectAccessReview, whether the daemon may
  ``get`` and ``patch`` the object, and names the missing verb.

The ``kubernetes`` package is imported on first use, so a daemon that drives no Kubernetes
target never loads it.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, Any, ClassVar, TypeVar, cast

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from config.targets import TargetBase, schema_of
from strategies.base import (
    ConflictError,
    PermanentError,
    StrategyError,
    TemporaryError,
    TrafficSplit,
)
from strategies.errortext import reduce_error
from strategies.kind import CanonicalError
from strategies.retry import DEFAULT_POLICY, RetryPolicy, retry_transient

T = TypeVar("T")

IN_CLUSTER = "in-cluster"
"""The context name of a target driven through the pod's own service account."""
CURRENT_CONTEXT_KEY = "current-context"
"""Stands for the daemon's current context in the key of a target that names none: only seen
where no daemon made the target canonical (``canary simulate``, tests)."""
MAX_WORKERS = 4
MERGE_PATCH = "application/merge-patch+json"

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _checked(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise PydanticCustomError(
                "k8s_name",
                "{value} is not a Kubernetes {what}: lower-case letters, digits and '-'"
                + (" and '.'" if pattern is _NAME else "")
                + ", starting and ending with a letter or digit",
                {"value": repr(value), "what": what},
            )
        return value

    return check


Namespace = Annotated[str, AfterValidator(_checked(_NAMESPACE, "namespace")), schema_of(_NAMESPACE)]
ObjectName = Annotated[str, AfterValidator(_checked(_NAME, "name")), schema_of(_NAME)]


class K8sTarget(TargetBase):
    """Fields every Kubernetes target has."""

    namespace: Namespace = Field(
        default="default", description="the namespace of the objects the target names"
    )
    context: str | None = Field(
        default=None,
        min_length=1,
        description="the kubeconfig context (cluster and credentials); default: the "
        "kubeconfig's current context, or the pod's service account in a cluster",
    )

    def _context_key(self) -> str:
        return self.context or CURRENT_CONTEXT_KEY


Router = TypeVar("Router", bound=K8sTarget)


def with_context(target: Router, kube: KubeClients) -> Router:
    """Every router kind's canonical form: the kubeconfig's current context filled in, so a
    target named with or without it has one key."""
    if target.context is not None:
        return target
    return target.model_copy(update={"context": kube.default_context()})


def two_services(stable: str, canary: str) -> None:
    """The canary must be a Service of its own: one Service cannot carry two weights."""
    if stable == canary:
        raise ValueError(
            "canary_service is the same Service as stable_service; deploy the canary "
            "behind a Service of its own and name it here"
        )


# ---------------------------------------------------------------- clients


def from_settings(settings: Any) -> KubeClients:
    """The daemon's one ``KubeClients`` (the kubeconfig of ``$KUBECONFIG`` or ~/.kube/config,
    else in-cluster). Loads no SDK."""
    return KubeClients()


class KubeClients:
    """``ApiClient``s per kubeconfig context, and the pool their blocking calls run on."""

    def __init__(
        self,
        kubeconfig: str | None = None,
        *,
        retry: RetryPolicy = DEFAULT_POLICY,
        max_workers: int = MAX_WORKERS,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.retry = retry
        self._max_workers = max_workers
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def _config_file(self) -> str | None:
        """The kubeconfig to read, or None when there is none (in a pod: in-cluster)."""
        if self.kubeconfig is not None:
            return self.kubeconfig
        found = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        if found:
            return found
        default = os.path.expanduser("~/.kube/config")
        return default if os.path.exists(default) else None

    def default_context(self) -> str:
        """The context of a target that names none: the kubeconfig's current context, or
        ``in-cluster``. Reads only the file: no call to any cluster."""
        path = self._config_file()
        if path is None:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                return IN_CLUSTER
            raise CanonicalError(
                "context",
                "names no context and the daemon has no kubeconfig ($KUBECONFIG or "
                "~/.kube/config) and does not run in a cluster; give the daemon a kubeconfig",
            )
        import yaml

        try:
            with open(path, encoding="utf-8") as file:
                current = (yaml.safe_load(file) or {}).get("current-context")
        except (OSError, yaml.YAMLError) as exc:
            raise CanonicalError("context", f"cannot read the kubeconfig {path}: {exc}") from None
        if not current:
            raise CanonicalError(
                "context",
                f"names no context and the kubeconfig {path} has no current-context; set "
                "context here (kubectl config get-contexts lists them)",
            )
        return str(current)

    def api_client(self, context: str | None) -> Any:
        """The ``ApiClient`` of ``context`` (blocking: it reads files; call it on the pool)."""
        name = context or self.default_context()
        with self._lock:
            made = self._clients.get(name)
            if made is not None:
                return made
            from kubernetes import client, config

            try:
                if name == IN_CLUSTER:
                    configuration = client.Configuration()
                    config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                    made = client.ApiClient(configuration)
                else:
                    made = config.new_client_from_config(  # type: ignore[no-untyped-call]
                        config_file=self._config_file(), context=name
                    )
            except config.ConfigException as exc:
                raise PermanentError(
                    f"cannot use kubeconfig context {name!r}: {reduce_error(None, str(exc))}; "
                    "check the target's context (kubectl config get-contexts)"
                ) from None
            self._clients[name] = made
            return made

    async def run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="k8s")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def call(self, context: str | None, action: str, fn: Callable[[Any], T]) -> T:
        """``fn(api_client)`` on the pool; errors translated, transient ones retried.
        ``action`` names the call in messages: ``patch httproutes.gateway.networking.k8s.io``.
        """

        def blocking() -> T:
            try:
                return fn(self.api_client(context))
            except StrategyError:
                raise
            except Exception as exc:
                raise translate(exc, action) from None

        return await retry_transient(partial(self.run, blocking), self.retry)

    def close(self) -> None:
        for made in self._clients.values():
            made.close()
        self._clients.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class NotFound(PermanentError):
    """The object does not exist (404)."""


def translate(exc: Exception, action: str) -> StrategyError:
    """The engine's view of a failed Kubernetes call; ``action`` is ``<verb> <resource>``."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        said = reduce_error(status, _message(exc), action=action)
        if status == 401:
            return PermanentError(
                f"the API server rejected the daemon's credentials for {action} ({said}); "
                "check the kubeconfig's user or the service account token"
            )
        if status == 403:
            return PermanentError(
                f"not allowed to {action} ({said}); grant that verb on that resource to the "
                "daemon's user or service account (see deploy/rbac-*.yaml)"
            )
        if status == 404:
            return NotFound(f"{action}: {said}")
        if status == 409:
            return ConflictError(f"{action}: changed since it was last read ({said})")
        if status == 429 or status >= 500:
            return TemporaryError(f"{action} failed, the API server answered {said}")
        return PermanentError(f"{action} was refused: {said}")
    if isinstance(exc, HTTPError | OSError):
        return TemporaryError(
            f"could not reach the API server for {action}: {reduce_error(None, str(exc))}"
        )
    raise exc


def _message(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason or exc.body or "")


# ---------------------------------------------------------------- one router object


class RouterStrategy:
    """The Strategy protocol over one namespaced object whose weights carry the split.

    A kind subclasses it and sets ``group``, ``version``, ``plural`` and ``kind``, and
    defines ``name`` (the object), ``problems`` (preflight's view of the object's shape),
    ``split`` (its weights as a ``TrafficSplit``) and ``weighted`` (the patch that sets a
    canary share). Built-in kinds (an Ingress) override ``_get`` and ``_patch``.
    """

    kind: ClassVar[str]
    group: ClassVar[str]
    version: ClassVar[str]
    plural: ClassVar[str]
    object_kind: ClassVar[str]
    verbs: ClassVar[tuple[str, ...]] = ("get", "patch")

    def __init__(self, target: K8sTarget, stable: str | None, kube: KubeClients) -> None:
        self.target = target
        self.stable = stable
        self.kube = kube
        self._last: dict[str, Any] | None = None  # the object as last read

    # ------------------------------------------------------------ what a kind defines

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def stable_name(self) -> str:
        raise NotImplementedError

    def problems(self, obj: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def split(self, obj: dict[str, Any]) -> TrafficSplit:
        raise NotImplementedError

    def weighted(self, obj: dict[str, Any], canary_percent: float) -> dict[str, Any]:
        """The merge patch that gives the canary ``canary_percent`` (the resourceVersion is
        added to its metadata)."""
        raise NotImplementedError

    # ------------------------------------------------------------ naming

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def described(self) -> str:
        t = self.target
        return f"{self.object_kind} {t.namespace}/{self.name} (context {t.context or 'current'})"

    # ------------------------------------------------------------ calls

    def _get(self, api: Any) -> dict[str, Any]:
        from kubernetes import client

        found = client.CustomObjectsApi(api).get_namespaced_custom_object(
            self.group, self.version, self.target.namespace, self.plural, self.name
        )
        return cast(dict[str, Any], found)

    def _patch(self, api: Any, body: dict[str, Any]) -> None:
        from kubernetes import client

        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            self.group,
            self.version,
            self.target.namespace,
            self.plural,
            self.name,
            body,
            _content_type=MERGE_PATCH,
        )

    async def _read(self) -> dict[str, Any]:
        try:
            obj = await self.kube.call(self.target.context, f"get {self.resource}", self._get)
        except NotFound:
            raise PermanentError(
                f"{self.described} does not exist; create it first (see the README's "
                f"{self.kind} section), or check the target's namespace and context"
            ) from None
        self._last = obj
        return obj

    async def _allowed(self, verb: str) -> bool:
        t = self.target

        def review(api: Any) -> bool:
            from kubernetes import client

            body = client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        group=self.group,
                        resource=self.plural,
                        verb=verb,
                        namespace=t.namespace,
                        name=self.name,
                    )
                )
            )
            answer = client.AuthorizationV1Api(api).create_self_subject_access_review(body)
            return answer.status is not None and bool(answer.status.allowed)

        return await self.kube.call(t.context, "create selfsubjectaccessreviews", review)

    # ------------------------------------------------------------ the protocol

    async def validate(self) -> None:
        missing = [verb for verb in self.verbs if not await self._allowed(verb)]
        if missing:
            verbs = " and ".join(missing)
            raise PermanentError(
                f"the daemon may not {verbs} {self.resource} {self.name} in namespace "
                f"{self.target.namespace}; grant {', '.join(self.verbs)} on {self.resource} "
                f"to its user or service account (deploy/rbac-{self.kind}.yaml)"
            )
        obj = await self._read()
        problems = self.problems(obj)
        if problems:
            raise PermanentError(f"{self.described}: " + "; ".join(problems))

    async def observe(self) -> TrafficSplit:
        obj = await self._read()
        if self.stable is None:
            self.stable = self.stable_name
        return self.split(obj)

    async def shift(self, canary_percent: float) -> TrafficSplit:
        return await self._write(max(0.0, min(100.0, canary_percent)))

    async def promote(self) -> TrafficSplit:
        return await self._write(100.0)

    async def rollback(self) -> TrafficSplit:
        try:
            return await self._write(0.0)
        except ConflictError:
            # Restoring stable is the safe action even over a change made meanwhile.
            await self._read()
            return await self._write(0.0)

    async def _write(self, canary_percent: float) -> TrafficSplit:
        obj = self._last if self._last is not None else await self._read()
        problems = self.problems(obj)
        if problems:  # the object's shape changed since preflight: never guess
            raise PermanentError(f"{self.described}: " + "; ".join(problems))
        body = self.weighted(obj, canary_percent)
        body.setdefault("metadata", {})["resourceVersion"] = obj["metadata"]["resourceVersion"]
        try:
            await self.kube.call(
                self.target.context, f"patch {self.resource}", partial(self._patch, body=body)
            )
        except ConflictError:
            self._last = None  # stale: the next write reads first
            raise ConflictError(
                f"{self.described} was changed by someone else since canary last read it"
            ) from None
        return self.split(await self._read())  # the read-back


def share(canary: float, stable: float) -> float | None:
    """The canary's percentage of two weights; None when both are 0 (no traffic at all)."""
    total = canary + stable
    return None if total <= 0 else canary / total * 100


def integer_weights(canary_percent: float, scale: int = 100) -> tuple[int, int]:
    """(canary, stable) integer weights out of ``scale`` (finer when the share needs it)."""

    def exact(at: int) -> bool:
        return abs(canary_percent * at / 100 - round(canary_percent * at / 100)) < 1e-9

    while scale < 1_000_000 and not exact(scale):
        scale *= 10
    canary = round(canary_percent * scale / 100)
    return canary, scale - canary
