"""The base of every REST handler: auth resource, validated input, JSON output, errors.

Visibility rule (enforced here, used by every route): a conversation that is missing or
belongs to another user is answered 404, so nobody can even learn that another user's id
exists. The one exception is renaming (``PATCH conversations/{id}``): the design asks for
403 there, so a rename of an existing conversation by a non-owner answers 403.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from http.client import responses
from typing import Any, NoReturn, TypeVar, get_args, get_origin

import pydantic_core
from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError
from tornado import web

from ...manager.base import (
    ConversationNotFound,
    ConversationNotRunning,
    WorkspaceRequestError,
)
from ...manager.owner import DataDirInUse
from ...store.conversations import ConversationMetadata
from ..models import ID_PATTERN
from ..services import ConvoServices

log = logging.getLogger(__name__)

AUTH_RESOURCE = "convo"
SERVICES_KEY = "convo"
# Query parameters that belong to Jupyter itself, never to our routes.
_JUPYTER_PARAMS = frozenset({"token", "_xsrf"})
# Query parameters whose values never reach a log (any name containing one of these).
_CREDENTIAL_PARAMS = ("token", "auth", "key", "secret", "password", "code", "state", "xsrf")
# pydantic-core's JSON parser refuses deeper documents (its recursion limit).
MAX_JSON_DEPTH = 200


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


def parse_json(raw: bytes | str) -> Any:
    """JSON as Python values; ``ValueError`` names the problem, nesting deeper than
    ``MAX_JSON_DEPTH`` included (the standard library's parser raises ``RecursionError``
    at about a thousand levels, which would be a 500)."""
    try:
        return pydantic_core.from_json(raw)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise ValueError(
                f"it is nested more than {MAX_JSON_DEPTH} levels deep ({exc})"
            ) from None
        raise


def scrub_uri(uri: str) -> str:
    """``uri`` with the values of credential-like query parameters replaced."""
    path, mark, query = uri.partition("?")
    if not mark:
        return uri
    parts = []
    for part in query.split("&"):
        name, equals, _value = part.partition("=")
        if equals and any(word in name.lower() for word in _CREDENTIAL_PARAMS):
            part = f"{name}=[secret]"
        parts.append(part)
    return f"{path}?{'&'.join(parts)}"


def _is_list(annotation: Any) -> bool:
    """True for ``list[...]`` and ``list[...] | None``: such parameters may repeat."""
    if get_origin(annotation) is list:
        return True
    return any(get_origin(arg) is list for arg in get_args(annotation))


def fail(status: int, message: str) -> NoReturn:
    """Raise the HTTP error whose JSON body (``message``) names the problem."""
    raise web.HTTPError(status, message)


def error_message(error: web.HTTPError) -> str:
    """The message of ``error`` as given: tornado's ``log_message`` doubles every ``%``
    of a message raised without format arguments."""
    return error.get_message() or error.reason or responses.get(error.status_code, "")


def http_error_for(exc: BaseException) -> web.HTTPError | None:
    """The HTTP answer to an exception a route did not handle itself, when it is a known
    one: a conversation deleted meanwhile is 404 (not 500), one that stopped is 409."""
    if isinstance(exc, ConversationNotFound):
        return web.HTTPError(404, str(exc) or "conversation not found")
    if isinstance(exc, ConversationNotRunning):
        return web.HTTPError(409, f"{exc}; start it first")
    if isinstance(exc, WorkspaceRequestError):
        return web.HTTPError(exc.status, str(exc))
    return None


class ScrubbedLogMixin:
    """Request logging that never writes a credential: the URL's ``token=`` (and other
    credential-like) query values are replaced, headers are never logged.

    tornado's own exception logging prints the raw URL (``?token=...``, what browsers and
    WebSocket clients send) and, for unexpected errors, the request's repr.
    """

    request: Any
    log: Any

    def _request_summary(self) -> str:
        return (
            f"{self.request.method} {scrub_uri(self.request.uri or '')} ({self.request.remote_ip})"
        )

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, web.HTTPError):
            self.log.warning(
                "%d %s: %s", value.status_code, self._request_summary(), error_message(value)
            )
            return
        self.log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))


class ConvoHandler(ScrubbedLogMixin, APIHandler):
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

    def _handle_request_exception(self, e: BaseException) -> None:
        mapped = http_error_for(e)
        if mapped is None:
            super()._handle_request_exception(e)
            return
        try:  # tornado answers from sys.exc_info(): make it the mapped error
            raise mapped from e
        except web.HTTPError as error:
            super()._handle_request_exception(error)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JSON ``{message, reason}``, the message exactly as raised."""
        self.set_header("Content-Type", "application/json")
        reply: dict[str, Any] = {"message": responses.get(status_code, "Unknown HTTP Error")}
        exc_info = kwargs.get("exc_info")
        if exc_info:
            error = exc_info[1]
            if isinstance(error, web.HTTPError):
                reply["message"] = error_message(error)
                reply["reason"] = error.reason
            else:
                reply["message"] = "Unhandled error"
                reply["reason"] = None
        self.finish(json.dumps(reply))

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.current_user:
            try:
                await self.services.ensure_started()
            except DataDirInUse as exc:
                fail(503, f"jupyter-convo is not available on this server: {exc}")
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
            data = parse_json(raw) if raw and raw.strip() else {}
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


_CONVERSATION_PATH = re.compile(r"^/conversations/(?P<id>[^/]+)(?:/|$)")
_VALID_ID = re.compile(ID_PATTERN)


class UnknownRouteHandler(ConvoHandler):
    """Anything under ``api/convo/`` no route matched: a JSON 404 that says why (a
    malformed conversation id, or no such route), never Jupyter's HTML page."""

    def _not_found(self, rest: str | None) -> NoReturn:
        path = rest or "/"
        match = _CONVERSATION_PATH.match(path)
        if match is not None and not _VALID_ID.match(match.group("id")):
            fail(
                404,
                f"conversation {match.group('id')[:80]!r} not found: conversation ids are "
                "1 to 64 letters, digits, '-' or '_'",
            )
        fail(404, f"no route {self.request.method} api/convo{path[:200]}")

    @web.authenticated
    async def get(self, rest: str | None = None) -> None:
        self._not_found(rest)

    post = put = patch = delete = get
