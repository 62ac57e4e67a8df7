"""Per-user defaults (LLM model, base URL, limits) and secrets, as files under the data root.

``settings/<user>.json`` holds what may be shown; ``settings/<user>.secrets.json`` (mode 0600,
created that way so it is never briefly readable by others) holds the LLM API key and named
secrets. Reads meant for display (``get``) report only *whether* a key is set and the
secret *names*. Every write replaces its file atomically (temp file + ``os.replace``).

A setting left unset (None) falls through to the server's config, then the environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from ..events.redact import MIN_SECRET_LENGTH, SecretRegistry

log = logging.getLogger(__name__)

SETTINGS_DIR = "settings"
# Named secrets are exported to the agent's terminal under their names.
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_SAFE_USER_CHARS = re.compile(r"[A-Za-z0-9_-]")
_MAX_FILE_STEM = 160

ClearableField = Literal[
    "llm_model",
    "llm_base_url",
    "confirmation_mode",
    "max_iterations",
    "max_budget_per_task",
    "sandbox",
    "llm_api_key",
    "secrets",
]


def check_secret_length(value: SecretStr, what: str, hint: str = "") -> None:
    """Refuse a secret too short to be hidden: the redactor leaves values under
    ``MIN_SECRET_LENGTH`` characters alone (they would hide ordinary words), so such a
    secret would show in clear in events, titles and exports. "" (remove it) passes."""
    length = len(value.get_secret_value())
    if 0 < length < MIN_SECRET_LENGTH:
        raise ValueError(
            f"{what} has {length} characters; a secret needs at least {MIN_SECRET_LENGTH} "
            f"to be hidden reliably wherever it appears{hint}"
        )


class SettingsError(ValueError):
    """A settings file exists but cannot be read as settings."""


def _check_base_url(value: str | None) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError(f"llm_base_url must start with http:// or https://, got {value!r}")
    return value


BaseUrl = Annotated[str | None, AfterValidator(_check_base_url)]


class _DisplaySettings(BaseModel):
    """The fields of ``settings/<user>.json``: safe to show, never a secret."""

    model_config = ConfigDict(extra="forbid")

    llm_model: str | None = None
    llm_base_url: BaseUrl = None
    # true/false mean "risky"/"never" (the agent's ConfirmationPolicy).
    confirmation_mode: bool | Literal["never", "risky", "always"] | None = None
    max_iterations: int | None = Field(default=None, ge=1)
    max_budget_per_task: float | None = Field(default=None, gt=0)
    sandbox: str | None = None


class UserSettings(_DisplaySettings):
    """A user's settings as shown to them: whether a key is set, never its value."""

    llm_api_key_set: bool = False
    secret_names: list[str] = Field(default_factory=list)


class SettingsUpdate(BaseModel):
    """A change to a user's settings.

    None leaves a field unchanged. An empty string clears a text field and removes the
    API key; in ``secrets`` an empty value removes that secret. ``clear`` resets any field
    (numbers and flags included) to unset, so the server's default applies again.
    """

    model_config = ConfigDict(extra="forbid")

    llm_model: str | None = None
    llm_base_url: BaseUrl = None
    # true/false mean "risky"/"never" (the agent's ConfirmationPolicy).
    confirmation_mode: bool | Literal["never", "risky", "always"] | None = None
    max_iterations: int | None = Field(default=None, ge=1)
    max_budget_per_task: float | None = Field(default=None, gt=0)
    sandbox: str | None = None
    llm_api_key: SecretStr | None = None
    secrets: dict[str, SecretStr] | None = None
    clear: list[ClearableField] = Field(default_factory=list)

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, SecretStr] | None) -> dict[str, SecretStr] | None:
        for name, secret in (value or {}).items():
            if not SECRET_NAME.match(name):
                raise ValueError(
                    f"secret name {name!r} must look like an environment variable"
                    " (letters, digits, underscore; not starting with a digit)"
                )
            check_secret_length(secret, f"secret {name}")
        return value

    @field_validator("llm_api_key")
    @classmethod
    def _key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret_length(
                value,
                "llm_api_key",
                hint="; for a local server that needs no key, leave it unset",
            )
        return value

    def changed_fields(self) -> list[str]:
        """Names of the fields this update touches (for logs: names only, no values)."""
        return sorted(
            name
            for name in self.model_fields_set
            if name != "clear" and getattr(self, name) is not None
        ) + [f"clear:{name}" for name in self.clear]


class _Secrets(BaseModel):
    """The content of ``settings/<user>.secrets.json``."""

    model_config = ConfigDict(extra="forbid")

    llm_api_key: str | None = None
    secrets: dict[str, str] = Field(default_factory=dict)


def _shown(display: _DisplaySettings, secrets: _Secrets) -> UserSettings:
    return UserSettings(
        **display.model_dump(),
        llm_api_key_set=bool(secrets.llm_api_key),
        secret_names=sorted(secrets.secrets),
    )


def user_file_stem(user_id: str) -> str:
    """A filename-safe, injective spelling of a user id.

    Letters, digits, ``_`` and ``-`` stay; every other byte (``.`` and ``/`` included)
    becomes ``%XX``, so no id can name a path outside the settings directory or collide
    with another id's file. Very long ids use a hash (``%%`` never comes from encoding).
    """
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    stem = "".join(
        char if _SAFE_USER_CHARS.fullmatch(char) else "".join(f"%{b:02X}" for b in char.encode())
        for char in user_id
    )
    if len(stem) > _MAX_FILE_STEM:
        stem = "%%" + hashlib.sha256(user_id.encode()).hexdigest()
    return stem


