"""``POST /api/v1/slack/actions``: Slack's interactivity URL (the buttons on a rollout's
message).

No bearer token here: Slack cannot send one. The request's Slack signature is its proof
(checked in ``canary.slack.actions``), and the allowlist says what the person may do. The
answer is an empty 200 as soon as the press is verified (Slack wants one within 3 s); the
command runs after.
"""

from __future__ import annotations

from aiohttp import web

from canary.api.problems import ProblemError
from canary.slack.actions import BadPayload, Refused, SlackActions, read_press

SLACK_ACTIONS: web.AppKey[SlackActions] = web.AppKey("slack_actions", SlackActions)
PATH = "/api/v1/slack/actions"


async def slack_actions(request: web.Request) -> web.Response:
    for header in ("X-Slack-Request-Timestamp", "X-Slack-Signature"):
        if not request.headers.get(header):
            raise ProblemError(401, f"not a request signed by Slack: {header} is required")
    actions = request.app.get(SLACK_ACTIONS)
    if actions is None:
        raise ProblemError(
            404,
            "Slack buttons are not configured on this daemon; set CANARY_SLACK_SIGNING_SECRET "
            "and CANARY_SLACK_ALLOWLIST (with CANARY_SLACK_BOT_TOKEN)",
        )
    body = await request.read()
    try:
        actions.verifier.verify(request.headers, body, actions.now())
    except Refused as exc:
        raise ProblemError(401, f"not a request signed by Slack: {exc}") from None
    try:
        press = read_press(body)
    except BadPayload as exc:
        raise ProblemError(400, str(exc)) from None
    actions.start(press)
    return web.Response(status=200)


def install(app: web.Application, actions: SlackActions | None) -> None:
    """The route, and (when buttons are configured) what acts on presses."""
    if actions is not None:
        app[SLACK_ACTIONS] = actions

        async def close(_: web.Application) -> None:
            await actions.close()

        app.on_cleanup.append(close)
    app.router.add_post(PATH, slack_actions)
