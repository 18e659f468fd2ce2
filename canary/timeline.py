"""The decision timeline, as people read it: when, at which step and weight, what and why.

Used by ``canary simulate`` and by the CLI when it follows a rollout. Each gate is shown with
its value and verdict; anything that is not a PASS is shown with its full explanation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from analysis.judges import fmt
from canary.events import EventKind
from canary.model import Event, Rollout

QUIET = frozenset({EventKind.TRAFFIC_SHIFTING, EventKind.PROMOTION_CALLING})


def offset(at: datetime, start: datetime) -> str:
    seconds = max(0, int((at - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"+{hours}:{minutes:02d}:{secs:02d}" if hours else f"+{minutes:02d}:{secs:02d}"


def _named(result: dict[str, Any]) -> str:
    """The gate's name, with its target when the explanation names one (several targets)."""
    name, words = str(result["gate"]), str(result.get("explanation", ""))
    if words.startswith(f"{name} [") and "]" in words:
        return words[: words.index("]") + 1]
    return name


def describe(event: Event) -> str:
    """One line for ``event``; gate evaluations list every gate compactly."""
    if event.kind == EventKind.ANALYSIS_EVALUATED:
        parts = []
        for result in event.data.get("results", []):
            verdict = result["verdict"]
            if verdict == "PASS":
                parts.append(f"{_named(result)} {fmt(result['value'])} PASS")
            else:
                parts.append(result["explanation"])
        counters = event.data.get("counters", {})
        limits = event.data.get("limits", {})
        tally = ""
        if counters.get("failures"):
            tally = (
                f"  [failed evaluations: {counters['failures']}, "
                f"limit {limits.get('failure_limit')}]"
            )
        return "gates: " + " · ".join(parts) + tally
    return event.message


def render(
    rollout: Rollout, events: Sequence[Event], *, verbose: bool = False, width: int = 0
) -> list[str]:
    """Timeline lines for ``events``; ``verbose`` also shows write-ahead intents."""
    if not events:
        return []
    start = events[0].at
    steps = len(rollout.spec.steps)
    lines = [f"{'time':>8}  {'step':>5}  {'weight':>6}  decision"]
    shown = [e for e in events if verbose or e.kind not in QUIET]
    texts = {id(e): describe(e) for e in shown}
    shown = _fold_passing_hooks(shown, texts)
    index = 0
    while index < len(shown):
        event = shown[index]
        text = texts[id(event)]
        # A run of identical passing evaluations is one line: the decisions stay visible.
        run = index + 1
        if event.kind == EventKind.ANALYSIS_EVALUATED and _all_pass(event):
            while (
                run < len(shown)
                and shown[run].kind == event.kind
                and shown[run].step == event.step
                and texts[id(shown[run])] == text
            ):
                run += 1
        if run - index > 1:
            text += f"  (×{run - index} until {offset(shown[run - 1].at, start)})"
        if width and len(text) > width:
            text = text[: width - 1] + "…"
        lines.append(
            f"{offset(event.at, start):>8}  {event.step:>2}/{steps:<2}  {event.weight:>5g}%  {text}"
        )
        index = run
    return lines


def _fold_passing_hooks(shown: list[Event], texts: dict[int, str]) -> list[Event]:
    """A hook's PASS asked just before the gates' evaluation of the same moment is shown on
    the gates' line (``· hook alarms PASS``), so a bake of passing checks stays one line."""
    out: list[Event] = []
    held: list[Event] = []
    for event in shown:
        passing_hook = (
            event.kind == EventKind.HOOK_ANSWERED
            and event.data.get("result", {}).get("verdict") == "PASS"
        )
        if passing_hook:
            held.append(event)
            continue
        if event.kind == EventKind.ANALYSIS_EVALUATED and _all_pass(event):
            same = [h for h in held if h.at == event.at and h.step == event.step]
            if same:
                texts[id(event)] += "".join(f" · hook {h.data['hook']} PASS" for h in same)
                held = [h for h in held if h not in same]
        out += held
        held = []
        out.append(event)
    return out + held


def _all_pass(event: Event) -> bool:
    return all(r["verdict"] == "PASS" for r in event.data.get("results", []))


def outcome(rollout: Rollout) -> str:
    reason = rollout.reason or rollout.paused_reason or ""
    text = f"final phase: {rollout.phase.value}"
    return f"{text} ({reason})" if reason and reason != "promoted" else text
