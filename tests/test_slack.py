"""Slack bot-token mode: real rollouts (engine, machine, in-memory targets, scripted metrics,
virtual time) posted through the real slack_sdk to a local double of Slack's Web API.

What a team in the channel sees: one message per rollout, updated in place, with a thread
of its events in order; Slack's trouble (429, 5xx, a dead Slack) never changes what the
rollout does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from api_rig import ApiRig, auth, spec_data, token_specs
from helpers import T0, document, lambda_target
from slackdouble import Posted, SlackDouble
from structlog.testing import capture_logs
from test_metrics import sample

from analysis.base import Measurement, MetricQuery, ProviderError
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.machine import Command
from canary.metrics import Metrics
from canary.model import Event, Phase, Rollout
from canary.simulate import drive
from canary.slack import Delivery, QueuedNotifier, WebhookNotifier, build_notifier
from canary.slack.render import reply
from canary.store import MemoryStore, SQLiteStore, Store
from config.settings import Settings
from config.spec import RolloutDocument
from strategies.memory import MemoryFleet

TOKEN = "xoxb-test-token"
GATES = {
    "interval": "30s",
    "gates": [{"name": "error-rate", "provider": "cloudwatch", "query": "errors", "max": 0.01}],
}


def healthy(q: MetricQuery) -> Measurement | ProviderError:
    return Measurement(0.002, 1000)


def errors_at_25(q: MetricQuery) -> Measurement | ProviderError:
    return Measurement(0.05 if q.weight >= 25 else 0.002, 1000)


class Waits:
    """tenacity's sleep: records what it was asked to wait, waits nothing (no timed tests)."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)

    @property
    def waited(self) -> float:
        return sum(self.asked)


@pytest.fixture
async def slack() -> AsyncIterator[SlackDouble]:
    async with SlackDouble(TOKEN) as double:
        yield double


def settings(double: SlackDouble, **extra: Any) -> Settings:
    if extra.pop("webhook", False):
        return Settings(slack_webhook_url=double.webhook_url, **extra)
    return Settings(
        slack_bot_token=TOKEN,
        slack_channel="#deploys",
        slack_api_url=double.api_url,
        **extra,
    )


class Rig:
    def __init__(
        self,
        double: SlackDouble | None,
        script: Any = healthy,
        store: Store | None = None,
        clock: VirtualClock | None = None,
        fleet: MemoryFleet | None = None,
        **extra: Any,
    ) -> None:
        self.clock = clock or VirtualClock(T0)
        self.store = store or MemoryStore()
        self.metrics = Metrics()
        self.waits = Waits()
        self.notifier: QueuedNotifier | None = None
        if double is not None:
            self.notifier = build_notifier(
                settings(double, **extra),
                self.store,
                self.metrics,
                Delivery(sleep=self.waits),
            )
        provider = ScriptedProvider(script)
        self.engine = Engine(
            self.store,
            self.clock,
            (fleet or MemoryFleet(stable="1")).factory,
            {"cloudwatch": provider},
            notifiers=[self.notifier] if self.notifier else [],
            options=EngineOptions(step_retry=1.0),
            observer=self.metrics,
        )

    async def run(self, *docs: RolloutDocument) -> list[Rollout]:
        await self.engine.start()
        ids = [(await self.engine.submit(d, actor="ci")).id for d in docs]
        await drive(self.engine, self.clock)
        await self.engine.stop()
        return [await self.store.get(i) for i in ids]

    def failures(self) -> float:
        """canary_notification_failures_total for Slack; 0 before the first failure."""
        try:
            name = type(self.notifier).__name__
            return sample(self.metrics, "canary_notification_failures_total", notifier=name)
        except AssertionError:
            return 0.0


def replies(double: SlackDouble, parent: Posted) -> list[str]:
    return [m.text for m in double.thread(parent)]


def plan(*weights: int) -> list[dict[str, Any]]:
    return [{"weight": w, "bake": "1m"} for w in weights]


