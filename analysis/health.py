"""Is each metric provider reachable? Cheap checks, bounded and cached.

``/readyz`` lists every provider's state (a provider that is down never makes the daemon
unready: it still has rollouts to roll back), ``canary_provider_up`` reports it, and a
rollout whose gates name a provider that is down or not configured fails its preflight
with the provider named, before any traffic moves, rather than collecting ERROR verdicts.

Each check (``CheckedProvider.health``) is bounded by ``timeout`` and its answer kept for
``ttl`` seconds, so probes that poll ``/readyz`` cost one round trip per provider per ttl.
Concurrent callers share one check. ``/readyz`` waits only briefly (``wait``) and otherwise
answers with the last known state while the check goes on: a readiness probe with a 1 s
timeout must not fail because a provider is slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal

from analysis.base import ProviderError
from analysis.kind import CheckedProvider
from config.spec import Gate

State = Literal["up", "down", "not_configured", "unknown"]


@dataclass(frozen=True)
class ProviderState:
    provider: str
    state: State
    detail: str = ""

    def as_data(self) -> dict[str, str]:
        return {"state": self.state, **({"detail": self.detail} if self.detail else {})}


class ProviderHealth:
    """The health of one daemon's providers, checked on demand and cached briefly."""

    def __init__(
        self,
        providers: Mapping[str, CheckedProvider],
        unconfigured: Mapping[str, str] | None = None,
        *,
        timeout: float = 5.0,
        ttl: float = 15.0,
        now: Callable[[], float] = time.monotonic,
        report: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.unconfigured = dict(unconfigured or {})  # provider -> the setting that enables it
        self.timeout = timeout
        self.ttl = ttl
        self._now = now
        self._report = report
        self._cache: dict[str, tuple[float, ProviderState]] = {}
        self._checks: dict[str, asyncio.Task[ProviderState]] = {}  # in flight, by provider

    def names(self) -> list[str]:
        return sorted({*self.providers, *self.unconfigured})

    async def state(self, name: str, wait: float | None = None) -> ProviderState:
        """``name``'s state, checked if the last answer is older than ``ttl``. With ``wait``,
        give up waiting after that many seconds and answer with the last known state."""
        provider = self.providers.get(name)
        if provider is None:
            why = self.unconfigured.get(name, "this daemon has no such provider")
            return ProviderState(name, "not_configured", why)
        cached = self._cache.get(name)
        if cached is not None and cached[0] > self._now():
            return cached[1]
        check = self._checks.get(name)
        if check is None:
            check = asyncio.create_task(self._check(name, provider), name=f"health-{name}")
            check.add_done_callback(partial(self._checked, name))
            self._checks[name] = check
        done, _ = await asyncio.wait({check}, timeout=wait)
        if check in done:
            return check.result()
        if cached is not None:
            return cached[1]
        return ProviderState(name, "unknown", "its first health check has not answered yet")

    def _checked(self, name: str, check: asyncio.Task[ProviderState]) -> None:
        self._checks.pop(name, None)
        if check.cancelled():
            return
        found = check.result()
        self._cache[name] = (self._now() + self.ttl, found)
        if self._report is not None:
            self._report(name, found.state == "up")

    async def _check(self, name: str, provider: CheckedProvider) -> ProviderState:
        try:
            await asyncio.wait_for(provider.health(), self.timeout)
        except TimeoutError:
            return ProviderState(name, "down", f"did not answer within {self.timeout:g}s")
        except ProviderError as exc:
            return ProviderState(name, "down", str(exc) or type(exc).__name__)
        except Exception as exc:  # a bug in a check must not take /readyz down
            return ProviderState(name, "down", f"the health check failed: {exc!r}")
        return ProviderState(name, "up")

    async def close(self) -> None:
        """Cancel the checks in flight (the daemon is stopping)."""
        checks = list(self._checks.values())
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)

    async def states(self, wait: float | None = None) -> list[ProviderState]:
        """Every provider's state, checked concurrently, by name."""
        return list(await asyncio.gather(*(self.state(n, wait) for n in self.names())))

    async def problems(self, gates: Iterable[Gate]) -> list[str]:
        """What stops these gates from being measured: one line per provider, naming it."""
        return [text for _, text in await self.blocking(gates)]

    async def blocking(self, gates: Iterable[Gate]) -> list[tuple[State, str]]:
        """``problems``, each with the provider's state: ``down`` may pass, ``not_configured``
        lasts until a person sets the daemon up."""
        by_provider: dict[str, list[str]] = {}
        for gate in gates:
            by_provider.setdefault(gate.provider, []).append(gate.name)
        found: list[tuple[State, str]] = []
        for name, states in zip(
            by_provider,
            await asyncio.gather(*(self.state(n) for n in by_provider)),
            strict=True,
        ):
            shown = ", ".join(repr(g) for g in by_provider[name])
            if states.state == "not_configured":
                found.append(
                    (
                        states.state,
                        f"the {name} provider of gate(s) {shown} is not configured in this "
                        f"daemon: {states.detail}",
                    )
                )
            elif states.state == "down":
                found.append(
                    (
                        states.state,
                        f"the {name} provider of gate(s) {shown} is unreachable: {states.detail}",
                    )
                )
        return found
