"""Secret redaction: values hidden as typed and as JSON spells them; noise ignored."""

from __future__ import annotations

import json
import threading

import pytest

from jupyter_convo.events.redact import MIN_SECRET_LENGTH, SECRET_PLACEHOLDER, SecretRegistry
from jupyter_convo.events.schema import CommandOutputEvent, MessageEvent, event_to_json

KEY = "sk-test-0123456789abcdef"


def test_a_secret_is_hidden_in_plain_text() -> None:
    secrets = SecretRegistry([KEY])
    assert secrets.redact(f"export OPENAI_API_KEY={KEY}; echo {KEY}") == (
        f"export OPENAI_API_KEY={SECRET_PLACEHOLDER}; echo {SECRET_PLACEHOLDER}"
    )


def test_text_without_secrets_is_returned_unchanged() -> None:
    secrets = SecretRegistry([KEY])
    assert secrets.redact("nothing to see") == "nothing to see"
    assert SecretRegistry().redact(f"no registry entries {KEY}") == f"no registry entries {KEY}"
    assert secrets.redact("") == ""


def test_a_secret_is_hidden_in_a_serialized_event() -> None:
    secrets = SecretRegistry([KEY])
    line = event_to_json(CommandOutputEvent(output=f"key is {KEY}\n", exit_code=0))
    redacted = secrets.redact(line)
    assert KEY not in redacted
    assert json.loads(redacted)["output"] == f"key is {SECRET_PLACEHOLDER}\n"


def test_a_secret_with_json_escapes_is_hidden_in_json() -> None:
    secret = 'pa"ss\\word\n42'
    secrets = SecretRegistry([secret])
    line = event_to_json(MessageEvent(source="user", text=f"login with {secret} please"))
    assert json.dumps(secret)[1:-1] in line  # stored escaped, not as typed
    redacted = secrets.redact(line)
    assert json.loads(redacted)["text"] == f"login with {SECRET_PLACEHOLDER} please"


def test_a_non_ascii_secret_is_hidden_however_json_spells_it() -> None:
    secret = 'mötörhead"pässwörd'
    secrets = SecretRegistry([secret])
    event_line = event_to_json(MessageEvent(source="user", text=f"[{secret}]"))  # UTF-8
    ascii_line = json.dumps({"text": f"[{secret}]"})  # \u escapes
    for line in (event_line, ascii_line):
        assert json.loads(secrets.redact(line))["text"] == f"[{SECRET_PLACEHOLDER}]"


def test_a_longer_secret_containing_a_shorter_one_is_hidden_whole() -> None:
    secrets = SecretRegistry(["abcdef", "abcdef-ghijkl"])
    assert secrets.redact("x abcdef-ghijkl y abcdef") == (
        f"x {SECRET_PLACEHOLDER} y {SECRET_PLACEHOLDER}"
    )


def test_regex_characters_in_secrets_are_literal() -> None:
    secrets = SecretRegistry(["a.b*c+d?(e)"])
    assert secrets.redact("a.b*c+d?(e) aXbbcd") == f"{SECRET_PLACEHOLDER} aXbbcd"


def test_short_and_empty_values_are_ignored() -> None:
    secrets = SecretRegistry()
    short = "x" * (MIN_SECRET_LENGTH - 1)
    secrets.add_many([short, "", None, "12345"])
    assert len(secrets) == 0
    assert short not in secrets
    assert secrets.redact(f"{short} 12345 stay visible") == f"{short} 12345 stay visible"
    secrets.add("x" * MIN_SECRET_LENGTH)
    assert "x" * MIN_SECRET_LENGTH in secrets


def test_adding_a_secret_twice_changes_nothing() -> None:
    secrets = SecretRegistry([KEY])
    size = len(secrets)
    secrets.add(KEY)
    assert len(secrets) == size
    assert secrets.redact(KEY) == SECRET_PLACEHOLDER


def test_credential_like_environment_values_are_registered() -> None:
    environ = {
        "OPENAI_API_KEY": "sk-from-env-123456",
        "GITHUB_TOKEN": "ghp_abcdefghijkl",
        "DB_PASSWORD": "hunter2hunter2",
        "my_client_secret": "lowercase-name-secret",
        "AWS_CREDENTIALS": "aws-credential-value",
        "HOME": "/home/alice",
        "PATH": "/usr/bin:/bin",
        "SHORT_TOKEN": "abc",
    }
    secrets = SecretRegistry()
    secrets.add_from_environ(environ)
    for name in ("OPENAI_API_KEY", "GITHUB_TOKEN", "DB_PASSWORD", "my_client_secret"):
        assert environ[name] in secrets, name
    assert environ["AWS_CREDENTIALS"] in secrets
    assert "/home/alice" not in secrets
    assert "/usr/bin:/bin" not in secrets
    assert "abc" not in secrets
    assert secrets.redact("cd /home/alice && use sk-from-env-123456") == (
        f"cd /home/alice && use {SECRET_PLACEHOLDER}"
    )


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_CONVO_TEST_API_KEY", "value-from-os-environ")
    secrets = SecretRegistry()
    secrets.add_from_environ()
    assert "value-from-os-environ" in secrets


def test_secrets_added_from_many_threads_are_all_hidden() -> None:
    secrets = SecretRegistry()
    values = [f"secret-value-{i:04d}" for i in range(200)]

    def add(chunk: list[str]) -> None:
        for value in chunk:
            secrets.add(value)

    threads = [threading.Thread(target=add, args=(values[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert secrets.redact(values[123]) == SECRET_PLACEHOLDER
    assert all(value in secrets for value in values)