async def test_one_message_per_rollout_updated_in_place_with_a_thread_in_order(
    slack: SlackDouble,
) -> None:
    rig = Rig(slack)
    (r,) = await rig.run(document(analysis=GATES, steps=plan(10, 50, 100)))

    assert r.phase == Phase.SUCCEEDED
    (message,) = slack.top_level()
    assert message.channel == "C0DEPLOYS"
    assert message.updates > 0, "the message is updated in place, not posted again"
    assert message.text.startswith("checkout: succeeded")
    shown = message.shown
    assert "`■■■` step 3/3 · 100%" in shown
    assert "• `lambda-alias/default-region/checkout/live` 1 → 2" in shown, "stable → canary"
    assert ":large_green_circle: *error-rate* PASS: 0.002" in shown
    thread = replies(slack, message)
    assert thread[0].startswith(":rocket: Started")
    assert [t for t in thread if "Step" in t] == [
        ":arrow_right: Step 1 reached: 10%",
        ":arrow_right: Step 2 reached: 50%",
        ":arrow_right: Step 3 reached: 100%",
    ]
    assert thread[-1].startswith(":white_check_mark: Promoted")
    assert rig.failures() == 0
    for method, body in slack.calls:  # Slack's contract, as the double checked it
        assert body["blocks"]
        assert body["text"]
        if method == "chat.update":
            assert (body["channel"], body["ts"]) == ("C0DEPLOYS", message.ts)


async def test_a_failed_gate_and_the_rollback_are_told_with_their_values(
    slack: SlackDouble,
) -> None:
    rig = Rig(slack, errors_at_25)
    doc = document(analysis=GATES, steps=plan(10, 25, 100))
    (r,) = await rig.run(doc)

    assert r.phase == Phase.ROLLED_BACK
    (message,) = slack.top_level()
    thread = replies(slack, message)
    failed = [t for t in thread if "*error-rate* FAIL" in t]
    assert "at 25%: 0.05" in failed[0]
    assert thread[-1].startswith(":leftwards_arrow_with_hook: Rolled back (gate_failed)")
    assert "rolled back" in message.text
    assert ":red_circle: *error-rate* FAIL: 0.05" in message.shown


async def test_rollouts_at_once_each_keep_to_their_own_thread_and_channel(
    slack: SlackDouble,
) -> None:
    rig = Rig(slack)
    a = document(analysis=GATES, steps=plan(10, 100), name="checkout")
    b = document(
        analysis=GATES,
        steps=plan(5, 20, 60, 100),
        targets=[lambda_target("payments")],
        name="payments",
    )
    b = b.model_copy(
        update={
            "spec": b.spec.model_copy(
                update={"notify": b.spec.notify.model_validate({"slack": {"channel": "#payments"}})}
            )
        }
    )
    await rig.run(a, b)

    by_name = {m.text.split(":")[0]: m for m in slack.top_level()}
    assert set(by_name) == {"checkout", "payments"}
    assert by_name["checkout"].channel == "C0DEPLOYS"
    assert by_name["payments"].channel == "C0PAYMENT"
    steps = {name: [t for t in replies(slack, m) if "Step" in t] for name, m in by_name.items()}
    assert steps["checkout"] == [
        f":arrow_right: Step {n} reached: {w}%" for n, w in [(1, 10), (2, 100)]
    ]
    assert steps["payments"] == [
        f":arrow_right: Step {n} reached: {w}%" for n, w in [(1, 5), (2, 20), (3, 60), (4, 100)]
    ]


async def test_a_429_waits_as_long_as_slack_asks_then_delivers(slack: SlackDouble) -> None:
    slack.fail(429, times=2, headers={"Retry-After": "7"})
    rig = Rig(slack)
    await rig.run(document(analysis=GATES, steps=plan(10, 100)))

    assert rig.waits.asked[:2] == [7.0, 7.0]
    (message,) = slack.top_level()
    assert "succeeded" in message.text
    assert replies(slack, message)[0].startswith(":rocket: Started")
    assert rig.failures() == 0


