"""The Prometheus provider and the gates against a real Prometheus server.

A real ``prometheus`` scrapes a small app (``promserver.TrafficApp``) every second; the
gates read real PromQL results (``rate()``, ``histogram_quantile()``, range queries).

The engine-level cases run the real engine on the real clock with second-long intervals
and bakes: Prometheus only has data for times that have passed, so a virtual clock that
jumps ahead would ask about a future with no samples. Each test uses versions of its own,
so the data of one test never reaches another's queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import document, lambda_target
from promserver import Behaviour, PrometheusServer, TrafficApp, WebConfig
from services import free_port
from test_errortext import debug_logs

from analysis.base import Measurement, MetricQuery, ProviderError, Verdict, Window
from analysis.gates import EvaluationContext, evaluate
from analysis.judges import GateResult
from analysis.prometheus import PrometheusOptions, PrometheusProvider
from canary.clock import RealClock
from canary.daemon import build_providers, close_providers
from canary.engine import Engine, EngineOptions
from canary.model import Event, Phase, Rollout
from canary.store.memory import MemoryStore
from config.settings import load_settings
from config.spec import Gate
from strategies.memory import MemoryBackend, MemoryFleet
from strategies.registry import Clients

_numbers = itertools.count(10, 10)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def versions() -> tuple[str, str]:
    """A fresh (stable, canary) pair of Lambda-style version numbers for one test."""
    n = next(_numbers)
    return str(n), str(n + 1)


@pytest.fixture(scope="module")
def app() -> Iterator[TrafficApp]:
    traffic = TrafficApp().start()
    yield traffic
    traffic.stop()


@pytest.fixture(scope="module")
def prometheus(app: TrafficApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{app.port}"])
    server.start()
    server.wait_for_series('up{job="app"} == 1', "Prometheus' first scrape of the test app")
    yield server.url
    server.stop()


@pytest.fixture
async def provider(prometheus: str) -> AsyncIterator[PrometheusProvider]:
    p = PrometheusProvider(PrometheusOptions(url=prometheus, timeout=5))
    yield p
    p.close()


def gate(**fields: Any) -> Gate:
    # The app's metrics are scraped every second: no delay worth waiting for.
    base = {"name": "g", "provider": "prometheus", "window": "5s", "delay": "0s"}
    return Gate.model_validate(base | fields)


async def judge_now(
    provider: PrometheusProvider, gates: list[Gate], stable: str, canary: str
) -> list[GateResult]:
    now = dt.datetime.now(dt.UTC)
    ctx = EvaluationContext(
        now=now,
        weight=50,
        elapsed=0,
        variables={"canary_version": canary, "stable_version": stable, "function": "checkout"},
    )
    return await evaluate(gates, {"prometheus": provider}, ctx, provider_timeout=10)


async def until_samples(
    provider: PrometheusProvider, version_side: tuple[str, str], at_least: float
) -> None:
    """Poll until the canary has ``at_least`` requests in a 5s window: data has landed."""
    stable, canary = version_side
    probe = gate(preset="http-error-rate", max=1)
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        (result,) = await judge_now(provider, [probe], stable, canary)
        if result.samples is not None and result.samples >= at_least:
            return
        await asyncio.sleep(0.3)
    pytest.fail(f"the canary {canary} never reached {at_least} requests in Prometheus")


# ---------------------------------------------------------------- the provider, gate by gate


async def test_presets_and_templates_read_real_rates_and_quantiles(
    app: TrafficApp, provider: PrometheusProvider
) -> None:
    stable, canary = versions()
    app.serve(stable, Behaviour(rps=100, error_rate=0.01, latency=0.2))
    app.serve(canary, Behaviour(rps=100, error_rate=0.2, latency=0.5))
    await until_samples(provider, (stable, canary), 460)  # the 5s window is full
    await asyncio.sleep(7)  # and so is the p95 gate's 12s window, 6 values of 2s each
    gates = [
        gate(name="errors", preset="http-error-rate", max=0.05, min_samples=100),
        gate(
            name="p95",
            preset="http-p95-latency",
            window="12s",
            relative={"max_increase_percent": 20},
        ),
        gate(
            name="custom",
            query='sum(rate(http_requests_total{version="{{ canary_version }}", code="500"}'
            "[{{ window }}]))",
            stable_query='sum(rate(http_requests_total{version="{{ stable_version }}", '
            'code="500"}[{{ window }}]))',
            samples_query='sum(increase(http_requests_total{version="{{ canary_version }}"}'
            "[{{ window }}]))",
            max=100,
            min_samples=100,
        ),
    ]
    errors, p95, custom = await judge_now(provider, gates, stable, canary)

    assert errors.verdict == Verdict.FAIL
    assert errors.value is not None
    assert 0.12 < errors.value < 0.28, errors.explanation
    assert errors.stable_value is not None
    assert errors.stable_value < 0.04
    assert errors.samples is not None
    assert 300 <= errors.samples <= 800
    assert "> max 0.05" in errors.explanation

    # Median 0.5s vs 0.2s, lognormal spread: p95s near 0.7s and 0.28s.
    assert p95.verdict == Verdict.FAIL, p95.explanation
    assert p95.value is not None
    assert 0.55 < p95.value < 0.85, p95.explanation
    assert p95.stable_value is not None
    assert 0.2 < p95.stable_value < 0.35
    assert "vs stable" in p95.explanation
    assert "(99% bound +" in p95.explanation, "the increase is bounded with its values"
    assert "> allowed +20% → FAIL" in p95.explanation
    assert p95.explanation.startswith(f"p95 {p95.value:.4g}s vs stable")

    # About 20 errors per second from 100 requests; the template filled in both versions.
    assert custom.verdict == Verdict.PASS
    assert custom.value is not None
    assert 12 < custom.value < 28
    assert custom.stable_value is not None
    assert custom.stable_value < 4


async def test_statistical_gate_compares_value_series_over_the_window(
    app: TrafficApp, provider: PrometheusProvider
) -> None:
    stable, slow = versions()
    fast = str(int(slow) + 1)
    app.serve(stable, Behaviour(rps=60, latency=0.2))
    app.serve(slow, Behaviour(rps=60, latency=0.5))
    app.serve(fast, Behaviour(rps=60, latency=0.1))
    statistical = gate(
        name="p95",
        preset="http-p95-latency",
        window="10s",
        statistical={"confidence": 0.95, "min_increase_percent": 10, "step": "2s"},
    )
    await until_samples(provider, (stable, slow), 280)  # the 5s probe window is full
    await asyncio.sleep(5)  # and so is the gate's 10s window

    (result,) = await judge_now(provider, [statistical], stable, slow)
    assert result.verdict == Verdict.FAIL, result.explanation
    assert "Mann-Whitney p=" in result.explanation
    assert result.detail["n"] >= 4
    assert result.detail["canary_median"] > 1.5 * result.detail["stable_median"]

    (result,) = await judge_now(provider, [statistical], stable, fast)
    assert result.verdict == Verdict.PASS, result.explanation
    assert "not higher beyond chance" in result.explanation


async def test_no_traffic_is_inconclusive_never_zero(
    app: TrafficApp, provider: PrometheusProvider
) -> None:
    stable, canary = versions()
    app.serve(stable, Behaviour(rps=50))
    trickle = app.serve(canary, Behaviour(rps=2))
    gates = [
        gate(name="errors", preset="http-error-rate", max=0.01, min_samples=50),
        gate(name="p95", preset="http-p95-latency", max=1),
    ]
    await until_samples(provider, (stable, canary), 4)
    errors, _ = await judge_now(provider, gates, stable, canary)
    assert errors.verdict == Verdict.INCONCLUSIVE
    assert "samples < min_samples 50" in errors.explanation

    trickle.rps = 0
    never = str(next(_numbers) + 1)  # a version Prometheus has never seen
    errors, p95 = await judge_now(provider, gates, stable, never)
    assert (errors.verdict, p95.verdict) == (Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE)
    assert errors.value is None, "no data is None, not 0"
    assert p95.value is None
    assert "has no data for the canary" in errors.explanation

    await asyncio.sleep(6.5)  # the canary's counters stand still: rate() is 0/0
    errors, p95 = await judge_now(provider, gates, stable, canary)
    assert (errors.verdict, p95.verdict) == (Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE)
    assert errors.value is None
    assert p95.value is None


TWO_SERIES = (
    'label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")'
)


async def test_bad_queries_are_errors_that_say_why(provider: PrometheusProvider) -> None:
    window = Window(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5), dt.datetime.now(dt.UTC))

    def q(expression: str, **kw: Any) -> MetricQuery:
        variables = {"canary_version": "1", "stable_version": "", "function": "f"}
        return MetricQuery(
            gate="g",
            side="canary",
            expression=expression,
            preset=None,
            variables=variables,
            **kw,
        )

    syntax, several, unknown, no_stable = await provider.query(
        [
            q("sum(rate(http_requests_total[5s])"),
            q(TWO_SERIES),
            q('up{job="{{ job }}"}'),
            MetricQuery(
                gate="g",
                side="stable",
                expression=None,
                preset="http-error-rate",
                variables={"canary_version": "1", "stable_version": ""},
            ),
        ],
        window,
    )
    assert isinstance(syntax, ProviderError)
    assert "Prometheus refused the query (HTTP 400): bad_data" in str(syntax)
    assert isinstance(several, ProviderError)
    assert "series" in str(several)
    assert "aggregate it to one" in str(several)
    assert isinstance(unknown, ProviderError)
    assert "no value for {{ job }}" in str(unknown)
    assert isinstance(no_stable, ProviderError)
    assert "{{ stable_version }}" in str(no_stable)


async def test_scalar_results_and_empty_results(provider: PrometheusProvider) -> None:
    window = Window(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5), dt.datetime.now(dt.UTC))

    def q(expression: str) -> MetricQuery:
        return MetricQuery(gate="g", side="canary", expression=expression, preset=None)

    scalar, nan, empty = await provider.query(
        [q("scalar(vector(0.25))"), q("vector(0) / vector(0)"), q('up{job="nobody"}')], window
    )
    assert isinstance(scalar, Measurement)
    assert scalar.value == 0.25
    assert isinstance(nan, Measurement)
    assert nan.value is None
    assert isinstance(empty, Measurement)
    assert empty.value is None


# ---------------------------------------------------------------- whole rollouts, real time


def share_of(backend: MemoryBackend, canary: str) -> Callable[[], float]:
    """The canary's share of traffic (0 to 1) as the rollout sets it."""

    def share() -> float:
        if backend.primary == canary:
            return 1.0
        return backend.extra_weight / 100 if backend.extra == canary else 0.0

    return share


