"""What a rollout looks like in Slack: its one message, and one thread reply per event.

Pure functions from the record to Block Kit, so what people read can be tested without a
network. Short lines and one fact per line: the message must be readable on a phone. Every
message has a plain-text ``text`` too: it is what notifications and screen readers show.
Nothing here ever sees a secret (the token lives in the client, never in a rollout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from canary.events import EventKind
from canary.model import Event, Phase, Rollout

Blocks = list[dict[str, Any]]

PHASE_ICON = {
    Phase.PENDING: ":hourglass_flowing_sand:",
    Phase.SHIFTING: ":arrows_counterclockwise:",
    Phase.BAKING: ":hourglass:",
    Phase.AWAITING_APPROVAL: ":raised_hand:",
    Phase.PAUSED: ":double_vertical_bar:",
    Phase.PROMOTING: ":arrow_up:",
    Phase.SUCCEEDED: ":white_check_mark:",
    Phase.ROLLING_BACK: ":leftwards_arrow_with_hook:",
    Phase.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    Phase.ROLLBACK_FAILED: ":rotating_light:",
    Phase.FAILED: ":x:",
}

VERDICT_ICON = {
    "PASS": ":large_green_circle:",
    "FAIL": ":red_circle:",
    "INCONCLUSIVE": ":large_yellow_circle:",
    "ERROR": ":white_circle:",
}

MAX_TEXT = 2900  # a section's text may hold 3000 characters


@dataclass(frozen=True)
class Message:
    text: str  # the plain-text fallback
    blocks: Blocks


@dataclass(frozen=True)
class LastAction:
    """The last command a person gave, shown on the message ("paused by ana")."""

    command: str
    actor: str


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "none" if value is None else str(value)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text)}}


def progress(r: Rollout) -> str:
    """The plan as a bar of steps: done ones filled, e.g. ``■■□□ step 2/4 · 25%``."""
    steps = r.spec.steps
    if r.phase == Phase.SUCCEEDED:
        done = len(steps)
    elif r.phase in (Phase.PENDING, Phase.FAILED) or not r.started:
        done = 0
    else:
        done = r.step + 1
    bar = "■" * done + "□" * (len(steps) - done)
    plan = " → ".join(f"{s.weight:g}%" for s in steps)
    return f"`{bar}` step {min(r.step + 1, len(steps))}/{len(steps)} · {r.weight:g}%\n{plan}"


def targets(r: Rollout) -> str:
    lines = []
    for state, spec in zip(r.targets, r.spec.targets, strict=False):
        canary = getattr(spec, "version", None)
        versions = f"{state.stable or '?'} → {canary}" if canary is not None else ""
        lines.append(f"• `{state.key}` {versions}".rstrip())
    return "\n".join(lines)


def gates(results: Sequence[dict[str, Any]]) -> str:
    lines = []
    for res in results:
        verdict = str(res.get("verdict"))
        icon = VERDICT_ICON.get(verdict, "")
        several = len({r.get("target") for r in results}) > 1
        target = f" `{res['target']}`" if res.get("target") and several else ""
        lines.append(f"{icon} *{res.get('gate')}*{target} {verdict}: {_fmt(res.get('value'))}")
    return "\n".join(lines)


ACTIONABLE = frozenset(
    {Phase.PENDING, Phase.SHIFTING, Phase.BAKING, Phase.AWAITING_APPROVAL, Phase.PAUSED}
)


def _button(action: str, label: str, rollout_id: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action,
        "text": {"type": "plain_text", "text": label},
        "value": rollout_id,
    }
    if style is not None:
        button["style"] = style
    return button


def buttons(r: Rollout) -> dict[str, Any]:
    """Promote, Pause, Abort; Abort asks first (Slack's confirm dialog)."""
    abort = _button("abort", "Abort", r.id, "danger")
    abort["confirm"] = {
        "title": {"type": "plain_text", "text": "Abort this rollout?"},
        "text": {
            "type": "mrkdwn",
            "text": f"*{r.name}* rolls back: every target goes back to its stable version.",
        },
        "confirm": {"type": "plain_text", "text": "Abort"},
        "deny": {"type": "plain_text", "text": "Keep it going"},
        "style": "danger",
    }
    return {
        "type": "actions",
        "block_id": "canary-commands",
        "elements": [
            _button("promote", "Promote", r.id, "primary"),
            _button("pause", "Pause", r.id),
            abort,
        ],
    }


def rollout_message(
    r: Rollout,
    results: Sequence[dict[str, Any]],
    last: LastAction | None,
    with_buttons: bool = False,
) -> Message:
    """The rollout's one message, as it stands now."""
    phase = r.phase.value.replace("_", " ")
    head = f"{PHASE_ICON.get(r.phase, '')} *{r.name}* · {phase}"
    blocks: Blocks = [
        _section(head),
        _section(f"*Targets*\n{targets(r)}"),
        _section(f"*Progress*\n{progress(r)}"),
    ]
    if results:
        blocks.append(_section(f"*Gates*\n{gates(results)}"))
    why = r.reason or r.paused_reason
    if why and r.phase not in (Phase.SUCCEEDED,):
        blocks.append(_section(f"*Why*\n{why}"))
    if with_buttons and r.phase in ACTIONABLE:
        blocks.append(buttons(r))
    context = f"rollout `{r.id}`"
    if last is not None:
        context += f" · {last.command} by {last.actor}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(context)}]})
    text = f"{r.name}: {phase}, step {r.step + 1}/{len(r.spec.steps)} at {r.weight:g}%"
    return Message(text, blocks)


def _failing_gates(e: Event) -> str | None:
    """The gates of an evaluation that did not pass, with values; None if all passed."""
    bad = [
        res
        for res in e.data.get("results", [])
        if res.get("verdict") in ("FAIL", "INCONCLUSIVE", "ERROR")
    ]
    if not bad:
        return None
    lines = []
    for res in bad:
        icon = VERDICT_ICON.get(str(res.get("verdict")), "")
        lines.append(
            f"{icon} *{res.get('gate')}* {res.get('verdict')} at {e.weight:g}%: "
            f"{_fmt(res.get('value'))} (stable {_fmt(res.get('stable_value'))}, "
            f"samples {_fmt(res.get('samples'))})\n{res.get('explanation', '')}"
        )
    return "\n".join(lines)


def reply(e: Event, mention: str | None = None, by: str | None = None) -> Message | None:
    """The thread reply for one event, or None for events that are not worth one (intents,
    traffic read-backs, evaluations where every gate passed). ``by``: who gave the
    command this event follows from, if a person did."""
    actor = e.actor or by
    who = f" by {actor}" if actor else ""
    match e.kind:
        case EventKind.ROLLOUT_STARTED:
            text = f":rocket: Started: {e.message.removeprefix('started: ')}"
        case EventKind.STEP_STARTED:
            step, weight = e.data.get("step", e.step), e.data.get("weight", e.weight)
            text = f":arrow_right: Step {step} reached: {weight:g}%"
        case EventKind.ANALYSIS_EVALUATED:
            failing = _failing_gates(e)
            if failing is None:
                return None
            text = f"Gates at {e.weight:g}%:\n{failing}"
        case EventKind.HOOK_ANSWERED:
            if e.data.get("result", {}).get("verdict") == "PASS":
                return None
            text = f":test_tube: {e.message[:1].upper()}{e.message[1:]}"
        case EventKind.STEP_AWAITING_APPROVAL:
            text = f":raised_hand: Awaiting approval at step {e.step} ({e.weight:g}%)"
        case EventKind.ROLLOUT_PAUSED:
            cause = e.data.get("cause", "?")
            text = f":double_vertical_bar: Paused ({cause}){who}: {e.data.get('reason', '')}"
        case EventKind.ROLLOUT_RESUMED:
            text = f":arrow_forward: Resumed{who}"
        case EventKind.TRAFFIC_DRIFT:
            text = f":warning: {e.message}"
        case EventKind.COMMAND_PROMOTE | EventKind.COMMAND_ABORT:
            text = f":bust_in_silhouette: {e.kind.removeprefix('command.').title()}{who}"
        case EventKind.ROLLBACK_STARTED:
            text = f":leftwards_arrow_with_hook: Rolling back ({e.data.get('cause', '?')}): " + str(
                e.data.get("reason", "")
            )
        case EventKind.ROLLOUT_SUCCEEDED:
            text = ":white_check_mark: Promoted: the canary is now the stable version"
        case EventKind.ROLLOUT_ROLLED_BACK:
            cause = e.data.get("cause") or "?"
            text = f":leftwards_arrow_with_hook: Rolled back ({cause}): {e.data.get('reason', '')}"
        case EventKind.ROLLBACK_FAILED:
            ping = ""
            if mention is not None:
                ping = f"<!subteam^{mention}> " if mention.startswith("S") else f"<@{mention}> "
            text = f":rotating_light: {ping}*ROLLBACK FAILING*: {e.message}"
        case EventKind.ROLLOUT_FAILED:
            text = f":x: Not started: {e.message}"
        case _:
            return None
    return Message(_cut(text), [_section(text)])


def about(r: Rollout, message: Message) -> Message:
    """``message`` standing on its own (webhook mode has no thread): it names the rollout."""
    context = {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _cut(f"*{r.name}* · rollout `{r.id}`")}],
    }
    return Message(f"{r.name}: {message.text}", [context, *message.blocks])
