"""The daemon's hook callers, built from its settings, and the submit-time check on them.

A rollout whose hooks name a kind this daemon cannot run (a webhook without
``CANARY_WEBHOOK_SECRET``, a prometheus-alert without ``CANARY_PROMETHEUS_URL``) is refused
when it is submitted, naming the hook and the setting, rather than collecting ERROR
verdicts once traffic has moved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from analysis.hooks.kind import HookCaller
from analysis.hooks.registry import BY_NAME, HOOKS
from config.errors import Problem, SpecError
from config.settings import Settings
from config.spec import RolloutDocument


def build_hooks(settings: Settings, clients: Any) -> tuple[dict[str, HookCaller], dict[str, str]]:
    """The callers this daemon's settings turn on, by kind; and, for the others, the
    setting that turns each on."""
    callers: dict[str, HookCaller] = {}
    missing: dict[str, str] = {}
    for kind in HOOKS:
        caller = kind.build(settings, clients.get(kind.clients))
        if caller is None:
            missing[kind.name] = kind.unconfigured
        else:
            callers[kind.name] = caller
    return callers, missing


def scripted(settings: Settings) -> bool:
    """CANARY_STRATEGIES=memory with a scenario: hooks are answered by the scenario."""
    return settings.strategies == "memory" and settings.scenario is not None


async def close_hooks(callers: Mapping[str, Any]) -> None:
    for caller in callers.values():
        close = getattr(caller, "close", None)
        if close is not None:
            await close()


def hooks_checked(
    canonical: Callable[[RolloutDocument], RolloutDocument], settings: Settings
) -> Callable[[RolloutDocument], RolloutDocument]:
    """``canonical``, refusing hooks of a kind this daemon's settings do not turn on."""

    def check(document: RolloutDocument) -> RolloutDocument:
        if document.spec.hooks and not scripted(settings):
            found = []
            for index, hook in enumerate(document.spec.hooks):
                kind = BY_NAME[hook.kind]
                if kind.unconfigured and kind.build(settings, None) is None:
                    found.append(
                        Problem(
                            f"spec.hooks[{index}].kind",
                            f"this daemon cannot run {hook.kind} hooks: {kind.unconfigured}; "
                            "remove the hook, or ask the operator to configure it",
                        )
                    )
            if found:
                raise SpecError(found)
        return canonical(document)

    return check
