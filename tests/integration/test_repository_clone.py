"""Cloning a repository into a workspace: a local bare repository, and git's http-backend
behind a token check (jupyter_convo.testing.git_http), with real git processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from jupyter_convo.agent.repository import RepositoryError, RepositorySpec, clone_repository
from jupyter_convo.testing.git_http import GitHTTPServer, make_bare_repository

pytestmark = pytest.mark.integration

TOKEN = "tok-secret-98765"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """``project.git`` with ``main`` (AGENTS.md, a skill) and ``dev`` (one more file)."""
    return make_bare_repository(
        tmp_path / "served" / "project.git",
        {
            "main": {
                "AGENTS.md": "Run the tests with `make test`.\n",
                ".convo/skills/deploy.md": "How we deploy.\n",
            },
            "dev": {"dev.txt": "dev only\n"},
        },
    )


@pytest.fixture
def http_server(bare_repo: Path) -> Iterator[GitHTTPServer]:
    with GitHTTPServer(bare_repo.parent, token=TOKEN) as server:
        yield server


async def test_a_local_bare_repository_is_cloned_on_its_branch(
    bare_repo: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    spec = RepositorySpec(url=str(bare_repo), branch="dev")
    assert await clone_repository(spec, workspace, {})
    assert (workspace / "dev.txt").read_text() == "dev only\n"
    assert (workspace / "AGENTS.md").is_file()
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=workspace).strip() == "dev"
    # A restarted conversation keeps its clone (and its work in it).
    (workspace / "work.txt").write_text("mine")
    assert not await clone_repository(spec, workspace, {})
    assert (workspace / "work.txt").read_text() == "mine"


async def test_an_http_clone_uses_the_token_from_the_secrets_and_never_stores_it(
    http_server: GitHTTPServer, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    spec = RepositorySpec(url=http_server.url("project.git"))
    assert await clone_repository(spec, workspace, {"GIT_TOKEN": SecretStr(TOKEN)})
    assert (workspace / ".convo" / "skills" / "deploy.md").is_file()
    assert any(allowed for _, allowed in http_server.requests)
    # The token went as a header, and nowhere into the clone.
    for path in (workspace / ".git").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert "extraheader" not in (workspace / ".git" / "config").read_text().lower()


async def test_a_named_secret_is_used_for_the_token(
    http_server: GitHTTPServer, tmp_path: Path
) -> None:
    spec = RepositorySpec(url=http_server.url("project.git"), token_secret="MY_REPO_TOKEN")
    secrets = {"MY_REPO_TOKEN": SecretStr(TOKEN), "GIT_TOKEN": SecretStr("wrong-token-1")}
    assert await clone_repository(spec, tmp_path / "ws", secrets)


@pytest.mark.parametrize(
    ("url", "branch", "secrets", "message"),
    [
        ("{http}", None, {}, "cannot clone"),  # no token: 401, no prompt, no hang
        ("{http}", None, {"GIT_TOKEN": "wrong-token-1"}, "cannot clone"),
        ("{local}", "no-such-branch", {}, "no-such-branch"),
        ("{tmp}/missing.git", None, {}, "no such repository"),
        ("http://127.0.0.1:9/nothing.git", None, {}, "cannot clone"),
    ],
)
async def test_bad_urls_tokens_and_branches_are_clear_errors(
    http_server: GitHTTPServer,
    bare_repo: Path,
    tmp_path: Path,
    url: str,
    branch: str | None,
    secrets: dict[str, str],
    message: str,
) -> None:
    resolved = url.format(http=http_server.url("project.git"), local=bare_repo, tmp=tmp_path)
    spec = RepositorySpec(url=resolved, branch=branch)
    with pytest.raises(RepositoryError, match=message) as caught:
        await clone_repository(spec, tmp_path / "ws", {k: SecretStr(v) for k, v in secrets.items()})
    assert "wrong-token-1" not in str(caught.value)


async def test_a_non_empty_workspace_is_not_cloned_into(bare_repo: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("keep")
    with pytest.raises(RepositoryError, match="not empty"):
        await clone_repository(RepositorySpec(url=str(bare_repo)), workspace, {})


@pytest.mark.parametrize(
    "url",
    ["--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x", "https://user:pw@host/r.git"],
)
def test_dangerous_or_token_bearing_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        RepositorySpec(url=url)


def test_branch_names_that_look_like_options_are_refused() -> None:
    with pytest.raises(ValidationError, match="branch"):
        RepositorySpec(url="/r.git", branch="--upload-pack=x")
