"""Bearer tokens with roles.

Tokens are configured as SHA-256 hashes (``CANARY_TOKENS``), so the daemon's settings never
hold a usable secret. The presented token is hashed and compared with every configured
hash in constant time (``hmac.compare_digest``, no early exit), so response timing says
nothing about how close a guess was. A token is printable ASCII (what ``CANARY_TOKENS``
recipes produce): anything else in the header (``Bearer caf\xe9``) is a 401 before any
hashing, and the hash is taken of the token's bytes.

Roles form a ladder: ``read`` (every GET) < ``deploy`` (also start rollouts) < ``operate``
(also promote, pause, resume, abort). The CI token that starts a rollout cannot approve
or skip its gates; a person who operates rollouts may also start one. With
``CANARY_ALLOW_ANONYMOUS=true`` a request without a token acts as ``anonymous`` with the
``operate`` role (for development; the daemon warns at every start).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from canary.api.problems import ProblemError
from config.settings import TokenSpec

Role = Literal["read", "deploy", "operate"]
RANK: dict[str, int] = {"read": 0, "deploy": 1, "operate": 2}
ANONYMOUS = "anonymous"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="canary"'}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (recorded as the actor of commands) and role."""

    name: str
    role: Role

    def allows(self, needed: Role) -> bool:
        return RANK[self.role] >= RANK[needed]


_TOKEN = re.compile(r"^[!-~]{1,512}$")  # printable ASCII, no spaces


def hash_token(token: str | bytes) -> str:
    raw = token if isinstance(token, bytes) else token.encode("utf-8")
    return hashlib.sha256(raw).hexdigest()


class Authenticator:
    def __init__(self, tokens: Sequence[TokenSpec], allow_anonymous: bool) -> None:
        self.tokens = list(tokens)
        self.allow_anonymous = allow_anonymous

    def identify(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header; raises a 401 problem."""
        if authorization is None or not authorization.strip():
            if self.allow_anonymous:
                return Principal(ANONYMOUS, "operate")
            raise ProblemError(
                401,
                "this request needs a bearer token: send 'Authorization: Bearer <token>' "
                "(the CLI reads --token or CANARY_TOKEN)",
                headers=CHALLENGE,
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ProblemError(
                401,
                "the Authorization header must be 'Bearer <token>'",
                headers=CHALLENGE,
            )
        if not _TOKEN.match(token):
            raise ProblemError(
                401,
                "the bearer token must be 1-512 printable ASCII characters (a token from "
                "CANARY_TOKENS never holds anything else)",
                headers=CHALLENGE,
            )
        presented = hash_token(token.encode("ascii")).encode("ascii")
        found: TokenSpec | None = None
        for spec in self.tokens:  # every hash is compared: no early exit
            if hmac.compare_digest(presented, spec.sha256.encode("ascii")):
                found = spec
        if found is None:
            raise ProblemError(
                401,
                "the bearer token is not one this daemon knows (its SHA-256 is not in "
                "CANARY_TOKENS)",
                headers=CHALLENGE,
            )
        return Principal(found.name, found.role)

    @staticmethod
    def require(principal: Principal, needed: Role, what: str) -> None:
        """Raise a 403 problem unless ``principal`` may do ``what``."""
        if not principal.allows(needed):
            raise ProblemError(
                403,
                f"token {principal.name!r} has role {principal.role}; {what} needs role "
                f"{needed} (or higher: read < deploy < operate)",
            )