def _atomic_write(path: Path, data: dict[str, Any], mode: int) -> None:
    """Write JSON to ``path`` via a temp file created with ``mode``, then rename over it."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class SettingsStore:
    """Users' settings under ``<root>/settings/``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.directory = self.root / SETTINGS_DIR
        self._lock = threading.Lock()

    # --- paths --------------------------------------------------------------------------

    def display_path(self, user_id: str) -> Path:
        return self.directory / f"{user_file_stem(user_id)}.json"

    def secrets_path(self, user_id: str) -> Path:
        return self.directory / f"{user_file_stem(user_id)}.secrets.json"

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    # --- reading -------------------------------------------------------------------------

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{path} must hold a JSON object")
        return data

    def _display(self, user_id: str) -> _DisplaySettings:
        path = self.display_path(user_id)
        try:
            return _DisplaySettings.model_validate(self._read_json(path))
        except ValidationError as exc:
            raise SettingsError(f"{path} holds invalid settings: {exc}") from exc

    def _secrets(self, user_id: str) -> _Secrets:
        path = self.secrets_path(user_id)
        self._tighten(path)
        try:
            return _Secrets.model_validate(self._read_json(path))
        except ValidationError as exc:
            # The message would quote values: name only the fields.
            fields = ", ".join(".".join(map(str, error["loc"])) for error in exc.errors())
            raise SettingsError(f"{path} holds invalid secrets (fields: {fields})") from None

    @staticmethod
    def _tighten(path: Path) -> None:
        """Put a secrets file loosened by hand back to 0600."""
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            return
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
            os.chmod(path, 0o600)

    def get(self, user_id: str) -> UserSettings:
        """The user's settings for display: secret values never leave through here."""
        with self._lock:
            display = self._display(user_id)
            secrets = self._secrets(user_id)
        return _shown(display, secrets)

    def get_secrets(self, user_id: str) -> dict[str, str]:
        """The user's named secrets (name -> value), for the agent's environment."""
        with self._lock:
            return dict(self._secrets(user_id).secrets)

    def get_llm_api_key(self, user_id: str) -> str | None:
        """The user's LLM API key, or None to fall through to the server's."""
        with self._lock:
            return self._secrets(user_id).llm_api_key

    # --- writing ----------------------------------------------------------------------------

    def update(self, user_id: str, update: SettingsUpdate) -> UserSettings:
        """Apply ``update`` and return the new display settings."""
        with self._lock:
            display = self._display(user_id).model_dump()
            secrets = self._secrets(user_id)
            secrets_before = secrets.model_dump()
            for name in _DisplaySettings.model_fields:
                value = getattr(update, name)
                if name in update.clear:
                    if value is not None:
                        raise ValueError(f"{name} is both set and cleared in one update")
                    display[name] = None
                elif isinstance(value, str) and value == "":
                    display[name] = None
                elif value is not None:
                    display[name] = value
            self._apply_secrets(secrets, update)
            new_display = _DisplaySettings.model_validate(display)
            self._ensure_directory()
            _atomic_write(
                self.display_path(user_id), new_display.model_dump(exclude_none=True), 0o600
            )
            if secrets.model_dump() != secrets_before:
                _atomic_write(
                    self.secrets_path(user_id), secrets.model_dump(exclude_none=True), 0o600
                )
            log.info("Updated settings of user %s: %s", user_id, ", ".join(update.changed_fields()))
            return _shown(new_display, secrets)

    @staticmethod
    def _apply_secrets(secrets: _Secrets, update: SettingsUpdate) -> None:
        if "llm_api_key" in update.clear:
            if update.llm_api_key is not None:
                raise ValueError("llm_api_key is both set and cleared in one update")
            secrets.llm_api_key = None
        elif update.llm_api_key is not None:
            secrets.llm_api_key = update.llm_api_key.get_secret_value() or None
        if "secrets" in update.clear:
            if update.secrets:
                raise ValueError("secrets are both set and cleared in one update")
            secrets.secrets = {}
        for name, value in (update.secrets or {}).items():
            if value.get_secret_value():
                secrets.secrets[name] = value.get_secret_value()
            else:
                secrets.secrets.pop(name, None)


def known_secrets(
    *,
    settings_store: SettingsStore | None = None,
    user_ids: Iterable[str | None] = (),
    extra: Iterable[str | None] = (),
    environ: Mapping[str, str] | None = None,
    include_environ: bool = True,
) -> SecretRegistry:
    """Every secret the server knows for ``user_ids``: their API keys and named secrets,
    ``extra`` values (server config keys, session keys) and credential-named environment
    variables. Exports, titles and anything else leaving the server pass through it."""
    registry = SecretRegistry()
    if settings_store is not None:
        for user_id in {u for u in user_ids if u}:
            try:
                registry.add(settings_store.get_llm_api_key(user_id))
                registry.add_many(settings_store.get_secrets(user_id).values())
            except ValueError as exc:  # SettingsError: a damaged file must not block this
                log.warning("Could not read the secrets of user %s: %s", user_id, exc)
    registry.add_many(extra)
    if include_environ:
        registry.add_from_environ(environ)
    return registry