Shaped = Callable[[float], float]  # a level as a function of the canary's share


GATES: dict[str, Any] = {
    "interval": "1s",
    "warmup": "0s",  # bakes of seconds: judge from the first look
    "inconclusive_limit": 10,
    "gates": [
        {
            "name": "error-rate",
            "provider": "prometheus",
            "preset": "http-error-rate",
            "max": 0.05,
            "min_samples": 20,
            "window": "4s",
            "delay": "0s",
        },
        {
            "name": "p95",
            "provider": "prometheus",
            "preset": "http-p95-latency",
            "max": 1.0,
            "relative": {"max_increase_percent": 50},
            "min_samples": 20,
            "window": "10s",  # 5 values of 2s each bound the increase
            "delay": "0s",
        },
    ],
}


class Rollouts:
    """The real engine on the real clock, in-memory targets, Prometheus for the gates."""

    def __init__(self, prometheus_url: str) -> None:
        self.store = MemoryStore()
        self.fleet: MemoryFleet | None = None
        self.provider = PrometheusProvider(PrometheusOptions(url=prometheus_url, timeout=3))
        self.engine: Engine | None = None

    async def run(
        self,
        app: TrafficApp,
        analysis: dict[str, Any],
        steps: list[dict[str, Any]],
        *,
        error_rate: Shaped = lambda share: 0.002,
        latency: Shaped = lambda share: 0.2,
    ) -> tuple[Rollout, list[Event]]:
        """Run one rollout to its end; 200 requests/s split by the rollout's weight."""
        stable, canary = versions()
        self.fleet = MemoryFleet(stable=stable)
        doc = document(targets=[lambda_target(version=canary)], steps=steps, analysis=analysis)
        share = share_of(self.fleet.backend(doc.spec.targets[0].key()), canary)
        app.serve(stable, Behaviour(rps=lambda: 200 * (1 - share()), latency=0.2))
        app.serve(
            canary,
            Behaviour(
                rps=lambda: 200 * share(),
                error_rate=lambda: error_rate(share()),
                latency=lambda: latency(share()),
            ),
        )
        self.engine = Engine(
            self.store,
            RealClock(),
            self.fleet.factory,
            {"prometheus": self.provider},
            options=EngineOptions(provider_timeout=5),
        )
        await self.engine.start()
        r = await self.engine.submit(doc, actor="ci")
        for _ in range(600):
            r = await self.store.get(r.id)
            if not r.phase.live or r.phase == Phase.PAUSED:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"the rollout did not finish within 60s: {r.phase}")
        return r, await self.store.events(r.id)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.stop()
        self.provider.close()


