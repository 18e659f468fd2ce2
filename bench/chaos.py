"""Crash chaos: ``kill -9`` the daemon at random moments while rollouts run, and check.

A pool of rollouts runs on Lambda aliases in moto's server (reached through the fault proxy
of ``tests/aws/faultproxy.py``, which with ``--faults`` also throttles, fails and times out
that share of the Lambda calls). Their metrics are scripted: every second the script
publishes each function's ``Invocations`` and ``Errors`` to moto's CloudWatch, split between
the versions as moto's alias routes them, which the daemon's real CloudWatch provider
reads; a *good* canary has no errors, a *bad* one 20%, a *late* one 50% once it takes half
of the traffic. ``canary serve`` runs as a subprocess
and is killed with SIGKILL at a random moment (now and then before it is even healthy),
``--kills`` times, then restarted. New rollouts are submitted through the API as old ones
end, so kills land in every phase.

After every kill, with the daemon dead and nothing moving, the store and moto are read
and every invariant checked:

* every rollout that was submitted is in the store;
* its phase agrees with the alias's real routing read from moto (pending: 0%; shifting:
  the old or the new weight; baking: its weight; succeeded: the canary is primary; ...);
* its events are numbered 1, 2, ... without a gap;
* no rollout is stuck: none paused or waiting for approval, none unchanged over
  ``STUCK_SECONDS`` of daemon uptime;
* no rollout was stored twice (a retried submit is the same rollout), none whose canary
  fails was ever promoted, and each rollback began at the step whose metrics fail;
* the daemon comes back healthy after every restart.

At the end, a last daemon runs the pool out, and every rollout must have ended as its
metrics dictate: the good ones succeeded (the canary serves everything), the bad and late
ones rolled back for a failed gate (the stable version serves everything).

    python bench/chaos.py --kills 50                 # SQLite
    python bench/chaos.py --kills 50 --faults 0.3    # and a flaky Lambda API
    python bench/chaos.py --store both               # SQLite, then PostgreSQL

Prints the kills survived and rollouts checked; exits 1 on any broken invariant (each one
is printed), 2 on a usage error. ``tests/aws/test_chaos.py`` runs a small N in ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
for _helpers in (ROOT / "tests", ROOT / "tests" / "aws"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

import boto3  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402

from canary.demo import create_function, moto_server  # noqa: E402
from canary.model import Phase, Rollout  # noqa: E402
from canary.store import NotFound, open_store  # noqa: E402

REGION = "us-east-1"
STABLE, CANARY = "1", "2"
KINDS = ("good", "bad", "late")
FAILS_AT = {"good": None, "bad": 10.0, "late": 50.0}  # the weight whose bake fails
STUCK_SECONDS = 45.0  # daemon uptime without any change to a live rollout
FINAL_SECONDS = 180.0  # for the last daemon to run the pool out
LEASE_TTL = 2.0  # PostgreSQL: seconds a killed replica's leases hold its rollouts
RATE = 100  # invocations per second of each function, shared as the alias routes them

# ---------------------------------------------------------------- what runs


@dataclass
class Plan:
    """One rollout: its function, what its metrics say, and what the store says of it."""

    number: int
    kind: str  # good, bad or late
    id: str | None = None
    seen: tuple[int, str] | None = None  # (version, phase) at the last check
    unchanged_for: float = 0.0  # daemon uptime since ``seen`` changed

    @property
    def function(self) -> str:
        return f"chaos{self.number}"

    @property
    def expected(self) -> Phase:
        return Phase.SUCCEEDED if self.kind == "good" else Phase.ROLLED_BACK

    def document(self) -> dict[str, Any]:
        return {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": self.function},
            "spec": {
                "targets": [
                    {
                        "kind": "lambda-alias",
                        "function": self.function,
                        "alias": "live",
                        "version": CANARY,
                    }
                ],
                "steps": [
                    {"weight": 10, "bake": "3s"},
                    {"weight": 50, "bake": "3s"},
                    {"weight": 100},
                ],
                "analysis": {
                    "interval": "1s",
                    "warmup": "0s",
                    "failure_limit": 0,
                    "gates": [
                        {
                            "name": "error-rate",
                            "provider": "cloudwatch",
                            "preset": "lambda-error-rate",
                            "max": 0.02,
                            "min_samples": 10,
                            "window": "1m",
                            "delay": "0s",  # moto has the data at once
                        }
                    ],
                },
            },
        }


@dataclass
class Report:
    store: str
    kills: int = 0
    restarts: int = 0
    checks: int = 0
    rollouts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    broken: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"store {self.store}: {self.kills} kills survived, {self.restarts} restarts, "
            f"{self.rollouts} rollouts checked ({self.checks} checks) in {self.seconds:.0f}s",
            "  outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(self.outcomes.items())),
        ]
        if self.faults:
            out.append(
                "  injected faults: "
                + ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
            )
        out += [f"  BROKEN: {line}" for line in self.broken]
        return out


# ---------------------------------------------------------------- moto and metrics


class Aws:
    """moto (direct, for the checks and the metrics) and the fault proxy the daemon uses."""

    def __init__(self, moto_url: str, proxy: FaultProxy) -> None:
        self.moto_url = moto_url
        self.proxy = proxy
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.lam = boto3.client("lambda", endpoint_url=moto_url, region_name=REGION, **creds)
        self.iam = boto3.client("iam", endpoint_url=moto_url, region_name=REGION, **creds)
        self.cw = boto3.client("cloudwatch", endpoint_url=moto_url, region_name=REGION, **creds)
        self.plans: list[Plan] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, name="metrics", daemon=True)

    def alias(self, function: str) -> tuple[str, dict[str, float]]:
        found = self.lam.get_alias(FunctionName=function, Name="live")
        weights = (found.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return str(found["FunctionVersion"]), {k: float(v) for k, v in weights.items()}

    def add(self, plan: Plan) -> None:
        create_function(self.lam, self.iam, plan.function, versions=2)
        with self._lock:
            self.plans.append(plan)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def retire(self, plan: Plan) -> None:
        """An ended rollout's function gets no more traffic."""
        with self._lock:
            if plan in self.plans:
                self.plans.remove(plan)

    def _publish(self) -> None:
        """Every second, each function's invocations and errors per version: the versions
        share ``RATE`` requests as the alias routes them, and the canary fails as its kind
        says (bad: 20%; late: 50% once it takes half of the traffic)."""
        while not self._stop.wait(1.0):
            with self._lock:
                plans = list(self.plans)
            data: list[dict[str, Any]] = []
            for plan in plans:
                try:
                    primary, weights = self.alias(plan.function)
                except Exception:  # a lost second of traffic is only that
                    continue
                share = 1.0 if primary == CANARY else weights.get(CANARY, 0.0)
                rate = {"good": 0.0, "bad": 0.2, "late": 0.5 if share >= 0.5 else 0.0}
                counts = {STABLE: (1 - share) * RATE, CANARY: share * RATE}
                errors = {STABLE: 0.0, CANARY: round(counts[CANARY] * rate[plan.kind])}
                for version, calls in counts.items():
                    dims = [
                        {"Name": "FunctionName", "Value": plan.function},
                        {"Name": "Resource", "Value": f"{plan.function}:live"},
                        {"Name": "ExecutedVersion", "Value": version},
                    ]
                    data += [
                        {"MetricName": "Invocations", "Dimensions": dims, "Value": round(calls)},
                        {"MetricName": "Errors", "Dimensions": dims, "Value": errors[version]},
                    ]
            for i in range(0, len(data), 500):
                with suppress(Exception):  # a lost second of metrics is only a lost second
                    self.cw.put_metric_data(Namespace="AWS/Lambda", MetricData=data[i : i + 500])


