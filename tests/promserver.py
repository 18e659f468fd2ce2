"""A real Prometheus server, and a small app for it to scrape, for the integration tests.

``TrafficApp`` serves ``/metrics`` (aiohttp + prometheus_client) for any number of versions
of a service, each with its own request rate, error rate and latency, which a test may
change at any time or tie to a rollout's traffic weight. It records synthetic requests on a
short tick, so the counters and histograms move the way a real service's would, and
Prometheus computes ``rate()`` and ``histogram_quantile()`` over them for real.

``PrometheusServer`` runs the ``prometheus`` binary on a free port with a temporary
config and data directory (scrape interval 1s), optionally behind TLS and basic auth, and
waits for readiness and for the app's data to appear rather than sleeping.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import requests
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from services import free_port, require_binary, wait_for

Level = float | Callable[[], float]
# Fine buckets so histogram_quantile() is accurate to a few hundredths of a second.
BUCKETS = (*(round(0.025 * i, 3) for i in range(1, 41)), 1.5, 2.0, 3.0, 5.0)


def level(value: Level) -> float:
    return value() if callable(value) else value


@dataclass
class Behaviour:
    """How one version behaves: requests per second, share of 5xx, median latency (s)."""

    rps: Level = 0.0
    error_rate: Level = 0.0
    latency: Level = 0.1
    _owed: float = field(default=0.0, repr=False)  # fractional requests carried over


class TrafficApp:
    """Synthetic traffic for several versions, exported on ``/metrics`` from its own thread."""

    def __init__(self, seed: int = 7, tick: float = 0.05) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests", ["version", "code"], registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["version"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.versions: dict[str, Behaviour] = {}
        self.tick = tick
        self._random = random.Random(seed)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="traffic-app", daemon=True)

    def serve(self, version: str, behaviour: Behaviour) -> Behaviour:
        """Start (or replace) a version's traffic; returns the live behaviour to change."""
        with self._lock:
            self.versions[version] = behaviour
        return behaviour

    def start(self) -> TrafficApp:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the traffic app did not start within 30s")
        return self

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(30)
        self._sock.close()

    # -- inside the app's thread

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._started.set()
        last = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            self._record(now - last)
            last = now
        await runner.cleanup()

    def _record(self, elapsed: float) -> None:
        with self._lock:
            versions = list(self.versions.items())
        for version, b in versions:
            b._owed += max(0.0, level(b.rps)) * elapsed
            count = int(b._owed)
            b._owed -= count
            error_rate, median = level(b.error_rate), level(b.latency)
            for _ in range(count):
                code = "500" if self._random.random() < error_rate else "200"
                self.requests.labels(version, code).inc()
                self.duration.labels(version).observe(median * self._random.lognormvariate(0, 0.2))


@dataclass
class WebConfig:
    """Prometheus' --web.config.file: TLS and basic auth in front of its HTTP API."""

    cert_file: Path
    key_file: Path
    username: str
    password: str


class PrometheusServer:
    """The real ``prometheus`` binary scraping ``targets`` every second."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        web_config: WebConfig | None = None,
        rules: list[dict[str, Any]] | None = None,
    ) -> None:
        self.binary = require_binary("prometheus")
        self.workdir = workdir
        self.targets = targets
        self.web_config = web_config
        self.rules = rules  # alerting rules (one group), evaluated every second
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        scheme = "https" if self.web_config else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _write_config(self) -> list[str]:
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [{"job_name": "app", "static_configs": [{"targets": self.targets}]}],
        }
        if self.rules:
            rules_path = self.workdir / "rules.yml"
            rules_path.write_text(yaml.safe_dump({"groups": [{"name": "t", "rules": self.rules}]}))
            config["rule_files"] = [str(rules_path)]
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        args = [f"--config.file={path}"]
        if self.web_config is not None:
            w = self.web_config
            web = {
                "tls_server_config": {"cert_file": str(w.cert_file), "key_file": str(w.key_file)},
                "basic_auth_users": {
                    w.username: bcrypt.hashpw(w.password.encode(), bcrypt.gensalt(4)).decode()
                },
            }
            web_path = self.workdir / "web.yml"
            web_path.write_text(yaml.safe_dump(web))
            args.append(f"--web.config.file={web_path}")
        return args

    def start(self) -> PrometheusServer:
        args = self._write_config()
        for _attempt in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port()
            log = self.log.open("ab")
            self.process = subprocess.Popen(
                [
                    self.binary,
                    *args,
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            if self._wait_ready():
                return self
        raise RuntimeError(f"prometheus did not start; its log:\n{self.log.read_text()[-3000:]}")

    def _wait_ready(self, timeout: float = 60.0) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                response = self.get("/-/ready", timeout=2)
                if response.status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        return False

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        if self.web_config is not None:
            kwargs.setdefault("verify", str(self.web_config.cert_file))
            kwargs.setdefault("auth", (self.web_config.username, self.web_config.password))
        return requests.get(self.url + path, **kwargs)

    def query(self, promql: str) -> list[Any]:
        response = self.get("/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        result: list[Any] = response.json()["data"]["result"]
        return result

    def wait_for_series(self, promql: str, what: str, timeout: float = 60.0) -> list[Any]:
        """Poll until ``promql`` returns something: the scrapes have landed."""
        return wait_for(lambda: self.query(promql) or None, what, timeout=timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