@pytest.fixture
async def rollouts(prometheus: str) -> AsyncIterator[Rollouts]:
    rig = Rollouts(prometheus)
    yield rig
    await rig.close()


def evaluations(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == "analysis.evaluated"]


async def test_healthy_release_passes_every_gate_and_is_promoted(
    app: TrafficApp, rollouts: Rollouts
) -> None:
    steps = [{"weight": 10, "bake": "4s"}, {"weight": 50, "bake": "4s"}, {"weight": 100}]
    r, events = await rollouts.run(app, GATES, steps)
    assert r.phase == Phase.SUCCEEDED, r.reason or r.paused_reason
    last = evaluations(events)[-1]
    verdicts = {res["gate"]: res["verdict"] for res in last.data["results"]}
    assert verdicts == {"error-rate": "PASS", "p95": "PASS"}
    p95 = next(res for res in last.data["results"] if res["gate"] == "p95")
    assert 0.2 < p95["value"] < 0.4, "real values were recorded"
    assert p95["samples"] >= 20


async def test_error_regression_fails_at_the_step_where_it_starts(
    app: TrafficApp, rollouts: Rollouts
) -> None:
    """The canary breaks under load: fine at 10%, 30% errors once it takes 50%."""
    steps = [{"weight": 10, "bake": "4s"}, {"weight": 50, "bake": "8s"}, {"weight": 100}]
    r, events = await rollouts.run(
        app,
        GATES | {"failure_limit": 0},
        steps,
        error_rate=lambda share: 0.3 if share >= 0.5 else 0.002,
    )
    assert r.phase == Phase.ROLLED_BACK
    rollback = next(e for e in events if e.kind == "rollback.started")
    assert rollback.weight == 50, "caught at the 50% step, where it broke"
    assert "error-rate" in (r.reason or "")
    assert "> max 0.05" in (r.reason or "")
    assert [e.data["weight"] for e in events if e.kind == "traffic.shifted"] == [10, 50]
    at_10 = [e for e in evaluations(events) if e.weight == 10]
    assert at_10, "the 10% step was judged"
    assert all("FAIL" not in e.message for e in at_10), "and judged healthy"


