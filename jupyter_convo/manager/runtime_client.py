"""A small httpx client for one runtime's REST API, with its session key.

Failures come back as ``RuntimeClientError`` subclasses that say what happened (the runtime
is unreachable, refused the key, does not host the conversation, ...) and carry the
runtime's own error message, so callers never parse HTTP themselves.
"""

from __future__ import annotations

import functools
import logging
import ssl
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from ..events.inputs import UserInput
from ..events.log import MAX_PAGE_LIMIT, EventPage
from ..events.schema import Event, event_from_dict
from ..runtime.auth import SESSION_KEY_HEADER
from ..runtime.models import ConversationInfo, CreateConversationRequest

log = logging.getLogger(__name__)

__all__ = ["SESSION_KEY_HEADER", "RuntimeClient", "RuntimeClientError"]
USER_INPUT: TypeAdapter[UserInput] = TypeAdapter(UserInput)


class RuntimeClientError(RuntimeError):
    """A request to a runtime failed; ``status_code`` is None when no answer came."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class RuntimeUnreachable(RuntimeClientError):
    """No answer: the runtime is down, not listening yet, or too slow."""


class RuntimeAuthError(RuntimeClientError):
    """401: the runtime refused the session key."""


class RuntimeNotFound(RuntimeClientError):
    """404: no such conversation (or file) in this runtime."""


class RuntimeConflict(RuntimeClientError):
    """409: the runtime hosts another conversation, or this one is stopped."""


class RuntimeBadRequest(RuntimeClientError):
    """400, 413, 415 and other 4xx: the request itself was refused."""


class RuntimeServerError(RuntimeClientError):
    """5xx: the runtime failed while handling the request."""


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One TLS context for every HTTP client of a runtime. httpx builds (and loads the CA
    bundle into) a new one per client otherwise: a tenth of a warm start's CPU
    (bench/bench_start.py, profiled), for runtimes reached over plain HTTP."""
    return ssl.create_default_context()


class RuntimeClient:
    """REST calls to one runtime hosting ``conversation_id``."""

    def __init__(
        self,
        base_url: str,
        session_key: str,
        conversation_id: str,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.conversation_id = conversation_id
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={SESSION_KEY_HEADER: session_key},
            timeout=timeout,
            verify=shared_tls_context(),
        )

    @property
    def conversation_path(self) -> str:
        return f"/api/conversations/{self.conversation_id}"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise RuntimeUnreachable(
                f"runtime at {self.base_url} did not answer {method} {path} in time"
            ) from exc
        except httpx.TransportError as exc:
            raise RuntimeUnreachable(
                f"runtime at {self.base_url} is unreachable ({type(exc).__name__}: {exc})"
            ) from exc
        if response.status_code >= 400:
            raise _error_for(response, method, path)
        return response

    # --- liveness -------------------------------------------------------------------------

    async def alive(self) -> bool:
        """Whether the runtime answers ``GET /alive`` (no key needed)."""
        try:
            await self._request("GET", "/alive")
        except RuntimeClientError:
            return False
        return True

    async def health(self) -> dict[str, Any]:
        response = await self._request("GET", "/health")
        data: dict[str, Any] = response.json()
        return data

    # --- conversation ---------------------------------------------------------------------

    async def create_conversation(self, request: CreateConversationRequest) -> ConversationInfo:
        """Bind the runtime to the conversation (or return it when already bound)."""
        body = request.model_dump(mode="json", exclude={"settings"})
        body["settings"] = request.settings.to_wire()  # the one place secrets travel
        response = await self._request("POST", "/api/conversations", json=body)
        return _parse(ConversationInfo, response)

    async def info(self) -> ConversationInfo:
        response = await self._request("GET", self.conversation_path)
        return _parse(ConversationInfo, response)

    async def send_input(self, item: UserInput) -> Event:
        """Deliver a user input; the runtime answers with the event it logged."""
        response = await self._request(
            "POST",
            f"{self.conversation_path}/events",
            content=USER_INPUT.dump_json(item),
            headers={"Content-Type": "application/json"},
        )
        return event_from_dict(response.json())

    async def stop(self) -> None:
        await self._request("POST", f"{self.conversation_path}/stop")

    # --- events (the log is the runtime's while it runs) -------------------------------------

    async def search_events(self, **query: Any) -> EventPage:
        """``events/search`` with the log's filters (None values left out; ``kind`` a
        list); RuntimeBadRequest names a bad filter."""
        response = await self._request(
            "GET", f"{self.conversation_path}/events/search", params=_event_query(query)
        )
        return EventPage.model_validate_json(response.content)

    async def count_events(self, **query: Any) -> int:
        response = await self._request(
            "GET", f"{self.conversation_path}/events/count", params=_event_query(query)
        )
        return int(response.json()["count"])

    async def read_events(self, after_id: int, limit: int) -> list[Event]:
        """Up to ``limit`` stored events after ``after_id``, in id order (pages of the
        runtime's largest page)."""
        events: list[Event] = []
        while len(events) < limit:
            page = await self.search_events(
                after_id=after_id, limit=min(limit - len(events), MAX_PAGE_LIMIT)
            )
            if not page.items:
                break
            events.extend(page.items)
            after_id = page.items[-1].id
        return events

    # --- workspace ------------------------------------------------------------------------

    async def list_files(self, path: str | None = None) -> list[str]:
        params = {"path": path} if path is not None else None
        response = await self._request("GET", f"{self.conversation_path}/list-files", params=params)
        entries = response.json()
        if not isinstance(entries, list):
            raise RuntimeServerError(f"list-files answered {type(entries).__name__}, not a list")
        return [str(entry) for entry in entries]

    async def select_file(self, file: str) -> str:
        response = await self._request(
            "GET", f"{self.conversation_path}/select-file", params={"file": file}
        )
        return str(response.json()["content"])

    async def upload_files(self, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        multipart = [("files", (name, content)) for name, content in files]
        response = await self._request(
            "POST", f"{self.conversation_path}/upload-files", files=multipart
        )
        data: dict[str, Any] = response.json()
        return data

    async def workspace_zip(self) -> bytes:
        response = await self._request("GET", f"{self.conversation_path}/workspace.zip")
        return response.content


def _event_query(query: dict[str, Any]) -> list[tuple[str, str]]:
    """Query pairs for the runtime's event routes (repeated ``kind``, lower-case bools)."""
    pairs: list[tuple[str, str]] = []
    for name, value in query.items():
        if value is None:
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((name, str(item).lower() if isinstance(item, bool) else str(item)))
    return pairs


_ERRORS: dict[int, type[RuntimeClientError]] = {
    401: RuntimeAuthError,
    404: RuntimeNotFound,
    409: RuntimeConflict,
}


def _error_for(response: httpx.Response, method: str, path: str) -> RuntimeClientError:
    try:
        body = response.json()
        detail = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        detail = None
    message = str(detail or response.reason_phrase or "error")
    status = response.status_code
    cls = _ERRORS.get(status) or (RuntimeServerError if status >= 500 else RuntimeBadRequest)
    log.debug("runtime answered %s to %s %s: %s", status, method, path, message)
    return cls(message, status)


def _parse(model: type[ConversationInfo], response: httpx.Response) -> ConversationInfo:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise RuntimeServerError(f"unexpected answer from the runtime: {exc}") from exc