# ---------------------------------------------------------------- the daemon


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``canary serve`` subprocesses over one store, one at a time; logs to one file."""

    def __init__(self, workdir: Path, store_url: str, endpoint: str) -> None:
        self.log = workdir / "daemon.log"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CANARY_"))
        } | {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
            "CANARY_AWS_ENDPOINT_URL": endpoint,
            "CANARY_AWS_REGION": REGION,
            "CANARY_STORE_URL": store_url,
            "CANARY_LOG_FORMAT": "json",
            "CANARY_ALLOW_ANONYMOUS": "true",
        }
        if store_url.startswith("postgresql://"):
            # One replica at a time, killed every few seconds: a restarted replica waits
            # for the dead one's leases to lapse, so they are short here (the failover
            # tests run the default 15 s / 5 s).
            self.env |= {"CANARY_LEASE_TTL": str(LEASE_TTL), "CANARY_LEASE_RENEW": "0.5"}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.healthy_at: float | None = None
        self._out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        self.healthy_at = None
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "canary", "serve"],
            env=self.env | {"CANARY_LISTEN": f"127.0.0.1:{self.port}"},
            stdout=self._out,
            stderr=self._out,
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}")
            with suppress(OSError), urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                self.healthy_at = time.monotonic()
                return
            time.sleep(0.05)
        raise RuntimeError(f"the daemon was not healthy within {timeout:g}s")

    def uptime(self) -> float:
        return 0.0 if self.healthy_at is None else time.monotonic() - self.healthy_at

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._close()
        return code

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def submit(self, plan: Plan) -> str:
        """POST the plan's rollout (idempotent: the key is the plan's name)."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/rollouts",
            data=json.dumps(plan.document()).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": plan.function},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.loads(response.read())["id"])

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