async def test_5xx_and_network_errors_are_retried_with_backoff(slack: SlackDouble) -> None:
    slack.fail(500, times=1)
    slack.fail(502, times=2)
    rig = Rig(slack)
    await rig.run(document(analysis=GATES, steps=plan(10, 100)))

    assert rig.waits.asked[:3] == [1.0, 2.0, 4.0]
    assert len(slack.top_level()) == 1
    assert rig.failures() == 0


async def test_a_refused_call_is_not_retried_and_is_counted(slack: SlackDouble) -> None:
    slack.token = "xoxb-another-workspace"  # ours is refused: invalid_auth
    rig = Rig(slack)
    with capture_logs() as logs:
        await rig.run(document(analysis=GATES, steps=plan(10, 100)))

    assert rig.waits.asked == []
    assert rig.failures() > 0
    failed = [e for e in logs if e["event"] == "slack.failed"]
    assert failed[0]["error"] == "HTTP 200: invalid_auth"
    assert TOKEN not in repr(logs), "the token never reaches the log"


async def test_a_restarted_daemon_keeps_updating_the_same_message(
    slack: SlackDouble, tmp_path: Path
) -> None:
    doc = document(
        analysis=GATES, steps=[{"weight": 10, "bake": "1m", "approval": True}, {"weight": 100}]
    )
    clock, fleet = VirtualClock(T0), MemoryFleet(stable="1")  # what outlives the daemon
    first = Rig(slack, store=SQLiteStore(tmp_path / "canary.db"), clock=clock, fleet=fleet)
    await first.engine.start()
    r = await first.engine.submit(doc, actor="ci")
    await drive(first.engine, clock)
    await first.engine.stop()
    await first.store.close()
    (message,) = slack.top_level()
    assert "awaiting approval" in message.text
    before = len(replies(slack, message))

    second = Rig(slack, store=SQLiteStore(tmp_path / "canary.db"), clock=clock, fleet=fleet)
    try:
        await second.engine.start()
        await second.engine.command(r.id, Command("promote", "ana"))
        await drive(second.engine, clock)
        await second.engine.stop()
    finally:
        await second.store.close()

    assert slack.top_level() == [message], "no second message after the restart"
    assert "succeeded" in message.text
    after = replies(slack, message)[before:]
    assert after[0] == ":bust_in_silhouette: Promote by ana"
    assert after[-1].startswith(":white_check_mark: Promoted")
    assert "promote by ana" in message.shown


async def test_slack_down_for_the_whole_rollout_changes_nothing_in_it(
    slack: SlackDouble,
) -> None:
    def run_of(events: Sequence[Event]) -> list[tuple[str, object, int, float]]:
        return [(e.kind, e.at, e.step, e.weight) for e in events]

    doc = document(analysis=GATES, steps=plan(10, 25, 100))
    healthy_rig = Rig(slack, errors_at_25)
    (well,) = await healthy_rig.run(doc)
    slack.down = True
    down_rig = Rig(slack, errors_at_25)
    with capture_logs() as logs:
        (down,) = await down_rig.run(doc)

    assert down.phase == well.phase == Phase.ROLLED_BACK
    assert down.updated_at == well.updated_at
    assert run_of(await down_rig.store.events(down.id)) == run_of(
        await healthy_rig.store.events(well.id)
    )
    assert down_rig.failures() > 0
    assert any(e["event"] == "slack.failed" and e["error"] == "HTTP 503" for e in logs)


async def test_without_slack_settings_nothing_is_attempted_and_nothing_logged(
    slack: SlackDouble,
) -> None:
    assert build_notifier(Settings(), MemoryStore()) is None
    rig = Rig(None)
    with capture_logs() as logs:
        (r,) = await rig.run(document(analysis=GATES, steps=plan(10, 100)))

    assert r.phase == Phase.SUCCEEDED
    assert slack.calls == []
    assert not [e for e in logs if "slack" in e["event"] or e["log_level"] == "error"]


