"""The LLM client: one Chat Completions call with our own retries, error codes and cassette.

Any OpenAI-compatible endpoint works (OpenAI, Azure, Ollama, vLLM, LM Studio, OpenRouter...)
because we speak the plain ``openai`` SDK. The SDK's own retries are off: we retry 429, 408,
5xx and connection errors ourselves, so every attempt is logged and recorded in the cassette,
and the final failure becomes an ``LLMError`` with a code the UI can act on and a message a
person can read. The API key never appears in a message, a log line or the cassette.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import ipaddress
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field

from ..events.redact import SECRET_PLACEHOLDER, SecretRegistry
from .cassette import Cassette
from .settings import LLMConfig

if TYPE_CHECKING:
    # Imported where used: ``import openai`` is half of a runtime's imports (profiled with
    # bench/bench_start.py), and a runtime is READY before its first LLM call.
    import openai
    from openai import AsyncStream
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

log = logging.getLogger(__name__)

LLM_AUTHENTICATION = "LLM_AUTHENTICATION"
LLM_RATE_LIMITED = "LLM_RATE_LIMITED"
LLM_UNAVAILABLE = "LLM_UNAVAILABLE"
LLM_CONTEXT_TOO_LONG = "LLM_CONTEXT_TOO_LONG"
LLM_BAD_REQUEST = "LLM_BAD_REQUEST"
LLM_NOT_CONFIGURED = "LLM_NOT_CONFIGURED"
LLM_ERROR_CODES = frozenset(
    {
        LLM_AUTHENTICATION,
        LLM_RATE_LIMITED,
        LLM_UNAVAILABLE,
        LLM_CONTEXT_TOO_LONG,
        LLM_BAD_REQUEST,
        LLM_NOT_CONFIGURED,
    }
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Sent to local endpoints (Ollama, vLLM, LM Studio) that want no key but the SDK needs one.
PLACEHOLDER_API_KEY = "not-needed"
MAX_BACKOFF = 30.0  # seconds; the exponential backoff never waits longer
MAX_RETRY_AFTER = 120.0  # seconds; a longer Retry-After is clamped to this
RETRYABLE_STATUS = frozenset({408, 409, 429})
# Endpoints echo masked keys ("sk-proj-****abcd"); those fragments are hidden too.
_KEY_LIKE = re.compile(r"\b(?:sk|rk|pk)-[\w*-]{4,}|\S*\*{3,}\S*")
_CONTEXT_HINTS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
)


class LLMError(Exception):
    """A failed LLM call, after retries: ``code`` (one of ``LLM_ERROR_CODES``), a message."""

    def __init__(self, code: str, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "status_code": self.status_code}

    def __repr__(self) -> str:
        return f"LLMError({self.code!r}, {self.message!r}, {self.status_code!r})"


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str  # JSON text as the model wrote it; the tool parses it


class LLMResponse(BaseModel):
    """The assembled answer of one call, with its usage, cost and latency (seconds)."""

    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0
    response_id: str | None = None
    model: str = ""
    finish_reason: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """Where calls go: the model, base URL (None: the SDK default) and the key to send."""

    model: str
    base_url: str | None
    api_key: str = field(repr=False)

    @property
    def display_url(self) -> str:
        return display_url(self.base_url)


def resolve_endpoint(config: LLMConfig, environ: Mapping[str, str] | None = None) -> Endpoint:
    """Fill base URL and key from the environment when the config leaves them unset.

    Raises ``LLMError(LLM_NOT_CONFIGURED)`` when no model or no usable key is known.
    """
    env = os.environ if environ is None else environ
    model = config.model.strip()
    if not model:
        raise LLMError(
            LLM_NOT_CONFIGURED,
            "No LLM model is configured. Choose one in the settings or set "
            "JUPYTER_CONVO_LLM_MODEL.",
        )
    base_url = (
        config.base_url
        or env.get("JUPYTER_CONVO_LLM_BASE_URL")
        or env.get("OPENAI_BASE_URL")
        or None
    )
    api_key = config.api_key.get_secret_value() if config.api_key is not None else None
    api_key = api_key or env.get("JUPYTER_CONVO_LLM_API_KEY") or env.get("OPENAI_API_KEY")
    if not api_key:
        if base_url is not None and is_local_url(base_url):
            api_key = PLACEHOLDER_API_KEY
        else:
            raise LLMError(
                LLM_NOT_CONFIGURED,
                f"No API key is configured for the LLM endpoint {display_url(base_url)}. "
                "Set it in the settings or in JUPYTER_CONVO_LLM_API_KEY (or OPENAI_API_KEY).",
            )
    return Endpoint(model=model, base_url=base_url, api_key=api_key)


def is_local_url(url: str) -> bool:
    """True for endpoints on this machine or a private network (which rarely need a key)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "host.docker.internal") or host.endswith((".localhost", ".local")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return bool(host) and "." not in host  # a bare name: a compose service, a LAN host
    return address.is_loopback or address.is_private or address.is_unspecified


def display_url(url: str | None) -> str:
    """The URL without any user:password part, for messages and logs."""
    if not url:
        return DEFAULT_BASE_URL
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def retry_delay(attempt: int, base_delay: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): Retry-After wins."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
    return min(base_delay * 2**attempt, MAX_BACKOFF)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), else None."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class _Failure(Exception):
    """One failed attempt: whether to retry, and the error to raise if it is the last."""

    def __init__(
        self, error: LLMError, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after


class LLMClient:
    """Calls one configured endpoint; ``complete`` retries and raises ``LLMError``."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        cassette: Cassette | None = None,
        secrets: SecretRegistry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.cassette = cassette
        self.secrets = secrets if secrets is not None else SecretRegistry()
        self._client: openai.AsyncOpenAI | None = None
        self._send_stream_options = True
        self.endpoint: Endpoint | None = None
        self._config_error: LLMError | None = None
        try:
            self.endpoint = resolve_endpoint(config, environ)
        except LLMError as exc:
            self._config_error = exc
        else:
            if self.endpoint.api_key != PLACEHOLDER_API_KEY:
                self.secrets.add(self.endpoint.api_key)
                if cassette is not None:
                    cassette.secrets.add(self.endpoint.api_key)

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> LLMResponse:
        """One assistant turn for ``messages`` (OpenAI format), retried on transient errors."""
        request = self._cassette_request(messages, tools)
        if self.endpoint is None:
            error = self._config_error or LLMError(LLM_NOT_CONFIGURED, "LLM is not configured")
            self._record(request, None, error.to_dict(), 0.0, attempt=1, final=True)
            raise error
        kwargs = self._call_kwargs(self.endpoint, messages, tools)
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                response = await self._attempt(kwargs)
            except _Failure as failure:
                latency = time.monotonic() - started
                last = attempt + 1 >= attempts or not failure.retryable
                error = self._final_error(failure, attempt + 1) if last else failure.error
                self._record(request, None, error.to_dict(), latency, attempt + 1, final=last)
                if last:
                    log.warning("LLM call failed for good: %s %s", error.code, error.message)
                    raise error from None
                delay = retry_delay(attempt, self.config.retry_base_delay, failure.retry_after)
                log.warning(
                    "LLM call to %s failed (attempt %d of %d), retrying in %.2fs: %s",
                    self.endpoint.display_url,
                    attempt + 1,
                    attempts,
                    delay,
                    failure.error.message,
                )
                await asyncio.sleep(delay)
                continue
            latency = time.monotonic() - started
            response = response.model_copy(
                update={"latency": latency, "cost": self._cost(response)}
            )
            self._record(request, response.model_dump(), None, latency, attempt + 1, final=True)
            return response
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # ------------------------------------------------------------ one attempt

    async def _attempt(self, kwargs: dict[str, Any]) -> LLMResponse:
        import openai

        try:
            if self.config.stream:
                return await self._streamed(kwargs)
            return await self._single(kwargs)
        except openai.APIStatusError as exc:
            if self._drop_stream_options(exc):
                return await self._attempt(kwargs)
            raise self._status_failure(exc) from None
        except openai.APITimeoutError:
            raise _Failure(
                LLMError(
                    LLM_UNAVAILABLE,
                    f"The LLM endpoint {self._url} did not answer within {self.config.timeout:g}s.",
                ),
                retryable=True,
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise _Failure(
                LLMError(
                    LLM_UNAVAILABLE,
                    f"Could not reach the LLM endpoint {self._url}: {self._clean(str(cause))}",
                ),
                retryable=True,
            ) from None
        except _TRANSPORT_ERRORS as exc:  # older SDKs let these escape from a stream
            raise _Failure(
                LLMError(
                    LLM_UNAVAILABLE,
                    f"The connection to the LLM endpoint {self._url} failed: "
                    f"{self._clean(str(exc))}",
                ),
                retryable=True,
            ) from None
        except openai.APIError as exc:  # an error event in the middle of a stream
            raise _Failure(
                LLMError(
                    LLM_UNAVAILABLE,
                    f"The LLM endpoint {self._url} sent an error: {self._clean(exc.message)}",
                ),
                retryable=True,
            ) from None

    async def _single(self, kwargs: dict[str, Any]) -> LLMResponse:
        result: Any = await self._create(kwargs)  # a ChatCompletion
        if not result.choices:
            raise _Failure(
                LLMError(LLM_UNAVAILABLE, f"The LLM endpoint {self._url} returned no choices."),
                retryable=False,
            )
        choice = result.choices[0]
        calls = [
            ToolCall(
                id=call.id or _new_call_id(),
                name=call.function.name,
                arguments=call.function.arguments or "",
            )
            for call in (choice.message.tool_calls or [])
            if getattr(call, "function", None) is not None
        ]
        usage = result.usage
        return LLMResponse(
            content=choice.message.content or None,
            tool_calls=calls,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            response_id=result.id,
            model=result.model or kwargs["model"],
            finish_reason=choice.finish_reason,
        )

    async def _streamed(self, kwargs: dict[str, Any]) -> LLMResponse:
        stream_kwargs: dict[str, Any] = {**kwargs, "stream": True}
        if self._send_stream_options:
            stream_kwargs["stream_options"] = {"include_usage": True}
        stream = cast(
            "AsyncStream[ChatCompletionChunk]",
            await self._create(stream_kwargs),
        )
        content: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        response_id: str | None = None
        model = kwargs["model"]
        finish_reason: str | None = None
        prompt_tokens = completion_tokens = 0
        try:
            async for chunk in stream:
                response_id = response_id or chunk.id
                model = chunk.model or model
                if chunk.usage is not None:
                    prompt_tokens = chunk.usage.prompt_tokens or 0
                    completion_tokens = chunk.usage.completion_tokens or 0
                for choice in chunk.choices[:1]:
                    finish_reason = choice.finish_reason or finish_reason
                    delta = choice.delta
                    if delta.content:
                        content.append(delta.content)
                    for part in delta.tool_calls or []:
                        call = calls.setdefault(part.index, {"id": "", "name": "", "args": []})
                        if part.id:
                            call["id"] = part.id
                        if part.function is not None:
                            if part.function.name and not call["name"]:
                                call["name"] = part.function.name
                            if part.function.arguments:
                                call["args"].append(part.function.arguments)
        finally:
            await stream.close()
        return LLMResponse(
            content="".join(content) or None,
            tool_calls=[
                ToolCall(id=c["id"] or _new_call_id(), name=c["name"], arguments="".join(c["args"]))
                for _, c in sorted(calls.items())
            ],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            response_id=response_id,
            model=model,
            finish_reason=finish_reason,
        )

    # ------------------------------------------------------------ errors

    def _status_failure(self, exc: openai.APIStatusError) -> _Failure:
        status = exc.status_code
        detail = self._clean(_server_message(exc))
        code = (exc.code or "").lower()
        url = self._url
        if status in (401, 403):
            what = "rejected the API key" if status == 401 else "refused access"
            return _Failure(
                LLMError(
                    LLM_AUTHENTICATION,
                    f"The LLM endpoint {url} {what} ({status}): {detail}. Check the API key "
                    "in your settings (or JUPYTER_CONVO_LLM_API_KEY) and that it may use "
                    f"model {self.config.model!r}.",
                    status,
                ),
                retryable=False,
            )
        if status == 429:
            quota = code == "insufficient_quota"
            return _Failure(
                LLMError(
                    LLM_RATE_LIMITED,
                    f"The LLM endpoint {url} is rate limiting requests (429): {detail}. "
                    "Wait a moment and try again, or check the account's rate limits and quota.",
                    status,
                ),
                retryable=not quota,
                retry_after=parse_retry_after(exc.response.headers),
            )
        if status >= 500 or status in RETRYABLE_STATUS:
            return _Failure(
                LLMError(
                    LLM_UNAVAILABLE,
                    f"The LLM endpoint {url} failed with HTTP {status}: {detail}.",
                    status,
                ),
                retryable=True,
                retry_after=parse_retry_after(exc.response.headers),
            )
        if _is_context_error(code, detail):
            return _Failure(
                LLMError(
                    LLM_CONTEXT_TOO_LONG,
                    f"The conversation is too long for model {self.config.model!r}: {detail}.",
                    status,
                ),
                retryable=False,
            )
        hint = ""
        if status == 404:
            hint = f" Check the model name {self.config.model!r} and the base URL."
        return _Failure(
            LLMError(
                LLM_BAD_REQUEST,
                f"The LLM endpoint {url} rejected the request ({status}): {detail}.{hint}",
                status,
            ),
            retryable=False,
        )

    def _final_error(self, failure: _Failure, attempts: int) -> LLMError:
        """The failure's error, saying how many attempts were made when there were several."""
        error = failure.error
        if attempts <= 1:
            return error
        message = f"{error.message} Gave up after {attempts} attempts."
        return LLMError(error.code, message, error.status_code)

    def _drop_stream_options(self, exc: openai.APIStatusError) -> bool:
        """Some endpoints reject ``stream_options``; retry those once without it."""
        if (
            self.config.stream
            and self._send_stream_options
            and exc.status_code in (400, 422)
            and "stream_options" in _server_message(exc)
        ):
            log.info("LLM endpoint %s does not take stream_options; usage may be 0", self._url)
            self._send_stream_options = False
            return True
        return False

    def _clean(self, text: str) -> str:
        """Server text made safe to show: secrets and masked key fragments hidden."""
        text = _KEY_LIKE.sub(SECRET_PLACEHOLDER, self.secrets.redact(text))
        return text.strip().rstrip(".")

    # ------------------------------------------------------------ helpers

    @property
    def _url(self) -> str:
        return display_url(self.endpoint.base_url if self.endpoint else None)

    def _openai(self) -> openai.AsyncOpenAI:
        import openai

        if self._client is None:
            assert self.endpoint is not None
            self._client = openai.AsyncOpenAI(
                base_url=self.endpoint.base_url,
                api_key=self.endpoint.api_key,
                max_retries=0,
                timeout=self.config.timeout,
            )
        return self._client

    async def _create(self, body: dict[str, Any]) -> ChatCompletion | AsyncStream[Any]:
        """``chat.completions.create`` without the SDK's per-message type transform.

        The SDK walks every message against its TypedDict annotations before sending it:
        about 0.3 ms per message, 0.2 s of CPU per step for a 750-message history (found
        by bench/bench_step.py). Our messages are plain JSON already, so the body goes out
        as is through the same client: same URL, headers, errors, streaming and parsing.
        """
        from openai import AsyncStream
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        stream = bool(body.get("stream"))
        return await self._openai().post(
            "/chat/completions",
            body=body,
            cast_to=ChatCompletion,
            stream=stream,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )

    def _call_kwargs(
        self,
        endpoint: Endpoint,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": endpoint.model,
            "messages": [dict(m) for m in messages],
        }
        if tools:
            kwargs["tools"] = [dict(t) for t in tools]
        if self.config.temperature is not None:
            kwargs["temperature"] = self.config.temperature
        if self.config.max_output_tokens is not None:
            kwargs["max_tokens"] = self.config.max_output_tokens
        return kwargs

    def _cassette_request(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "base_url": self._url,
            "messages": [dict(m) for m in messages],
            "tools": [dict(t) for t in tools] if tools else None,
            "params": {
                "temperature": self.config.temperature,
                "max_tokens": self.config.max_output_tokens,
                "stream": self.config.stream,
            },
        }

    def _record(
        self,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        error: dict[str, Any] | None,
        latency: float,
        attempt: int,
        *,
        final: bool,
    ) -> None:
        if self.cassette is None:
            return
        try:
            self.cassette.record(request, response, error, latency, attempt=attempt, final=final)
        except OSError as exc:
            log.error("Could not write the LLM cassette %s: %s", self.cassette.path, exc)

    def _cost(self, response: LLMResponse) -> float:
        return (
            response.prompt_tokens * self.config.input_cost_per_token
            + response.completion_tokens * self.config.output_cost_per_token
        )


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return exc.message


def _is_context_error(code: str, detail: str) -> bool:
    text = f"{code} {detail}".lower()
    return any(hint in text for hint in _CONTEXT_HINTS)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP libraries' transport errors, for whichever the installed SDK uses."""
    found: list[type[BaseException]] = []
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        error = getattr(module, "TransportError", None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"
