"""The server secret and the per-conversation session keys derived from it.

A runtime only accepts requests carrying its conversation's session key. Keys are derived
(HMAC-SHA256 of the conversation id under the server secret), so nothing but the secret has
to be stored, and a restarted server can reach the runtimes it left running.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "server_secret"
SECRET_BYTES = 32


class ServerSecretError(RuntimeError):
    """The server secret file exists but cannot be used."""


def session_key(secret: bytes, conversation_id: str) -> str:
    """urlsafe-base64(HMAC-SHA256(secret, conversation_id)) without ``=`` padding."""
    if not secret:
        raise ValueError("the server secret is empty")
    if not conversation_id:
        raise ValueError("the conversation id is empty")
    digest = hmac.new(secret, conversation_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def load_or_create_server_secret(data_dir: Path) -> bytes:
    """The secret in ``<data_dir>/server_secret``, created (mode 0600) on first use.

    The file appears whole or not at all: it is written to a private temp file and linked
    into place, so two servers starting at once agree on one secret.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE_NAME
    if not path.exists():
        _create_secret_file(path)
    return _read_secret_file(path)


def _create_secret_file(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(SECRET_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
            log.info("created the server secret %s", path)
        except FileExistsError:
            log.debug("another process created the server secret first")
    finally:
        tmp.unlink(missing_ok=True)


def _read_secret_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("server secret %s had mode %o; tightening it to 0600", path, mode)
        os.chmod(path, 0o600)
    data = path.read_bytes()
    if len(data) < SECRET_BYTES:
        raise ServerSecretError(
            f"server secret {path} holds {len(data)} bytes, expected {SECRET_BYTES}; "
            "remove it to create a new one (running runtimes then need a restart)"
        )
    return data
