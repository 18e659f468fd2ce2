"""``canary serve``: the engine, the store and the HTTP API in one process.

Stopping is as important as starting. SIGTERM (what Kubernetes and systemd send) lets every
in-flight backend call finish and be recorded, then exits; every rollout is resumable by the
next daemon over the same store. One daemon per SQLite file, enforced by a lock file;
on PostgreSQL several daemons (replicas) share the database, each driving the rollouts it
holds the lease of (``canary.replica``).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import IO

import structlog
from aiohttp import web

from analysis.base import MetricProvider
from analysis.health import ProviderHealth
from analysis.kind import CheckedProvider
from analysis.registry import PROVIDERS
from canary import __version__, logs
from canary.api.app import ApiRunner, build_app
from canary.clock import Clock, RealClock
from canary.engine import Engine, EngineOptions, Preflight
from canary.events import ActionError, ErrorKind
from canary.metrics import Metrics
from canary.model import Rollout
from canary.slack import build_notifier
from canary.store import Store, StoreError, display_url, open_store
from config.errors import SpecError
from config.settings import Settings
from config.spec import RolloutDocument, canonical_document
from strategies.registry import Clients, StrategyFactory, factory

log = structlog.get_logger("canary.daemon")

EXIT_CONFIG = 2


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


def lock_store(store_url: str) -> IO[str] | None:
    """Hold ``<db>.lock`` for the life of the process; None for stores without a file."""
    if not store_url.startswith("sqlite:///"):
        return None
    path = Path(store_url.removeprefix("sqlite:///") + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
    except OSError as exc:
        raise unusable_store(store_url, f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DaemonError(
            f"another canary daemon (pid {holder}) is using {store_url}; stop it, or give this "
            "one its own CANARY_STORE_URL"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def unusable_store(store_url: str, why: str) -> DaemonError:
    if store_url.startswith("postgresql://"):
        fix = (
            "check that the server answers at that address, that the database exists and "
            "that the user may create tables in it (the URL is libpq's: "
            "postgresql://user:password@host:5432/dbname)"
        )
    else:
        fix = "give a file in a writable directory, e.g. sqlite:////var/lib/canary/canary.db"
    return DaemonError(f"CANARY_STORE_URL {display_url(store_url)!r} cannot be used: {why}; {fix}")


async def open_daemon_store(store_url: str) -> Store:
    """The store, opened now: a bad path or a too-new file stops the daemon here (exit 2,
    naming the setting), not mid-rollout."""
    try:
        store = open_store(store_url)
    except ValueError as exc:
        raise DaemonError(f"CANARY_STORE_URL: {exc}") from None
    try:
        await store.ping()
    except StoreError as exc:
        await store.close()
        raise unusable_store(store_url, str(exc)) from None
    return store


RETENTION_EVERY = 3600.0  # seconds between two prunes of ended rollouts


async def keep_retention(store: Store, clock: Clock, days: float, every: float) -> None:
    """Delete ended rollouts (and their events) ``days`` after they ended, every ``every``
    seconds, in batches; ``days`` 0 keeps everything. Runs until cancelled."""
    if days <= 0:
        return
    while True:
        try:
            cutoff = clock.now() - timedelta(days=days)
            total = 0
            while (pruned := await store.prune(cutoff)) > 0:
                total += pruned
            if total:
                log.info("store.pruned", rollouts=total, ended_before=cutoff.isoformat())
        except StoreError as exc:
            log.warning("store.prune_failed", error=str(exc), retry_in=every)
        await clock.sleep_until(clock.now() + timedelta(seconds=every))


def build_providers(settings: Settings, clients: Clients) -> dict[str, CheckedProvider]:
    """The metric providers this daemon can ask (those its settings turn on)."""
    providers: dict[str, CheckedProvider] = {}
    for kind in PROVIDERS:
        provider = kind.build(settings, clients.get(kind.clients))
        if provider is not None:
            providers[kind.name] = provider
    return providers


def unconfigured(settings: Settings, providers: Mapping[str, MetricProvider]) -> dict[str, str]:
    """Declared providers this daemon did not build -> the setting that turns each on."""
    if settings.strategies == "memory":
        why = "in-memory mode answers gates only from a scenario file (CANARY_SCENARIO)"
        return {k.name: why for k in PROVIDERS if k.name not in providers}
    return {k.name: k.unconfigured for k in PROVIDERS if k.name not in providers}


def rollout_preflight(health: ProviderHealth) -> Preflight:
    """The engine's check before a rollout starts: every provider its gates name answers.

    A provider that is down may come back: the start is retried within the action retry
    budget. One that is not configured will not: the rollout fails at once."""

    async def check(rollout: Rollout) -> ActionError | None:
        found = await health.blocking(rollout.spec.analysis.gates)
        if not found:
            return None
        lasting = any(state == "not_configured" for state, _ in found)
        kind = ErrorKind.PERMANENT if lasting else ErrorKind.TEMPORARY
        return ActionError(kind, "providers", "; ".join(text for _, text in found))

    return check


def canonicaliser(clients: Clients) -> Callable[[RolloutDocument], RolloutDocument]:
    """What the API applies to a submitted spec: every target in its canonical form."""
    return lambda document: canonical_document(document, clients)


def check_access(settings: Settings) -> None:
    """Refuse an API nobody can use or anybody can; warn when it is open on purpose."""
    if not settings.tokens and not settings.allow_anonymous:
        raise DaemonError(
            "no API tokens are configured: set CANARY_TOKENS (JSON list of "
            '{"name": ..., "sha256": <hex SHA-256 of the token>, "role": read|deploy|operate}), '
            "or, for development only, CANARY_ALLOW_ANONYMOUS=true"
        )
    if settings.allow_anonymous:
        log.warning(
            "daemon.anonymous_access",
            detail="CANARY_ALLOW_ANONYMOUS=true: requests without a token may start, promote "
            "and abort rollouts (as 'anonymous'); never run a production daemon like this",
        )


def in_memory_backends(settings: Settings) -> tuple[StrategyFactory, dict[str, CheckedProvider]]:
    """CANARY_STRATEGIES=memory: in-memory targets and, with CANARY_SCENARIO, scripted metrics.

    For tests and demos only: nothing real moves, which is why it must be asked for by name
    and is announced with a warning at every start.
    """
    from analysis.registry import provider_names
    from analysis.scripted import ScriptedProvider
    from config.scenario import load_scenario
    from strategies.memory import MemoryFleet

    scenario = load_scenario(settings.scenario) if settings.scenario is not None else None
    fleet = MemoryFleet(stable=scenario.stable_version if scenario else "stable")
    providers: dict[str, CheckedProvider] = {}
    if scenario is not None:
        providers = dict.fromkeys(provider_names(), ScriptedProvider.from_scenario(scenario))
    log.warning(
        "daemon.memory_strategies",
        detail="CANARY_STRATEGIES=memory: every target is in-memory and no real traffic moves "
        "(tests and demos only)",
        scenario=str(settings.scenario) if settings.scenario else None,
    )
    return fleet.factory, providers


def close_providers(providers: Mapping[str, MetricProvider]) -> None:
    """Release the providers' threads and connections (those that hold any)."""
    for provider in providers.values():
        close = getattr(provider, "close", None)
        if close is not None:
            close()