# ---------------------------------------------------------------- the invariants


def canary_share(primary: str, weights: dict[str, float]) -> float | None:
    """The canary's share of the alias in percent; 1000 when it is the primary alone."""
    if primary == STABLE and not weights:
        return 0.0
    if primary == STABLE and set(weights) == {CANARY}:
        return round(weights[CANARY] * 100, 6)
    if primary == CANARY and not weights:
        return 1000.0
    return None


def agrees(r: Rollout, share: float | None) -> str | None:
    """Why the alias's routing does not fit the rollout's phase, or None when it does."""
    if share is None:
        return "a split canary never writes"
    target = r.targets[0]
    step = r.current_step.weight if r.step < len(r.spec.steps) else None
    allowed: set[float]
    match r.phase:
        case Phase.PENDING | Phase.ROLLED_BACK | Phase.FAILED:
            allowed = {0.0}
        case Phase.SHIFTING:
            allowed = {target.weight} | ({step} if step is not None else set())
        case Phase.BAKING | Phase.AWAITING_APPROVAL | Phase.PAUSED:
            allowed = {target.weight}
        case Phase.PROMOTING:
            allowed = {target.weight, 1000.0}
        case Phase.SUCCEEDED:
            allowed = {1000.0}
        case Phase.ROLLING_BACK | Phase.ROLLBACK_FAILED:
            allowed = {0.0, target.weight} | ({step} if step is not None else set())
            if target.restored:
                allowed = {0.0}
        case _:
            return f"unknown phase {r.phase}"
    if share in {round(w, 6) for w in allowed}:
        return None
    return "allowed: " + " or ".join(describe(w) for w in sorted(allowed))


def describe(share: float | None) -> str:
    return {None: "a third version", 1000.0: "the canary as primary"}.get(
        share, f"canary at {share:g}%"
    )


async def check(store_url: str, aws: Aws, plans: list[Plan], uptime: float, report: Report) -> None:
    """Every invariant over the frozen world (the daemon is dead)."""
    report.checks += 1
    store = open_store(store_url)
    try:
        for plan in plans:
            if plan.id is None:
                continue
            where = f"check {report.checks}: rollout {plan.function} ({plan.id})"
            try:
                r = await store.get(plan.id)
            except NotFound:
                report.broken.append(f"{where}: missing from the store")
                continue
            events = await store.events(plan.id, limit=100_000)
            seqs = [e.seq for e in events]
            if seqs != list(range(1, len(seqs) + 1)):
                report.broken.append(f"{where}: event sequence {seqs} has a gap")
            primary, weights = aws.alias(plan.function)
            share = canary_share(primary, weights)
            why = agrees(r, share)
            if why is not None:
                report.broken.append(
                    f"{where}: {r.phase} at step {r.step + 1} (recorded {r.targets[0].weight:g}%)"
                    f" but moto routes {describe(share)} ({primary} {weights}): {why}"
                )
            if r.phase in (Phase.PAUSED, Phase.AWAITING_APPROVAL, Phase.FAILED):
                report.broken.append(f"{where}: {r.phase}: {r.paused_reason or r.reason}")
            seen = (r.version, r.phase.value)
            if r.phase.live and seen == plan.seen:
                plan.unchanged_for += uptime
                if plan.unchanged_for > STUCK_SECONDS:
                    report.broken.append(
                        f"{where}: stuck in {r.phase} (version {r.version}) for "
                        f"{plan.unchanged_for:.0f}s of daemon uptime"
                    )
            else:
                plan.unchanged_for = 0.0
            plan.seen = seen
            if not r.phase.live:
                aws.retire(plan)
                if r.phase != plan.expected:
                    report.broken.append(
                        f"{where}: ended {r.phase}, its metrics dictate {plan.expected}: {r.reason}"
                    )
                elif (
                    r.phase == Phase.ROLLED_BACK
                    and getattr(r.cause, "value", None) != "gate_failed"
                ):
                    report.broken.append(f"{where}: rolled back for {r.cause}, not a failed gate")
            kinds = [e.kind for e in events]
            if plan.kind != "good" and "promotion.started" in kinds:
                report.broken.append(f"{where}: a failing canary was promoted")
            caught = [e.weight for e in events if e.kind == "rollback.started"]
            if caught and caught != [FAILS_AT[plan.kind]]:
                report.broken.append(
                    f"{where}: rolled back at {caught}%, its metrics fail at {FAILS_AT[plan.kind]}%"
                )
        stored = await store.list(limit=10_000)
        if len(stored) != len([p for p in plans if p.id is not None]):
            report.broken.append(
                f"check {report.checks}: the store holds {len(stored)} rollouts, "
                f"{len([p for p in plans if p.id is not None])} were submitted"
            )
    finally:
        await store.close()


