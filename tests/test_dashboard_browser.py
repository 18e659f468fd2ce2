"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against the daemon's app on a real socket.

What a person would notice: the list shows a running rollout and follows it live; a
rollout's page moves when its step changes, without a reload; an operate token's button
acts and the page shows the result; a token that may not is refused with the API's reason;
a read token sees everything and no buttons; the token never reaches a URL or
localStorage. Screenshots are saved as artefacts (``DASHBOARD_SCREENSHOTS``, else a
temporary directory).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_rig import TOKENS, spec_data
from dashboard_rig import CHROMIUM_DIRS, LiveDaemon
from helpers import lambda_target
from playwright import sync_api as playwright  # a pinned dev dependency: never skipped
from services import require_binary, wait_for

expect = playwright.expect

LONG = [{"weight": 10, "bake": "1h"}, {"weight": 50, "bake": "1h"}, {"weight": 100}]
FAST = {
    "interval": "1s",
    "gates": [{"name": "error-rate", "provider": "cloudwatch", "query": "errors", "max": 0.01}],
}
TIMEOUT = 10_000  # ms: how long an expectation waits for the page
expect.set_options(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def daemon() -> Iterator[LiveDaemon]:
    live = LiveDaemon()
    yield live
    live.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """One browser per test: Playwright's sync API runs an event loop in this thread while
    it is started, and each test's own loop (conftest's pending-task check) needs it gone."""
    chromium = require_binary("chromium", CHROMIUM_DIRS)
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("DASHBOARD_SCREENSHOTS")
    where = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def page(browser: Any, daemon: LiveDaemon) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on(
        "console", lambda m: errors.append(m.text) if m.type == "error" else None
    )  # a CSP violation is reported here
    yield opened
    context.close()
    expected = ("status of 401", "status of 403", "status of 409")  # refusals the page shows
    unexpected = [e for e in errors if not any(status in e for status in expected)]
    assert not unexpected, unexpected


def sign_in(page: Any, daemon: LiveDaemon, name: str, path: str = "/") -> None:
    page.goto(daemon.url + path)
    page.fill("#token", TOKENS[name][0])
    page.click("#login button[type=submit]")
    expect(page.locator("#who")).to_contain_text(f"{name} (role {TOKENS[name][1]})")


def test_the_list_shows_a_running_rollout_as_it_starts(
    page: Any, daemon: LiveDaemon, shots: Path
) -> None:
    sign_in(page, daemon, "reader")
    expect(page.locator("#stream-state")).to_contain_text("live")
    rollout = daemon.start("listed", steps=LONG, name="listed")  # after the page loaded
    row = page.locator(f"tr[data-id='{rollout['id']}']")
    expect(row).to_contain_text("listed")
    expect(row).to_contain_text("lambda-alias/us-east-1/listed/live")
    expect(row).to_contain_text("1 → 2")
    expect(row.locator(".step")).to_have_text("1/3")
    expect(row.locator(".weight")).to_have_text("10%")
    expect(row.locator("[data-phase]")).to_have_text("baking")
    expect(row).to_contain_text("ci")  # who started it
    page.screenshot(path=shots / "list.png")

    page.select_option("#phase-filter", "succeeded")
    expect(row).to_have_count(0)
    page.select_option("#phase-filter", "baking")
    expect(row).to_have_count(1)
    page.fill("#target-filter", "nothing-like-it")
    expect(row).to_have_count(0)
    page.fill("#target-filter", "listed")
    expect(row).to_have_count(1)

    status, _ = daemon.call("POST", f"/rollouts/{rollout['id']}/promote", "ana", {})
    assert status == 200
    expect(row.locator(".step")).to_have_text("2/3")  # through the stream, no reload
    expect(row.locator(".weight")).to_have_text("50%")


def test_a_rollouts_page_follows_its_step_without_a_reload(
    page: Any, daemon: LiveDaemon, shots: Path
) -> None:
    rollout = daemon.start("stepping", steps=LONG, analysis=FAST, name="stepping")
    sign_in(page, daemon, "reader", f"/#/rollouts/{rollout['id']}")
    expect(page.locator("#where")).to_contain_text("step 1/3 at 10%")
    expect(page.locator("#plan li[data-state=current]")).to_contain_text("10% · bake 1h")
    expect(page.locator("#where")).to_contain_text("left")
    page.evaluate("window.notReloaded = true")

    status, _ = daemon.call(
        "POST", f"/rollouts/{rollout['id']}/promote", "ana", {"reason": "looks good"}
    )
    assert status == 200
    expect(page.locator("#where")).to_contain_text("step 2/3 at 50%")
    expect(page.locator("#plan li[data-state=current]")).to_contain_text("50%")
    expect(page.locator("#plan li[data-state=done]")).to_have_count(1)
    command = page.locator("#events tr[data-kind='command.promote']")
    expect(command).to_contain_text("ana")  # who did it
    expect(command).to_contain_text("looks good")  # and why
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=shots / "rollout.png", full_page=True)