async def run_daemon(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    clients = Clients(settings)  # each kind's and provider's clients; no SDK loads here
    strategies: StrategyFactory
    providers: dict[str, CheckedProvider]
    try:
        check_access(settings)
        if settings.strategies == "memory":
            strategies, providers = in_memory_backends(settings)
        else:
            strategies = factory(clients)
            providers = build_providers(settings, clients)
        lock = lock_store(settings.store_url)
    except SpecError as exc:
        log.error("daemon.refused", error=f"CANARY_SCENARIO: {exc}")
        return EXIT_CONFIG
    except DaemonError as exc:
        log.error("daemon.refused", error=str(exc))
        return EXIT_CONFIG
    try:
        store = await open_daemon_store(settings.store_url)
    except DaemonError as exc:
        log.error("daemon.refused", error=str(exc))
        if lock is not None:
            lock.close()
        close_providers(providers)
        return EXIT_CONFIG
    metrics = Metrics(process=True)
    slack = build_notifier(settings, store, metrics)
    health = ProviderHealth(
        providers, unconfigured(settings, providers), report=metrics.provider_health
    )
    engine = Engine(
        store,
        RealClock(),
        strategies,
        providers,
        notifiers=[slack] if slack is not None else [],
        options=EngineOptions(action_retry_budget=settings.action_retry_budget),
        observer=metrics,
        preflight=rollout_preflight(health),
    )
    app = build_app(
        engine,
        settings,
        metrics_registry=metrics,
        health=health,
        canonical=canonicaliser(clients),
    )
    runner = ApiRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        log.error(
            "daemon.refused",
            error=f"cannot listen on {settings.listen}: {exc.strerror}; set CANARY_LISTEN",
        )
        await runner.cleanup()
        await store.close()
        clients.close()
        close_providers(providers)
        return EXIT_CONFIG
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    replica = None
    if settings.store_url.startswith("postgresql://"):  # replicas share it: drive by lease
        from canary.replica import Replica  # psycopg loads only for PostgreSQL
        from canary.store.postgres import PostgresStore

        assert isinstance(store, PostgresStore)
        replica = Replica(store, engine, ttl=settings.lease_ttl, renew=settings.lease_renew)
        engine.ownership = replica
    await engine.start()
    if replica is not None:
        await replica.start()
    retention = asyncio.create_task(
        keep_retention(store, engine.clock, settings.retention_days, RETENTION_EVERY),
        name="canary-retention",
    )
    log.info(
        "daemon.ready",
        listen=settings.listen,
        store=display_url(settings.store_url),
        version=__version__,
    )
    await stop.wait()
    log.info("daemon.stopping")
    retention.cancel()
    await asyncio.gather(retention, return_exceptions=True)
    await engine.stop()
    if replica is not None:
        await replica.stop()  # after the engine: in-flight writes still carry their leases
    await runner.cleanup()
    await store.close()
    clients.close()
    close_providers(providers)
    if lock is not None:
        lock.close()
    log.info("daemon.stopped")
    return 0
