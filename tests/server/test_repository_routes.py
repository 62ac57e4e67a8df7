"""A conversation that starts as a clone, through the server: the create request's
repository and branch, the token from the user's secrets, the metadata and search."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import Api
from test_routes import files_containing, services_of

from jupyter_convo.testing import ScriptedLLM, reply
from jupyter_convo.testing.git_http import GitHTTPServer, make_bare_repository

TOKEN = "tok-route-secret-4242"


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitHTTPServer]:
    make_bare_repository(
        tmp_path / "git" / "project.git",
        {
            "main": {"AGENTS.md": "Use make.\n"},
            "dev": {"dev.txt": "dev only\n", ".convo/skills/deploy.md": "Deploy with care.\n"},
        },
    )
    with GitHTTPServer(tmp_path / "git", token=TOKEN) as server:
        yield server


async def test_a_conversation_starts_as_a_clone_and_is_found_by_repository(
    alice: Api,
    git_server: GitHTTPServer,
    scripted_llm: ScriptedLLM,
    jp_serverapp: Any,
    convo_data_dir: Path,
) -> None:
    scripted_llm.add_script([reply("Cloned and read.")])
    await alice.call("PUT", "settings", body={"secrets": {"GIT_TOKEN": TOKEN}})
    url = git_server.url("project.git")
    task = await alice.start("Look at the repo", repository=url, branch="dev")
    cid = task["conversation_id"]

    meta = services_of(jp_serverapp).store.get(cid)
    assert meta is not None and meta.repository == url
    workspace = services_of(jp_serverapp).workspace_dir(meta)
    assert (workspace / "dev.txt").read_text() == "dev only\n"
    found = await alice.get("conversations/search", repository=url)
    assert [item["id"] for item in found["items"]] == [cid]
    assert (await alice.get("conversations/search", repository="other"))["items"] == []
    # The clone's repository instructions feed the skills route.
    skills = (await alice.get(f"conversations/{cid}/skills"))["skills"]
    assert [s["name"] for s in skills] == ["AGENTS", "deploy"]

    # The token is in the user's secrets file and nowhere else: not in the events, the
    # runtime's logs, the metadata, nor the clone's .git.
    assert files_containing(convo_data_dir, TOKEN) == [
        convo_data_dir / "settings" / "alice.secrets.json"
    ]
    assert files_containing(workspace, TOKEN) == []
    events = await alice.get(f"conversations/{cid}/events/search", limit=100)
    assert TOKEN not in json.dumps(events)
    assert any(e["kind"] == "status" and "cloning" in e.get("message", "") for e in events["items"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"repository": "--upload-pack=x"}, "repository"),
        ({"repository": "https://user:pw@example.com/r.git"}, "secrets"),
        ({"repository": "/etc"}, "outside the Jupyter root"),
        ({"repository": "file:///srv/r.git"}, "as a path"),
        ({"branch": "dev"}, "needs a repository"),
    ],
)
async def test_bad_repositories_are_refused_before_anything_starts(
    alice: Api, body: dict[str, Any], message: str
) -> None:
    error = await alice.error("POST", "conversations", body={"initial_message": "x", **body})
    assert error.code == 400 and message in error.message, error.message


async def test_a_bad_branch_is_a_clear_start_error(alice: Api, git_server: GitHTTPServer) -> None:
    await alice.call("PUT", "settings", body={"secrets": {"GIT_TOKEN": TOKEN}})
    updates = await alice.call(
        "POST",
        "conversations/stream-start",
        body={
            "initial_message": "x",
            "repository": git_server.url("project.git"),
            "branch": "no-such-branch",
        },
    )
    final = updates[-1]
    assert final["status"] == "ERROR", updates
    assert "no-such-branch" in final["detail"] and "cannot clone" in final["detail"]
    assert TOKEN not in json.dumps(updates)
