"""Every hook kind this canary can run: one line per kind, everything else derived.

From ``HOOKS`` come the spec's union of hooks (``config.spec``), the daemon settings of each
kind (``config.settings``), the callers the daemon builds (``canary.daemon``) and the
README's table of hook kinds. To add a kind: write its module (spec model, settings, caller,
``HOOK = HookKind(...)``; ``analysis/hooks/webhook.py`` is the model) and add its line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from analysis.hooks import cloudwatch_alarm, lambda_hook, prometheus_alert, webhook
from analysis.hooks.kind import HookKind, HookSpec

HOOKS: tuple[HookKind[Any], ...] = (
    webhook.HOOK,
    lambda_hook.HOOK,
    cloudwatch_alarm.HOOK,
    prometheus_alert.HOOK,
)

BY_NAME: Mapping[str, HookKind[Any]] = {h.name: h for h in HOOKS}

if TYPE_CHECKING:
    HookSpecUnion = HookSpec
else:
    HookSpecUnion = Annotated[Union[tuple(h.spec for h in HOOKS)], Field(discriminator="kind")]  # noqa: UP007