# ---------------------------------------------------------------- the run


@dataclass
class Options:
    kills: int = 50
    store: str = "sqlite"
    pool: int = 6  # rollouts live at once
    faults: float = 0.0
    seed: int = 1
    postgresql_url: str | None = None
    quiet: bool = False
    uptime: float | None = None  # longest life of a daemon before its kill

    def longest(self, store_url: str) -> float:
        """A flaky API makes every call slower: a daemon killed every 2 s would never get
        a start through, which shows nothing, so lives are longer with faults."""
        if self.uptime is not None:
            return self.uptime
        # PostgreSQL: a restarted replica first waits for the killed one's leases to lapse,
        # then reads the targets back; a life that ends before that shows little.
        leases = 2 * LEASE_TTL + 1.0 if store_url.startswith("postgresql") else 0.0
        return (10.0 if self.faults else 3.0) + leases


@contextmanager
def world(options: Options) -> Iterator[Aws]:
    with moto_server() as moto_url:
        # moto keeps its state per process, not per server: start from nothing.
        urllib.request.urlopen(
            urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10
        ).close()
        proxy = FaultProxy(moto_url, options.faults, seed=options.seed).start()
        aws = Aws(moto_url, proxy)
        aws.start()
        try:
            yield aws
        finally:
            aws.stop()
            proxy.stop()