async def test_latency_regression_fails_against_stable(app: TrafficApp, rollouts: Rollouts) -> None:
    # A busy machine delays scrapes: room for inconclusive looks until 5 values of each are in
    # (the failure ends the bake as soon as the bound is beyond the allowance).
    steps = [{"weight": 25, "bake": "30s"}, {"weight": 100}]
    r, events = await rollouts.run(
        app, GATES | {"failure_limit": 0, "inconclusive_limit": 40}, steps, latency=lambda s: 0.45
    )
    assert r.phase == Phase.ROLLED_BACK
    assert "p95" in (r.reason or "")
    assert "vs stable" in (r.reason or "")
    assert "> allowed +50%" in (r.reason or "")
    assert [e.data["weight"] for e in events if e.kind == "traffic.shifted"] == [25]


async def test_prometheus_stopped_mid_bake_is_error_then_rollback(
    app: TrafficApp, tmp_path: Path
) -> None:
    server = PrometheusServer(tmp_path, [f"127.0.0.1:{app.port}"]).start()
    server.wait_for_series('up{job="app"} == 1', "the first scrape")
    rig = Rollouts(server.url)
    try:
        steps = [{"weight": 10, "bake": "30s"}, {"weight": 100}]
        analysis = GATES | {"consecutive_error_limit": 2}
        task = asyncio.ensure_future(rig.run(app, analysis, steps))

        async def judged() -> None:
            while True:
                live = await rig.store.live()
                events = await rig.store.events(live[0].id) if live else []
                if any(
                    all(res["verdict"] == "PASS" for res in e.data["results"])
                    for e in evaluations(events)
                ):
                    return
                await asyncio.sleep(0.2)

        await asyncio.wait_for(judged(), 30)
        server.stop()  # mid-bake: Prometheus goes away
        r, events = await task
    finally:
        server.stop()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await rig.close()
    assert r.phase == Phase.ROLLED_BACK
    assert "3 evaluations in a row could not be measured" in (r.reason or "")
    assert "cannot connect to" in (r.reason or "")
    errors = [e for e in evaluations(events) if "ERROR" in e.message]
    assert len(errors) == 3
    assert "rollout.succeeded" not in [e.kind for e in events]
    assert r.step == 0, "an outage never moved the rollout forward"


