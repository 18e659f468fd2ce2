"""The one retry policy for backend calls: transient errors only, bounded, with jitter.

SDKs retry a little on their own (botocore's adaptive mode rate-limits and retries throttling
and 5xx); this policy is the second, slower layer for when those retries are spent. It
retries ``TemporaryError`` and nothing else: a permanent error (access denied, a missing
alias) or a conflict (a stale revision) must reach the engine at once, which decides what
to do. The engine's ``backend_timeout`` still bounds the whole call, retries included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from strategies.base import TemporaryError

log = structlog.get_logger("canary.retry")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # calls in all, the first included
    initial: float = 1.0  # seconds before the first retry; doubles, with jitter
    maximum: float = 10.0  # cap on one wait


DEFAULT_POLICY = RetryPolicy()


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "backend.retrying",
        attempt=state.attempt_number,
        wait=round(state.upcoming_sleep, 2),
        error=str(error),
    )


async def retry_transient(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy = DEFAULT_POLICY
) -> T:
    """``await call()``, again after a wait each time it raises ``TemporaryError``."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TemporaryError),
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.initial, max=policy.maximum)
        + wait_random(0, policy.initial),
        before_sleep=_log_retry,
        reraise=True,
    )
    return await retrying(call)
