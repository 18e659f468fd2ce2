"""Slack: one live message and one thread per rollout (bot-token mode).

Built only when ``CANARY_SLACK_BOT_TOKEN`` is set: a daemon without it attempts nothing and
says nothing about Slack. A spec that asks for Slack (``notify.slack``) on such a daemon is
refused when it is submitted, never accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable

from slack_sdk.web.async_client import AsyncWebClient

from canary.observer import Observer
from canary.slack.notifier import Delivery, SlackNotifier
from canary.store.base import Store
from config.errors import Problem, SpecError
from config.settings import Settings
from config.spec import RolloutDocument

__all__ = ["Delivery", "SlackNotifier", "build_notifier", "slack_checked"]


def build_notifier(
    settings: Settings,
    store: Store,
    observer: Observer | None = None,
    delivery: Delivery | None = None,
) -> SlackNotifier | None:
    """The Slack notifier these settings ask for, or None when Slack is not configured."""
    if settings.slack_bot_token is None or settings.slack_channel is None:
        return None
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        retry_handlers=[],  # retries are the notifier's (tenacity), in one place
        timeout=10,
    )
    return SlackNotifier(
        client,
        store,
        settings.slack_channel,
        mention=settings.slack_rollback_mention,
        observer=observer,
        delivery=delivery,
    )


def slack_checked(
    canonical: Callable[[RolloutDocument], RolloutDocument], settings: Settings
) -> Callable[[RolloutDocument], RolloutDocument]:
    """``canonical``, refusing ``notify.slack`` when this daemon has no Slack configured."""

    def check(document: RolloutDocument) -> RolloutDocument:
        if document.spec.notify.slack is not None and settings.slack_bot_token is None:
            raise SpecError(
                [
                    Problem(
                        "spec.notify.slack",
                        "this daemon has no Slack configured (CANARY_SLACK_BOT_TOKEN and "
                        "CANARY_SLACK_CHANNEL); remove notify.slack, or ask the operator to "
                        "configure Slack",
                    )
                ]
            )
        return canonical(document)

    return check
