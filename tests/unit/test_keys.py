"""Server secret file and session keys (jupyter_convo.manager.keys)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
import threading
from pathlib import Path

import pytest

from jupyter_convo.manager.keys import (
    SECRET_BYTES,
    SECRET_FILE_NAME,
    ServerSecretError,
    load_or_create_server_secret,
    session_key,
)


def test_session_key_is_unpadded_urlsafe_hmac_sha256() -> None:
    secret = b"s" * 32
    expected = base64.urlsafe_b64encode(
        hmac.new(secret, b"conv-1", hashlib.sha256).digest()
    ).decode()
    key = session_key(secret, "conv-1")
    assert key == expected.rstrip("=")
    assert len(key) == 43
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)


def test_session_keys_differ_per_conversation_and_secret() -> None:
    a = session_key(b"a" * 32, "one")
    assert a == session_key(b"a" * 32, "one")
    assert a != session_key(b"a" * 32, "two")
    assert a != session_key(b"b" * 32, "one")


@pytest.mark.parametrize(("secret", "conversation_id"), [(b"", "x"), (b"k" * 32, "")])
def test_session_key_refuses_empty_inputs(secret: bytes, conversation_id: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        session_key(secret, conversation_id)


def test_secret_file_is_created_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        secret = load_or_create_server_secret(tmp_path / "data")
    finally:
        os.umask(old)
    path = tmp_path / "data" / SECRET_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) == SECRET_BYTES
    assert path.read_bytes() == secret
    assert load_or_create_server_secret(tmp_path / "data") == secret
    # No temp files are left beside it.
    assert [p.name for p in (tmp_path / "data").iterdir()] == [SECRET_FILE_NAME]


def test_loose_mode_is_tightened(tmp_path: Path) -> None:
    secret = load_or_create_server_secret(tmp_path)
    path = tmp_path / SECRET_FILE_NAME
    path.chmod(0o644)
    assert load_or_create_server_secret(tmp_path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_truncated_secret_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(ServerSecretError, match="holds 5 bytes"):
        load_or_create_server_secret(tmp_path)


def test_concurrent_creators_agree_on_one_secret(tmp_path: Path) -> None:
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(load_or_create_server_secret(tmp_path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE_NAME]