def run(options: Options, store_url: str, workdir: Path) -> Report:
    """One chaos run on one store; the report says what held and what broke."""
    report = Report(store=store_url.split(":", 1)[0].replace("postgresql", "PostgreSQL"))
    rng = random.Random(options.seed)
    started = time.monotonic()
    with world(options) as aws:
        daemon = Daemon(workdir, store_url, aws.proxy.url)
        plans: list[Plan] = []

        def say(text: str) -> None:
            if not options.quiet:
                print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

        def top_up() -> None:
            live = [p for p in plans if p.seen is None or Phase(p.seen[1]).live]
            for _ in range(options.pool - len(live)):
                plan = Plan(len(plans) + 1, KINDS[len(plans) % len(KINDS)])
                aws.add(plan)
                plan.id = daemon.submit(plan)
                plans.append(plan)

        def healthy() -> bool:
            try:
                daemon.wait_healthy()
                return True
            except RuntimeError as exc:
                report.broken.append(f"restart {report.restarts}: {exc}; log:\n{daemon.tail()}")
                return False

        daemon.start()
        if not healthy():
            return report
        top_up()
        while report.kills < options.kills and not report.broken:
            early = rng.random() < 0.15  # now and then during start-up, before healthy
            if early:
                time.sleep(rng.uniform(0.0, 1.0))
            else:
                time.sleep(rng.uniform(0.2, options.longest(store_url)))
            uptime = daemon.uptime()
            daemon.kill9()
            report.kills += 1
            asyncio.run(check(store_url, aws, plans, uptime, report))
            say(
                f"kill {report.kills}{' (starting)' if early else ''}: "
                + ", ".join(
                    f"{phase} {n}"
                    for phase, n in sorted(Counter(p.seen[1] for p in plans if p.seen).items())
                )
            )
            daemon.start()
            report.restarts += 1
            if early and rng.random() < 0.5:
                continue  # killed again before it is healthy
            if not healthy():
                break
            with suppress(OSError):  # killed mid-submit is a broken invariant elsewhere
                top_up()
        if not report.broken:
            # The last daemon runs every rollout out; nothing is submitted any more.
            try:
                daemon.wait_healthy()
            except RuntimeError as exc:
                report.broken.append(f"the last daemon: {exc}; log:\n{daemon.tail()}")
            deadline = time.monotonic() + FINAL_SECONDS
            while time.monotonic() < deadline:
                if asyncio.run(all_ended(store_url, plans)):
                    break
                time.sleep(0.5)
        uptime = daemon.uptime()
        code = daemon.stop()
        if code != 0 and not report.broken:
            report.broken.append(f"the last daemon exited {code} on SIGTERM")
        asyncio.run(check(store_url, aws, plans, uptime, report))
        ended = asyncio.run(final(store_url, plans))
        for plan, phase in ended:
            report.outcomes[f"{plan.kind}:{phase}"] += 1
            if phase.live:
                report.broken.append(
                    f"rollout {plan.function} ({plan.id}) still {phase} after the last daemon"
                    f" ran {FINAL_SECONDS:g}s"
                )
        report.rollouts = len(plans)
        report.faults = Counter(aws.proxy.injected)
    report.seconds = time.monotonic() - started
    return report


async def all_ended(store_url: str, plans: list[Plan]) -> bool:
    return all(not phase.live for _, phase in await final(store_url, plans))


async def final(store_url: str, plans: list[Plan]) -> list[tuple[Plan, Phase]]:
    store = open_store(store_url)
    try:
        return [(p, (await store.get(p.id)).phase) for p in plans if p.id is not None]
    finally:
        await store.close()


@contextmanager
def store_urls(options: Options, workdir: Path) -> Iterator[list[str]]:
    """The stores to run on; for PostgreSQL without ``--postgresql-url``, a server of our
    own from Debian's binaries (tests/pgserver.py), removed afterwards."""
    urls: list[str] = []
    if options.store in ("sqlite", "both"):
        urls.append(f"sqlite:///{workdir / 'canary.db'}")
    if options.store in ("postgresql", "both"):
        if options.postgresql_url is not None:
            urls.append(options.postgresql_url)
        else:
            from pgserver import PgServer

            server = PgServer().start()
            try:
                yield [*urls, server.database()]
            finally:
                server.stop()
            return
    yield urls


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="kill -9 this many times (50)")
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--pool", type=int, default=6, help="rollouts live at once (6)")
    parser.add_argument(
        "--faults", type=float, default=0.0, help="share of Lambda calls to fault (0.3 = 30%%)"
    )
    parser.add_argument(
        "--uptime",
        type=float,
        help="longest life of a daemon before its kill, seconds (3; 10 with --faults; "
        "5 more on PostgreSQL, whose restarted replica waits for the killed one's leases)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--postgresql-url",
        default=os.environ.get("CANARY_CHAOS_POSTGRESQL_URL"),
        help="an empty database for --store postgresql; default: a server of its own from "
        "the PostgreSQL binaries (initdb, postgres)",
    )
    parser.add_argument("--quiet", action="store_true", help="only the report")
    args = parser.parse_args(argv)
    if args.kills < 0 or args.pool < 1 or not 0 <= args.faults < 1:
        parser.error("--kills >= 0, --pool >= 1, 0 <= --faults < 1")
    return Options(
        kills=args.kills,
        store=args.store,
        pool=args.pool,
        faults=args.faults,
        seed=args.seed,
        postgresql_url=args.postgresql_url,
        quiet=args.quiet,
        uptime=args.uptime,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    broken = False
    with (
        tempfile.TemporaryDirectory(prefix="canary-chaos-") as tmp,
        store_urls(options, Path(tmp)) as urls,
    ):
        for url in urls:
            report = run(options, url, Path(tmp))
            print("\n".join(report.lines()), flush=True)
            broken = broken or bool(report.broken)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
