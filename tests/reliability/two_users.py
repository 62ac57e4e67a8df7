"""An identity provider with two fixed users, loaded by the test servers of this tier.

``Authorization: token alice-token`` is user ``alice``, ``bob-token`` is ``bob``; anything
else (no header, another token, a cookie) is nobody. The server subprocess imports it by
name (``--ServerApp.identity_provider_class=two_users.TwoUsersIdentityProvider``) with this
directory on its ``PYTHONPATH``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User

TOKENS = {"alice-token": "alice", "bob-token": "bob"}


class TwoUsersIdentityProvider(IdentityProvider):
    """Token -> user; no login page, no cookie, no other way in."""

    async def get_user_token(self, handler: Any) -> User | None:
        name = TOKENS.get(self.get_token(handler) or "")
        return User(username=name, name=name) if name else None

    def get_user_cookie(self, handler: Any) -> None:
        return None
