"""The base of every REST handler: auth resource, validated input, JSON output, errors.

Visibility rule (enforced here, used by every route): a conversation that is missing or
belongs to another user is answered 404, so nobody can even learn that another user's id
exists. The one exception is renaming (``PATCH conversations/{id}``): the design asks for
403 there, so a rename of an existing conversation by a non-owner answers 403.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from http.client import responses
from typing import Any, NoReturn, TypeVar, get_args, get_origin

from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError
from tornado import web

from ...manager.base import ConversationNotFound, ConversationNotRunning
from ...store.conversations import ConversationMetadata
from ..services import ConvoServices

log = logging.getLogger(__name__)

AUTH_RESOURCE = "convo"
SERVICES_KEY = "convo"
# Query parameters that belong to Jupyter itself, never to our routes.
_JUPYTER_PARAMS = frozenset({"token", "_xsrf"})


def _is_cache_buster(name: str, values: list[bytes]) -> bool:
    """JupyterLab's request helper appends a bare timestamp (``?1732190000000``) to GETs."""
    return name.isdigit() and not any(values)


M = TypeVar("M", bound=BaseModel)
# The largest JSON body a route takes by default (as the runtime's own limit: a message
# may carry images as data URLs); routes with small bodies set a lower ``max_body_bytes``.
MAX_JSON_BODY_BYTES = 32 * 1024 * 1024


def describe_validation_error(exc: ValidationError, what: str) -> str:
    """``invalid request body: title: String should have at most 200 characters``."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(root)"
        problems.append(f"{field}: {error['msg']}")
    return f"invalid {what}: " + "; ".join(problems)


def _is_list(annotation: Any) -> bool:
    """True for ``list[...]`` and ``list[...] | None``: such parameters may repeat."""
    if get_origin(annotation) is list:
        return True
    return any(get_origin(arg) is list for arg in get_args(annotation))


def fail(status: int, message: str) -> NoReturn:
    """Raise the HTTP error whose JSON body (``message``) names the problem."""
    raise web.HTTPError(status, message)


class ConvoHandler(APIHandler):
    """Shared helpers; subclasses decorate each method with ``@web.authenticated`` and
    ``@authorized``."""

    auth_resource = AUTH_RESOURCE
    max_body_bytes = MAX_JSON_BODY_BYTES

    @property
    def services(self) -> ConvoServices:
        services: ConvoServices = self.settings[SERVICES_KEY]
        return services

    @property
    def user_id(self) -> str:
        """Who owns what this request touches (see ``ConvoServices.is_single_user``)."""
        return self.services.user_id(self.identity_provider, self.current_user)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Log HTTP errors without treating their message as a format string."""
        if isinstance(value, web.HTTPError):
            self.log.warning(
                "%d %s: %s",
                value.status_code,
                self._request_summary(),
                value.log_message or value.reason or responses.get(value.status_code, ""),
            )
            return
        super().log_exception(typ, value, tb)

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.current_user:
            try:
                await self.services.ensure_started()
            except Exception as exc:
                log.exception("jupyter-convo could not start its conversation manager")
                fail(503, f"jupyter-convo could not start its conversation manager: {exc}")

    # --- input -------------------------------------------------------------------------------

    def body(self, model: type[M]) -> M:
        """The JSON request body validated by ``model`` (empty body = ``{}``); 413 over
        ``max_body_bytes``."""
        raw = self.request.body
        if raw and len(raw) > self.max_body_bytes:
            fail(413, f"request body of {len(raw)} bytes is over {self.max_body_bytes} bytes")
        try:
            data = json.loads(raw) if raw and raw.strip() else {}
        except ValueError as exc:
            fail(400, f"request body is not valid JSON: {exc}")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            fail(400, describe_validation_error(exc, "request body"))

    def query(self, model: type[M]) -> M:
        """The query string validated by ``model``: list fields take every value, others
        the last; an unknown parameter is refused."""
        fields = model.model_fields
        data: dict[str, Any] = {}
        for name, raw_values in self.request.query_arguments.items():
            if name in _JUPYTER_PARAMS or _is_cache_buster(name, raw_values):
                continue
            if name not in fields:
                fail(400, f"unknown query parameter {name!r}; expected one of {', '.join(fields)}")
            values = [value.decode("utf-8", "replace") for value in raw_values]
            data[name] = values if _is_list(fields[name].annotation) else values[-1]
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            fail(400, describe_validation_error(exc, "query"))

    # --- conversations ------------------------------------------------------------------------

    def conversation(self, conversation_id: str) -> ConversationMetadata:
        """The current user's conversation, else 404 (missing or another user's)."""
        try:
            return self.services.manager.metadata(conversation_id, self.user_id)
        except ConversationNotFound:
            fail(404, f"conversation {conversation_id} not found")

    # --- output ------------------------------------------------------------------------------

    def send_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    def send_model(self, model: BaseModel, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(model.model_dump_json())

    def send_models(self, models: Iterable[BaseModel | None], status: int = 200) -> None:
        self.send_json(
            [None if m is None else m.model_dump(mode="json") for m in models], status=status
        )

    def not_running(self, conversation_id: str, exc: ConversationNotRunning) -> NoReturn:
        fail(409, f"conversation {conversation_id} is not running ({exc}); start it first")
