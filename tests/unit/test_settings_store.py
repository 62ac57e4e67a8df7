"""SettingsStore on real files: display vs secrets, 0600, updates, path-safe user ids."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from jupyter_convo.store.settings import (
    SettingsError,
    SettingsStore,
    SettingsUpdate,
    UserSettings,
    user_file_stem,
)

API_KEY = "sk-test-key-0123456789abcdef"
GH_TOKEN = "ghp_0123456789tokenvalue"


@pytest.fixture
def store(tmp_path: Path) -> SettingsStore:
    return SettingsStore(tmp_path / "convo")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 0: any mode narrower than 0666 comes from our own os.open, not the umask."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def every_file_text(root: Path, *, except_secrets: bool) -> str:
    texts = []
    for path in root.rglob("*"):
        if path.is_file() and not (except_secrets and path.name.endswith(".secrets.json")):
            texts.append(path.read_text(encoding="utf-8"))
    return "\n".join(texts)


def test_unknown_user_has_nothing_set(store: SettingsStore) -> None:
    assert store.get("alice") == UserSettings()
    assert store.get_secrets("alice") == {}
    assert store.get_llm_api_key("alice") is None
    assert not store.directory.exists()  # reading creates nothing


def test_update_then_get_shows_settings_but_never_secret_values(
    store: SettingsStore, permissive_umask: None
) -> None:
    shown = store.update(
        "alice",
        SettingsUpdate(
            llm_model="gpt-4o",
            llm_base_url="http://127.0.0.1:8000/v1",
            confirmation_mode=True,
            max_iterations=40,
            max_budget_per_task=2.5,
            sandbox="docker",
            llm_api_key=SecretStr(API_KEY),
            secrets={"GITHUB_TOKEN": SecretStr(GH_TOKEN)},
        ),
    )
    assert shown == store.get("alice")
    assert shown.llm_model == "gpt-4o"
    assert shown.llm_base_url == "http://127.0.0.1:8000/v1"
    assert (shown.confirmation_mode, shown.max_iterations, shown.max_budget_per_task) == (
        True,
        40,
        2.5,
    )
    assert shown.sandbox == "docker"
    assert shown.llm_api_key_set is True
    assert shown.secret_names == ["GITHUB_TOKEN"]
    for text in (shown.model_dump_json(), repr(shown), str(shown.model_dump())):
        assert API_KEY not in text and GH_TOKEN not in text

    display = store.display_path("alice")
    secrets = store.secrets_path("alice")
    assert json.loads(display.read_text())["llm_model"] == "gpt-4o"
    leaked = every_file_text(store.root, except_secrets=True)
    assert API_KEY not in leaked and GH_TOKEN not in leaked
    assert mode_of(secrets) == 0o600
    assert mode_of(display) == 0o600
    assert mode_of(store.directory) == 0o700
    assert json.loads(secrets.read_text()) == {
        "llm_api_key": API_KEY,
        "secrets": {"GITHUB_TOKEN": GH_TOKEN},
    }
    assert store.get_llm_api_key("alice") == API_KEY
    assert store.get_secrets("alice") == {"GITHUB_TOKEN": GH_TOKEN}
    assert [p.name for p in store.directory.iterdir() if p.name.endswith(".tmp")] == []


def test_none_leaves_fields_unchanged_and_blank_clears(store: SettingsStore) -> None:
    store.update(
        "bob",
        SettingsUpdate(
            llm_model="m1",
            max_iterations=10,
            llm_api_key=SecretStr(API_KEY),
            secrets={"A_TOKEN": SecretStr("value-aaaaaa"), "B_TOKEN": SecretStr("value-bbbbbb")},
        ),
    )
    unchanged = store.update("bob", SettingsUpdate(confirmation_mode=False))
    assert (unchanged.llm_model, unchanged.max_iterations) == ("m1", 10)
    assert unchanged.confirmation_mode is False
    assert unchanged.llm_api_key_set and unchanged.secret_names == ["A_TOKEN", "B_TOKEN"]

    cleared = store.update(
        "bob",
        SettingsUpdate(llm_model="", llm_api_key=SecretStr(""), secrets={"A_TOKEN": SecretStr("")}),
    )
    assert cleared.llm_model is None
    assert cleared.llm_api_key_set is False and store.get_llm_api_key("bob") is None
    assert cleared.secret_names == ["B_TOKEN"]
    assert store.get_secrets("bob") == {"B_TOKEN": "value-bbbbbb"}
    assert "llm_model" not in json.loads(store.display_path("bob").read_text())

    reset = store.update("bob", SettingsUpdate(clear=["max_iterations", "secrets"]))
    assert reset.max_iterations is None and reset.secret_names == []
    assert reset.confirmation_mode is False  # untouched by the clear


def test_set_and_clear_of_one_field_is_refused(store: SettingsStore) -> None:
    with pytest.raises(ValueError, match="max_iterations is both set and cleared"):
        store.update("c", SettingsUpdate(max_iterations=3, clear=["max_iterations"]))
    with pytest.raises(ValueError, match="llm_api_key is both set and cleared"):
        store.update("c", SettingsUpdate(llm_api_key=SecretStr(API_KEY), clear=["llm_api_key"]))
    assert store.get("c") == UserSettings()  # nothing was written


def test_bad_updates_name_the_field() -> None:
    with pytest.raises(ValueError, match="llm_base_url must start with http"):
        SettingsUpdate(llm_base_url="file:///etc/passwd")
    with pytest.raises(ValueError, match="secret name '1BAD' must look like"):
        SettingsUpdate(secrets={"1BAD": SecretStr("x")})
    with pytest.raises(ValueError, match="max_iterations"):
        SettingsUpdate(max_iterations=0)
    with pytest.raises(ValueError, match="llm_api_kee"):
        SettingsUpdate.model_validate({"llm_api_kee": "typo"})
    with pytest.raises(ValueError, match="clear"):
        SettingsUpdate.model_validate({"clear": ["no_such_field"]})
    update = SettingsUpdate(llm_api_key=SecretStr(API_KEY))
    assert API_KEY not in repr(update) and API_KEY not in str(update)


def test_logs_name_fields_never_values(
    store: SettingsStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="jupyter_convo"):
        store.update(
            "dora",
            SettingsUpdate(llm_api_key=SecretStr(API_KEY), secrets={"GH": SecretStr(GH_TOKEN)}),
        )
    assert "llm_api_key" in caplog.text
    assert API_KEY not in caplog.text and GH_TOKEN not in caplog.text


@pytest.mark.parametrize(
    "user_id",
    [
        "../x",
        "../../etc/passwd",
        "/etc/passwd",
        "a/b",
        ".",
        "..",
        "~root",
        "a\\b",
        "é lise",
        "x" * 500,
    ],
)
def test_user_ids_cannot_escape_the_settings_directory(store: SettingsStore, user_id: str) -> None:
    store.update(user_id, SettingsUpdate(llm_model="m", llm_api_key=SecretStr(API_KEY)))
    for path in (store.display_path(user_id), store.secrets_path(user_id)):
        assert path.parent == store.directory
        assert path.resolve().parent == store.directory.resolve()
        assert path.exists()
    assert store.get(user_id).llm_model == "m"
    everything = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*"))
    assert everything == sorted(
        [
            "settings",
            f"settings/{store.display_path(user_id).name}",
            f"settings/{store.secrets_path(user_id).name}",
        ]
    )


def test_user_file_names_never_collide() -> None:
    ids = [
        "a.b",
        "a%2Eb",
        "a/b",
        "a%2Fb",
        "a_b",
        "A.b",
        "a.secrets",
        "a",
        "%%x",
        "x" * 500,
        "x" * 501,
    ]
    stems = [user_file_stem(user_id) for user_id in ids]
    assert len(set(stems)) == len(ids)
    names = {f"{stem}.json" for stem in stems} | {f"{stem}.secrets.json" for stem in stems}
    assert len(names) == 2 * len(ids)
    assert all(len(stem) <= 160 and "/" not in stem and "." not in stem for stem in stems)
    with pytest.raises(ValueError, match="user_id"):
        user_file_stem("")


def test_secrets_file_loosened_by_hand_is_tightened(
    store: SettingsStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.update("erin", SettingsUpdate(llm_api_key=SecretStr(API_KEY)))
    secrets = store.secrets_path("erin")
    os.chmod(secrets, 0o644)
    with caplog.at_level(logging.WARNING, logger="jupyter_convo"):
        assert store.get("erin").llm_api_key_set
    assert mode_of(secrets) == 0o600
    assert "readable by others" in caplog.text


def test_damaged_files_are_reported_with_their_path(store: SettingsStore) -> None:
    store.update("fay", SettingsUpdate(llm_model="m", llm_api_key=SecretStr(API_KEY)))
    store.display_path("fay").write_text("{not json", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"fay\.json is not valid JSON"):
        store.get("fay")
    store.display_path("fay").write_text('{"llm_model": "m"}', encoding="utf-8")
    store.secrets_path("fay").write_text(f'{{"llm_api_key": 5, "x": "{API_KEY}"}}')
    with pytest.raises(SettingsError, match="invalid secrets") as caught:
        store.get_secrets("fay")
    assert API_KEY not in str(caught.value)
