"""``GET /api/v1/whoami``: the caller's name and role, as the daemon sees its token.

The dashboard asks before it draws anything, so it shows controls only to a token that may
use them (and tells an anonymous daemon from one that wants a token) without guessing from
a refused command.
"""

from __future__ import annotations

from aiohttp import web

from canary.api.auth import ANONYMOUS, Principal
from canary.api.context import protected


@protected("read", "asking who you are")
async def whoami(request: web.Request, principal: Principal) -> web.Response:
    return web.json_response(
        {
            "name": principal.name,
            "role": principal.role,
            "anonymous": principal.name == ANONYMOUS,
        }
    )