async def test_a_spec_asking_for_slack_on_a_daemon_without_it_is_refused() -> None:
    async with ApiRig() as rig:
        data = spec_data()
        data["spec"]["notify"] = {"slack": {"channel": "#deploys"}}
        response = await rig.client.post("/api/v1/rollouts", json=data, headers=auth("ci"))
        assert response.status == 422
        body = await response.json()
        assert {e["path"]: e["message"] for e in body["errors"]} == {
            "spec.notify.slack": "this daemon has no Slack configured (CANARY_SLACK_BOT_TOKEN or "
            "CANARY_SLACK_WEBHOOK_URL); remove notify.slack, or ask the operator to configure "
            "Slack"
        }
        assert await rig.store.list() == []


# ---------------------------------------------------------------- incoming-webhook mode


async def test_a_webhook_gets_one_message_per_event_naming_its_rollout(
    slack: SlackDouble,
) -> None:
    rig = Rig(slack, errors_at_25, webhook=True)
    assert isinstance(rig.notifier, WebhookNotifier)
    (r,) = await rig.run(document(analysis=GATES, steps=plan(10, 25, 100)))

    assert r.phase == Phase.ROLLED_BACK
    texts = [m.text for m in slack.webhook_posts]
    assert texts[0].startswith("checkout: :rocket: Started")
    assert "checkout: :arrow_right: Step 2 reached: 25%" in texts
    assert any("*error-rate* FAIL at 25%: 0.05" in t for t in texts)
    assert texts[-1].startswith("checkout: :leftwards_arrow_with_hook: Rolled back (gate_failed)")
    assert all(f"rollout `{r.id}`" in m.shown for m in slack.webhook_posts)
    assert slack.messages == [], "no Web API call in webhook mode"


async def test_the_webhook_down_for_a_minute_loses_no_event(slack: SlackDouble) -> None:
    rig = Rig(slack, webhook=True)
    slack.webhook_down = lambda: rig.waits.waited < 60  # the retries' time is the outage's
    with capture_logs() as logs:
        (r,) = await rig.run(document(analysis=GATES, steps=plan(10, 50, 100)))

    assert rig.waits.waited >= 60
    told = [reply(e) for e in await rig.store.events(r.id)]
    expected = [f"checkout: {m.text}" for m in told if m is not None]
    assert [m.text for m in slack.webhook_posts] == expected, "every event, once, in order"
    assert [t.split(": ", 1)[1][:20] for t in expected] == [
        ":rocket: Started: la",
        ":arrow_right: Step 1",
        ":arrow_right: Step 2",
        ":arrow_right: Step 3",
        ":white_check_mark: P",
    ]
    assert rig.failures() == 0
    assert not [e for e in logs if e["event"] == "slack.failed"]
    assert slack.webhook_path not in repr(logs)


async def test_a_dead_webhook_is_counted_and_its_url_never_logged(slack: SlackDouble) -> None:
    rig = Rig(slack, webhook=True)
    slack.webhook_path = "/services/T0TEAM/B0HOOK/another"  # ours is revoked: 404 no_service
    with capture_logs() as logs:
        (r,) = await rig.run(document(analysis=GATES, steps=plan(10, 100)))

    assert r.phase == Phase.SUCCEEDED
    assert rig.waits.asked == [], "a 404 is not retried"
    assert rig.failures() > 0
    failed = [e for e in logs if e["event"] == "slack.failed"]
    assert failed[0]["error"] == "HTTP 404: no_service"
    assert "s3cr3tw3bh00k" not in repr(logs), "the webhook URL is a secret"


async def test_a_spec_naming_a_channel_for_a_webhook_is_refused(slack: SlackDouble) -> None:
    daemon = Settings(tokens=token_specs(), slack_webhook_url=slack.webhook_url)
    async with ApiRig(settings=daemon) as rig:
        data = spec_data()
        data["spec"]["notify"] = {"slack": {"channel": "#payments"}}
        response = await rig.client.post("/api/v1/rollouts", json=data, headers=auth("ci"))
        assert response.status == 422
        body = await response.json()
        assert {e["path"]: e["message"] for e in body["errors"]} == {
            "spec.notify.slack.channel": "this daemon posts through an incoming webhook, which "
            "posts only to the channel it was made for; remove channel"
        }
        data["spec"]["notify"] = {"slack": {}}
        response = await rig.client.post("/api/v1/rollouts", json=data, headers=auth("ci"))
        assert response.status == 201