# ---------------------------------------------------------------- TLS, basic auth, bearer


def _tls_files(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def secured(
    app: TrafficApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("secured")
    cert, key = _tls_files(workdir)
    web_config = WebConfig(cert, key, "canary", "s3cret-pass")
    server = PrometheusServer(workdir, [f"127.0.0.1:{app.port}"], web_config).start()
    yield server
    server.stop()


async def ask(options: PrometheusOptions) -> Measurement | ProviderError:
    provider = PrometheusProvider(options)
    try:
        now = dt.datetime.now(dt.UTC)
        query = MetricQuery(gate="g", side="canary", expression="scalar(vector(1))", preset=None)
        (answer,) = await provider.query([query], Window(now - dt.timedelta(seconds=5), now))
        return answer
    finally:
        provider.close()


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
async def test_tls_and_basic_auth(secured: PrometheusServer) -> None:
    assert secured.web_config is not None
    ca = str(secured.web_config.cert_file)
    good = PrometheusOptions(url=secured.url, username="canary", password="s3cret-pass", ca_file=ca)
    answer = await ask(good)
    assert isinstance(answer, Measurement)
    assert answer.value == 1

    wrong = await ask(
        PrometheusOptions(url=secured.url, username="canary", password="x", ca_file=ca)
    )
    assert isinstance(wrong, ProviderError)
    assert "HTTP 401" in str(wrong)
    assert "credentials" in str(wrong)
    assert "s3cret" not in str(wrong)

    untrusted = await ask(PrometheusOptions(url=secured.url, username="canary", password="x"))
    assert isinstance(untrusted, ProviderError)
    assert "certificate verify failed" in str(untrusted)

    unverified = PrometheusOptions(
        url=secured.url, username="canary", password="s3cret-pass", verify_tls=False
    )
    answer = await ask(unverified)
    assert isinstance(answer, Measurement)
    assert answer.value == 1
    assert "s3cret" not in repr(good)


async def test_daemon_settings_build_a_working_provider(
    secured: PrometheusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert secured.web_config is not None
    for name, value in {
        "CANARY_PROMETHEUS_URL": secured.url,
        "CANARY_PROMETHEUS_USERNAME": "canary",
        "CANARY_PROMETHEUS_PASSWORD": "s3cret-pass",
        "CANARY_PROMETHEUS_CA_FILE": str(secured.web_config.cert_file),
        "CANARY_PROMETHEUS_TIMEOUT": "5",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert "s3cret" not in repr(settings)
    providers = build_providers(settings, Clients(settings))
    try:
        assert set(providers) == {"cloudwatch", "prometheus"}, "cloudwatch is always there"
        provider = providers["prometheus"]
        assert isinstance(provider, PrometheusProvider)
        answer = await ask(provider.options)
        assert isinstance(answer, Measurement)
        assert answer.value == 1
    finally:
        close_providers(providers)
    monkeypatch.delenv("CANARY_PROMETHEUS_URL")
    monkeypatch.delenv("CANARY_PROMETHEUS_USERNAME")
    monkeypatch.delenv("CANARY_PROMETHEUS_PASSWORD")
    monkeypatch.delenv("CANARY_PROMETHEUS_CA_FILE")
    unset = load_settings()
    without = build_providers(unset, Clients(unset))
    assert set(without) == {"cloudwatch"}, "no URL: no prometheus provider"
    close_providers(without)


@contextlib.asynccontextmanager
async def local_server(path: str, handler: Handler) -> AsyncIterator[str]:
    """A small HTTP server on a free port answering GET ``path``; yields its URL."""
    server = web.Application()
    server.router.add_get(path, handler)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_bearer_token_reaches_a_proxy_that_requires_it(prometheus: str) -> None:
    """Prometheus has no bearer tokens of its own; they are checked by a proxy in front."""
    seen: list[str | None] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != "Bearer t0ken":
            return web.Response(status=403, text="forbidden")
        async with (
            ClientSession() as client,
            client.get(prometheus + request.path, params=request.query) as upstream,
        ):
            return web.Response(
                status=upstream.status, body=await upstream.read(), content_type="application/json"
            )

    async with local_server("/{tail:.*}", proxy) as url:
        answer = await ask(PrometheusOptions(url=url, bearer_token="t0ken"))
        refused = await ask(PrometheusOptions(url=url, bearer_token="wrong"))
    assert isinstance(answer, Measurement)
    assert answer.value == 1
    assert isinstance(refused, ProviderError)
    assert "HTTP 403" in str(refused)
    assert seen == ["Bearer t0ken", "Bearer wrong"]


async def test_an_answer_not_in_the_api_shape_is_an_error_not_a_crash() -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {"result": [{"metric": {}}]}})

    async with local_server("/api/v1/query", odd) as url:
        answer = await ask(PrometheusOptions(url=url))
    assert isinstance(answer, ProviderError)
    assert "unexpected answer from" in str(answer)


# ---------------------------------------------------------------- health


async def test_health_asks_prometheus_through_the_providers_session(
    provider: PrometheusProvider,
) -> None:
    await provider.health()


async def test_health_names_a_prometheus_that_cannot_be_reached() -> None:
    port = free_port()
    p = PrometheusProvider(PrometheusOptions(url=f"http://127.0.0.1:{port}", timeout=2))
    try:
        with pytest.raises(ProviderError, match=rf"cannot connect to http://127.0.0.1:{port}"):
            await p.health()
    finally:
        p.close()


async def test_health_uses_the_credentials_of_the_queries(secured: PrometheusServer) -> None:
    assert secured.web_config is not None
    ca = str(secured.web_config.cert_file)
    wrong = PrometheusProvider(
        PrometheusOptions(url=secured.url, username="canary", password="x", ca_file=ca)
    )
    right = PrometheusProvider(
        PrometheusOptions(url=secured.url, username="canary", password="s3cret-pass", ca_file=ca)
    )
    try:
        with pytest.raises(ProviderError, match="HTTP 401"):
            await wrong.health()
        await right.health()
    finally:
        wrong.close()
        right.close()


NGINX_502 = """<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.25.3</center>
</body>
</html>
"""


async def test_a_proxys_html_error_page_is_one_line_and_logged_whole_at_debug() -> None:
    async def gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text=NGINX_502, content_type="text/html")

    async with local_server("/api/v1/query", gateway) as url:
        with debug_logs() as logged:
            answer = await ask(PrometheusOptions(url=url))
    assert isinstance(answer, ProviderError)
    assert str(answer) == f"HTTP 502 from {url}: 502 Bad Gateway"
    assert [e["body"] for e in logged if e["event"] == "backend.error_body"] == [NGINX_502]