def test_an_operate_token_pauses_and_the_page_shows_it(page: Any, daemon: LiveDaemon) -> None:
    rollout = daemon.start("operated", steps=LONG, name="operated")
    sign_in(page, daemon, "ana", f"/#/rollouts/{rollout['id']}")
    page.fill("#reason", "checking a dashboard")
    page.click("button[data-command=pause]")
    expect(page.locator("#result")).to_have_text("pause: done; the rollout is now paused")
    expect(page.locator("h1 [data-phase]")).to_have_text("paused")
    expect(page.locator("#why")).to_contain_text("checking a dashboard")
    status, after = daemon.call("GET", f"/rollouts/{rollout['id']}", "reader")
    assert (status, after["phase"]) == (200, "paused")

    page.click("button[data-command=abort]")  # the reason typed is kept
    expect(page.locator("h1 [data-phase]")).to_have_text(re.compile("rolling_back|rolled_back"))
    expect(page.locator("button[data-command]")).to_have_count(0)  # nothing left to command


def test_a_token_that_may_not_operate_is_refused_with_the_reason(
    page: Any, daemon: LiveDaemon, shots: Path
) -> None:
    rollout = daemon.start("refused", steps=LONG, name="refused")
    sign_in(page, daemon, "ci", f"/#/rollouts/{rollout['id']}")
    expect(page.locator("#controls .note")).to_contain_text("need role operate")
    page.click("button[data-command=pause]")
    expect(page.locator("#result")).to_have_text(
        "pause refused: token 'ci' has role deploy; pause (a command) needs role operate "
        "(or higher: read < deploy < operate)"
    )
    page.screenshot(path=shots / "refused.png")
    status, after = daemon.call("GET", f"/rollouts/{rollout['id']}", "reader")
    assert (status, after["phase"]) == (200, "baking")


def test_a_read_token_sees_everything_and_no_buttons(page: Any, daemon: LiveDaemon) -> None:
    rollout = daemon.start("readonly", steps=LONG, name="readonly")
    sign_in(page, daemon, "reader", f"/#/rollouts/{rollout['id']}")
    expect(page.locator("#events tr[data-kind='traffic.shifted']")).to_have_count(1)
    expect(page.locator("#plan li")).to_have_count(3)
    expect(page.locator("button[data-command]")).to_have_count(0)
    expect(page.locator("#reason")).to_have_count(0)


def test_the_token_is_asked_for_checked_and_kept_in_the_tab_only(
    page: Any, daemon: LiveDaemon
) -> None:
    page.goto(daemon.url + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "not-a-token")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not one this daemon knows")
    sign_in(page, daemon, "ana")
    secret = TOKENS["ana"][0]
    assert secret not in page.url
    assert page.evaluate("window.localStorage.length") == 0
    assert page.evaluate("sessionStorage.getItem('canary.token')") == secret
    page.reload()  # the tab keeps it
    expect(page.locator("#who")).to_contain_text("ana (role operate)")
    page.click("#forget")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_quarantined_rollout_is_shown_with_why_and_only_abort_applies(
    page: Any, daemon: LiveDaemon
) -> None:
    rollout = daemon.start("quarantined", steps=LONG, name="quarantined")
    wait_for(
        lambda: daemon.call("GET", f"/rollouts/{rollout['id']}", "reader")[1]["phase"] == "baking",
        "the rollout to bake",
        timeout=10,
    )
    daemon.break_record(rollout["id"])
    sign_in(page, daemon, "ana", f"/#/rollouts/{rollout['id']}")
    expect(page.locator("#quarantine")).to_contain_text("Infinitys")
    expect(page.locator("#plan")).to_have_count(0)  # nothing drawn from a record in doubt
    expect(page.locator("#events tr[data-kind='bake.started']")).to_have_count(1)  # as stored
    page.click("button[data-command=pause]")
    expect(page.locator("#result")).to_contain_text("pause refused: ")
    page.fill("#reason", "bad record")
    page.click("button[data-command=abort]")
    expect(page.locator("#result")).to_contain_text("abort: done")


CHARTED = {
    "interval": "1s",
    "gates": [
        {"name": "error-rate", "provider": "cloudwatch", "query": "errors", "max": 0.01},
        {
            "name": "latency",
            "provider": "cloudwatch",
            "query": "latency",
            "stable_query": "latency",
            "relative": {"max_increase_percent": 50},
        },
    ],
}
FAILING = {
    "interval": "1s",
    "gates": [{"name": "errors-high", "provider": "cloudwatch", "query": "errors", "max": 0.01}],
}


def evaluations(daemon: LiveDaemon, rollout_id: str) -> list[dict[str, Any]]:
    status, page = daemon.call("GET", f"/rollouts/{rollout_id}/events", "reader")
    assert status == 200
    return [e for e in page["items"] if e["kind"] == "analysis.evaluated"]


