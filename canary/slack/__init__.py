"""Slack: one live message and one thread per rollout (bot token), or one message per event
(incoming webhook); with a signing secret, Promote / Pause / Abort buttons on the message.

Built only when ``CANARY_SLACK_BOT_TOKEN`` or ``CANARY_SLACK_WEBHOOK_URL`` is set: a daemon
without either attempts nothing and says nothing about Slack. A spec that asks for Slack
(``notify.slack``) on such a daemon is refused when it is submitted, never accepted and
ignored; so is a channel in a spec sent to a webhook, which has a channel of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from canary.engine import Engine
from canary.observer import Observer
from canary.slack.actions import SlackActions
from canary.slack.notifier import Delivery, QueuedNotifier, SlackNotifier, WebhookNotifier
from canary.store.base import Store
from config.errors import Problem, SpecError
from config.settings import Settings
from config.spec import RolloutDocument

__all__ = [
    "Delivery",
    "QueuedNotifier",
    "SlackActions",
    "SlackNotifier",
    "WebhookNotifier",
    "build_actions",
    "build_notifier",
    "slack_checked",
]


def build_notifier(
    settings: Settings,
    store: Store,
    observer: Observer | None = None,
    delivery: Delivery | None = None,
) -> QueuedNotifier | None:
    """The Slack notifier these settings ask for, or None when Slack is not configured."""
    if settings.slack_webhook_url is not None:
        webhook = AsyncWebhookClient(
            settings.slack_webhook_url.get_secret_value(), timeout=10, retry_handlers=[]
        )
        return WebhookNotifier(
            webhook,
            mention=settings.slack_rollback_mention,
            observer=observer,
            delivery=delivery,
        )
    if settings.slack_bot_token is None or settings.slack_channel is None:
        return None
    return SlackNotifier(
        _web_client(settings),
        store,
        settings.slack_channel,
        mention=settings.slack_rollback_mention,
        observer=observer,
        delivery=delivery,
        buttons=settings.slack_signing_secret is not None,
    )


def build_actions(settings: Settings, engine: Engine) -> SlackActions | None:
    """What acts on button presses, or None when buttons are not configured."""
    if settings.slack_signing_secret is None or settings.slack_bot_token is None:
        return None
    return SlackActions(settings, engine, _web_client(settings))


def _web_client(settings: Settings) -> AsyncWebClient:
    assert settings.slack_bot_token is not None
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        retry_handlers=[],  # retries are the notifier's (tenacity), in one place
        timeout=10,
    )


def slack_checked(
    canonical: Callable[[RolloutDocument], RolloutDocument], settings: Settings
) -> Callable[[RolloutDocument], RolloutDocument]:
    """``canonical``, refusing ``notify.slack`` when this daemon has no Slack configured."""

    def check(document: RolloutDocument) -> RolloutDocument:
        slack = document.spec.notify.slack
        if slack is None:
            return canonical(document)
        if settings.slack_bot_token is None and settings.slack_webhook_url is None:
            raise SpecError(
                [
                    Problem(
                        "spec.notify.slack",
                        "this daemon has no Slack configured (CANARY_SLACK_BOT_TOKEN or "
                        "CANARY_SLACK_WEBHOOK_URL); remove notify.slack, or ask the operator "
                        "to configure Slack",
                    )
                ]
            )
        if slack.channel is not None and settings.slack_webhook_url is not None:
            raise SpecError(
                [
                    Problem(
                        "spec.notify.slack.channel",
                        "this daemon posts through an incoming webhook, which posts only to "
                        "the channel it was made for; remove channel",
                    )
                ]
            )
        return canonical(document)

    return check
