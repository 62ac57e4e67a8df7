"""``GET|PUT settings``: the user's defaults (secrets are write-only: never returned), and
``GET capabilities``: what the server offers new conversations."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ...store.settings import SettingsError, SettingsUpdate
from ..capabilities import server_capabilities
from .base import ConvoHandler, fail


class SettingsHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            settings = self.services.settings_store.get(self.user_id)
        except SettingsError as exc:
            fail(500, str(exc))
        self.send_model(settings)

    @web.authenticated
    @authorized
    async def put(self) -> None:
        update = self.body(SettingsUpdate)
        try:
            settings = self.services.settings_store.update(self.user_id, update)
        except SettingsError as exc:
            fail(500, str(exc))
        except ValueError as exc:
            fail(400, f"invalid request body: {exc}")
        self.send_model(settings)


class CapabilitiesHandler(ConvoHandler):
    """``GET capabilities``: the sandbox kinds and agent backends this server offers."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_model(server_capabilities(self.services.config.sandbox))