def test_each_gate_is_charted_one_point_per_evaluation_with_its_threshold(
    page: Any, daemon: LiveDaemon, shots: Path
) -> None:
    steps = [{"weight": 20, "bake": "3s"}, {"weight": 100}]
    passing = daemon.start("charted", steps=steps, analysis=CHARTED, name="charted")
    failing = daemon.start("failing", steps=steps, analysis=FAILING, name="failing")
    sign_in(page, daemon, "reader", f"/#/rollouts/{passing['id']}")
    expect(page.locator("h1 [data-phase]")).to_have_text("succeeded", timeout=20_000)

    evaluated = evaluations(daemon, passing["id"])
    assert len(evaluated) >= 2
    errors = page.locator("svg[data-gate='error-rate']")
    expect(errors.locator("circle.point")).to_have_count(len(evaluated))
    expect(errors.locator("circle[data-verdict=pass]")).to_have_count(len(evaluated))
    expect(errors.locator("line[data-threshold='0.01']")).to_have_count(1)
    expect(errors.locator("[data-series=stable]")).to_have_count(0)  # compares with none
    latency = page.locator("svg[data-gate='latency']")
    expect(latency.locator("circle.point")).to_have_count(len(evaluated))
    expect(latency.locator("[data-series=stable]")).to_have_count(1)  # stable beside canary
    expect(latency.locator("[data-threshold=relative]")).to_have_count(1)
    seqs = errors.locator("circle.point").evaluate_all("cs => cs.map(c => Number(c.dataset.seq))")
    assert seqs == [e["seq"] for e in evaluated]
    page.screenshot(path=shots / "charts.png", full_page=True)

    page.goto(f"{daemon.url}/#/rollouts/{failing['id']}")
    expect(page.locator("h1 [data-phase]")).to_have_text("rolled_back", timeout=20_000)
    expect(page.locator("#why")).to_contain_text("errors-high")
    failed = evaluations(daemon, failing["id"])
    marks = page.locator("svg[data-gate='errors-high'] circle[data-verdict=fail]")
    expect(marks).to_have_count(
        len([e for e in failed if e["data"]["results"][0]["verdict"] == "FAIL"])
    )
    expect(marks).not_to_have_count(0)


def test_a_gate_judged_on_two_targets_gets_a_chart_per_target(
    page: Any, daemon: LiveDaemon
) -> None:
    data = spec_data("orders", steps=[{"weight": 20, "bake": "2s"}, {"weight": 100}], name="two")
    data["spec"]["targets"].append(lambda_target("orders-worker"))
    data["spec"]["analysis"] = {
        "interval": "1s",
        "gates": [
            {
                "name": "per-target",
                "provider": "cloudwatch",
                "query": "errors_{{ function }}",
                "max": 0.01,
            }
        ],
    }
    status, rollout = daemon.call("POST", "/rollouts", "ci", data)
    assert status == 201, rollout
    sign_in(page, daemon, "reader", f"/#/rollouts/{rollout['id']}")
    expect(page.locator("h1 [data-phase]")).to_have_text("succeeded", timeout=20_000)
    keys = [t["key"] for t in rollout["targets"]]
    for key in keys:
        figure = page.locator(f"figure[data-gate='per-target'][data-target='{key}']")
        expect(figure.locator("figcaption")).to_contain_text(f"per-target [{key}]")
        expect(figure.locator("circle[data-verdict=pass]")).not_to_have_count(0)
    expect(page.locator("figure[data-gate='per-target']")).to_have_count(2)


def test_the_demo_shows_both_rollouts_live_and_lingers_until_ctrl_c(page: Any, shots: Path) -> None:
    """``canary demo --linger``: the URL and a token are printed while the rollouts run, the
    page shows both rollouts as they go, and the daemon stays up until Ctrl-C. (That the
    demo without --linger ends on its own within 90 s: tests/aws/test_demo_and_cli.py.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CANARY_"))}
    demo = subprocess.Popen(
        [sys.executable, "-m", "canary", "demo", "--linger"],
        env=env | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in demo.stdout or ()])
    reader.start()

    def line_with(text: str, within: float = 60) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert demo.poll() is None, demo.stderr.read() if demo.stderr else ""
                continue
            if text in line:
                return line
        raise AssertionError(f"the demo never printed {text!r}")

    try:
        found = re.search(r"dashboard: (\S+) .*token once: (\S+),", line_with("dashboard:"))
        assert found is not None
        url, secret = found.groups()
        page.goto(url)
        page.fill("#token", secret)
        page.click("#login button[type=submit]")
        expect(page.locator("#who")).to_contain_text("demo (role operate)")
        a = page.locator("tr", has_text="demo-a")
        expect(a.locator("[data-phase]")).to_have_text(
            re.compile("pending|shifting|baking|promoting"), timeout=30_000
        )  # seen live, not only once it has ended
        expect(a.locator("[data-phase]")).to_have_text("succeeded", timeout=60_000)
        b = page.locator("tr", has_text="demo-b")
        expect(b.locator("[data-phase]")).to_have_text("rolled_back", timeout=60_000)
        line_with("until Ctrl-C")
        page.reload()  # still served after both have ended
        expect(page.locator("tr", has_text="demo-b")).to_have_count(1)
        page.screenshot(path=shots / "demo.png")
        page.goto("about:blank")  # a page left open would reconnect to the stopped daemon
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        line_with("demo: every outcome as expected", within=5)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        reader.join(10)
