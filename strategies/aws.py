"""AWS access for the daemon: boto3 clients, one bounded thread pool, one error vocabulary.

boto3 blocks, and the engine's event loop must not, so every call runs on a small thread
pool that the whole daemon shares (the strategies and the CloudWatch provider get the same
``AwsClients``). Retries come in two layers: botocore's adaptive mode (client-side rate
limiting, throttling and 5xx retried a few times) and, once those are spent, the one
tenacity policy of ``strategies.retry``. Every AWS error is turned into what the engine
needs to know: ``TemporaryError`` (throttled, 5xx, unreachable), ``ConflictError`` (a
stale revision) or ``PermanentError`` with the fix in words; access denied names the IAM
action to grant (``lambda:UpdateAlias``). AWS's own message is reduced to its code and one
line (``strategies.errortext``): an emulator's HTML error page must not reach every event.

boto3 and botocore are imported on first use, so a daemon that drives no AWS target never
loads them. A target's ``role_arn`` is assumed through STS; the temporary credentials are
renewed before they expire.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol, TypeVar

from strategies.base import ConflictError, PermanentError, StrategyError, TemporaryError
from strategies.errortext import reduce_error
from strategies.kind import CanonicalError
from strategies.retry import DEFAULT_POLICY, RetryPolicy, retry_transient

T = TypeVar("T")

MAX_WORKERS = 8
BOTOCORE_ATTEMPTS = 4  # botocore's own tries per call (adaptive mode), the first included
ROLE_SESSION_SECONDS = 3600
ROLE_RENEW_BEFORE = 300  # renew assumed-role credentials this long before they expire

_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
_BAD_CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    }
)
_TRANSIENT = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "ServiceException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceError",
        "ResourceConflictException",  # Lambda: another update of the function is in progress
    }
)


class AwsNotFound(PermanentError):
    """The resource named in the call does not exist (ResourceNotFoundException)."""


def translate(exc: Exception, service: str, operation: str) -> StrategyError:
    """The engine's view of a boto3 failure; the message names the IAM action involved."""
    from botocore import exceptions as bc

    action = f"{service}:{operation}"
    if isinstance(exc, bc.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        action = f"{service}:{exc.operation_name}"
        # An emulator's or a proxy's HTML page, or a multi-line dump, as one line.
        said = reduce_error(code or status, str(error.get("Message") or ""), action=action)
        if code in _BAD_CREDENTIALS:
            return PermanentError(
                f"AWS rejected the daemon's credentials calling {action} ({said}); "
                "check the credentials the daemon runs with"
            )
        if code in _ACCESS_DENIED or status == 403:
            return PermanentError(
                f"not allowed to call {action} ({said}); grant {action} to the daemon's "
                "IAM role (see the IAM policy in the README)"
            )
        if code == "PreconditionFailedException" or status == 412:
            return ConflictError(f"{action}: changed since it was last read ({said})")
        if code == "ResourceNotFoundException" or status == 404:
            return AwsNotFound(f"{action}: {said}")
        if code in _TRANSIENT or status == 429 or status >= 500:
            return TemporaryError(f"{action} failed, AWS answered {said}")
        return PermanentError(f"{action} was refused: {said}")
    if isinstance(exc, bc.NoCredentialsError | bc.PartialCredentialsError):
        return PermanentError(
            f"no AWS credentials for {action}; give the daemon credentials (an instance or "
            "task role, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, bc.NoRegionError):
        return PermanentError(
            f"no AWS region for {action}; set the target's region, CANARY_AWS_REGION or AWS_REGION"
        )
    if isinstance(exc, bc.ConnectionError | bc.HTTPClientError):
        return TemporaryError(f"could not reach AWS for {action}: {reduce_error(None, str(exc))}")
    if isinstance(exc, bc.BotoCoreError):
        return PermanentError(f"{action}: {reduce_error(None, str(exc), action=action)}")
    raise exc


class AwsSettings(Protocol):
    """The daemon settings AWS access reads (``config.settings.Settings`` has them)."""

    @property
    def aws_region(self) -> str | None: ...

    @property
    def aws_endpoint_url(self) -> str | None: ...


def from_settings(settings: AwsSettings) -> AwsClients:
    """The daemon's one ``AwsClients``: the client factory every AWS kind and CloudWatch name.

    Loads no SDK: boto3 is imported on the first call (or region lookup) that needs it.
    """
    return AwsClients(region=settings.aws_region, endpoint_url=settings.aws_endpoint_url)


class AwsClients:
    """Cached boto3 clients per (service, region, role) and the pool their calls run on."""

    def __init__(
        self,
        region: str | None = None,
        endpoint_url: str | None = None,
        *,
        max_workers: int = MAX_WORKERS,
        session_factory: Callable[[], Any] | None = None,
        retry: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.retry = retry
        self._max_workers = max_workers
        self._session_factory = session_factory
        self._session: Any = None
        self._clients: dict[tuple[str, str | None, str | None], tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._default_region: tuple[str | None] | None = None  # resolved once, when asked

    def region_for_unnamed(self) -> str:
        """The region a target that names none is keyed by: the daemon's, or a
        ``CanonicalError`` that says where to set one."""
        region = self.default_region()
        if region is None:
            raise CanonicalError(
                "region",
                "names no region and the daemon has none; set region here (e.g. us-east-1), "
                "or CANARY_AWS_REGION (or AWS_REGION) for the daemon",
            )
        return region

    def default_region(self) -> str | None:
        """The region of targets that name none: ``region`` (CANARY_AWS_REGION), else boto3's
        default (AWS_REGION, AWS_DEFAULT_REGION, the profile's), looked up once; None if none.

        Looked up on the first rollout that needs it rather than at daemon start, so a daemon
        that drives no AWS target never loads boto3.
        """
        if self.region is not None:
            return self.region
        with self._lock:
            if self._default_region is None:
                self._default_region = (self._base_session().region_name,)
            return self._default_region[0]

    # ------------------------------------------------------------ clients (pool threads)

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(
            retries={"mode": "adaptive", "max_attempts": BOTOCORE_ATTEMPTS},
            connect_timeout=5,
            read_timeout=20,
            max_pool_connections=self._max_workers,
        )

    def _base_session(self) -> Any:
        if self._session is None:
            if self._session_factory is not None:
                self._session = self._session_factory()
            else:
                import boto3

                self._session = boto3.session.Session()
        return self._session

    def client(self, service: str, region: str | None = None, role_arn: str | None = None) -> Any:
        """A client for ``service``; blocking (it may assume a role), so call it on the pool."""
        key = (service, region or self.region, role_arn)
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None and cached[1] > time.time() + ROLE_RENEW_BEFORE:
                return cached[0]
            session = self._base_session()
            options: dict[str, Any] = {
                "region_name": key[1],
                "endpoint_url": self.endpoint_url,
                "config": self._config(),
            }
            expires = float("inf")
            if role_arn is not None:
                credentials, expires = self._assume(session, role_arn, key[1])
                options |= credentials
            made = session.client(service, **options)
            self._clients[key] = (made, expires)
            return made

    def _assume(
        self, session: Any, role_arn: str, region: str | None
    ) -> tuple[dict[str, str], float]:
        sts = session.client(
            "sts", region_name=region, endpoint_url=self.endpoint_url, config=self._config()
        )
        try:
            answer = sts.assume_role(
                RoleArn=role_arn,
                RoleSessionName="canary",
                DurationSeconds=ROLE_SESSION_SECONDS,
            )
        except Exception as exc:
            raise translate(exc, "sts", "AssumeRole") from None
        found = answer["Credentials"]
        credentials = {
            "aws_access_key_id": found["AccessKeyId"],
            "aws_secret_access_key": found["SecretAccessKey"],
            "aws_session_token": found["SessionToken"],
        }
        return credentials, found["Expiration"].timestamp()

    # ------------------------------------------------------------ calls (event loop)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run blocking ``fn`` on the shared pool."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="aws")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def call(
        self,
        service: str,
        method: str,
        *,
        region: str | None = None,
        role_arn: str | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """``client.<method>(**params)`` on the pool, errors translated, transient ones retried."""

        operation = "".join(part.capitalize() for part in method.split("_"))

        def blocking() -> dict[str, Any]:
            try:
                client = self.client(service, region, role_arn)
                result: dict[str, Any] = getattr(client, method)(**params)
            except StrategyError:
                raise
            except Exception as exc:
                raise translate(exc, service, operation) from None
            return result

        return await retry_transient(partial(self.run, blocking), self.retry)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
