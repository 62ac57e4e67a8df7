"""Start a conversation's workspace as a clone of a git repository.

The token for a private repository comes from the user's named secrets (``GITHUB_TOKEN``
for github.com, ``GITLAB_TOKEN`` for gitlab.com, ``BITBUCKET_TOKEN`` for bitbucket.org,
else ``GIT_TOKEN``; or the secret the request names). It reaches git only through
``GIT_CONFIG_*`` environment variables for this one process (an ``http.extraHeader``),
so it is never written to the clone's ``.git/config``, never on a command line, and git's
messages are redacted before they are shown. git never prompts (``GIT_TERMINAL_PROMPT=0``)
and a clone that stalls is stopped, so a bad URL or branch is a clear error, not a hang.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ..spawn import with_default_signals

CLONE_TIMEOUT = 600.0  # seconds; a stalled transfer is cut sooner (http.lowSpeedTime)
PROVIDER_SECRETS = {
    "github.com": "GITHUB_TOKEN",
    "gitlab.com": "GITLAB_TOKEN",
    "bitbucket.org": "BITBUCKET_TOKEN",
}
DEFAULT_SECRET = "GIT_TOKEN"
_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:owner/repo.git
STDERR_TAIL = 1_500


class RepositoryError(RuntimeError):
    """The repository could not be cloned; the message says why (secrets hidden)."""


class RepositorySpec(BaseModel):
    """A repository to clone into the workspace when the conversation starts."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2_000)
    branch: str | None = Field(default=None, min_length=1, max_length=250)
    # The user's secret holding the token (default: by host, see the module doc).
    token_secret: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("-") or any(c in value for c in "\x00\n\r"):
            raise ValueError("not a git URL or path")
        if "::" in value.split("/")[0]:
            raise ValueError("git remote helpers (transport::address) are not allowed")
        if value.startswith(("https://", "http://")) and urlsplit(value).username:
            raise ValueError("put the token in your secrets, not in the URL")
        return value

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("-") or re.search(r"[\s~^:?*\[\\]", value)):
            raise ValueError(f"{value!r} is not a branch name")
        return value

    def secret_name(self) -> str:
        if self.token_secret:
            return self.token_secret
        host = urlsplit(self.url).hostname or ""
        return PROVIDER_SECRETS.get(host.lower(), DEFAULT_SECRET)

    def is_remote(self) -> bool:
        return self.url.startswith(_SCHEMES[:4]) or bool(_SCP_LIKE.match(self.url))


def git_environment(spec: RepositorySpec, secrets: Mapping[str, SecretStr]) -> dict[str, str]:
    """The environment of the clone: no prompts, no helpers, the token as a header."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "JUPYTER_CONVO_")) and key != "SSH_ASKPASS"
    }
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/false" if Path("/bin/false").exists() else "",
        GCM_INTERACTIVE="never",
        GIT_ALLOW_PROTOCOL="file:git:http:https:ssh",
        GIT_SSH_COMMAND="ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        LC_ALL="C",
    )
    settings = {"http.lowSpeedLimit": "1", "http.lowSpeedTime": "60"}
    token = secrets.get(spec.secret_name())
    if token is not None and spec.url.startswith(("https://", "http://")):
        pair = f"x-access-token:{token.get_secret_value()}".encode()
        settings["http.extraHeader"] = "Authorization: Basic " + base64.b64encode(pair).decode()
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for index, (key, value) in enumerate(settings.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


async def clone_repository(
    spec: RepositorySpec,
    root: Path,
    secrets: Mapping[str, SecretStr],
    *,
    timeout: float = CLONE_TIMEOUT,
) -> bool:
    """Clone ``spec`` into the (empty) directory ``root``; False if it already is a clone
    (a restarted conversation keeps its work). ``RepositoryError`` says what went wrong."""
    if (root / ".git").exists():
        return False
    git = shutil.which("git")
    if git is None:
        raise RepositoryError("git is not installed where the conversation runs")
    source = await asyncio.to_thread(_check_target, spec, root)
    argv = [git, "clone", "--no-recurse-submodules"]
    if spec.branch:
        argv += ["--branch", spec.branch]
    argv += ["--", source, str(root)]
    env = git_environment(spec, secrets)
    process = await asyncio.create_subprocess_exec(
        *with_default_signals(argv, env),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        process.kill()
        await process.wait()
        raise RepositoryError(f"cloning {spec.url} took longer than {timeout:g}s") from None
    if process.returncode != 0:
        message = _hide(stderr.decode(errors="replace"), secrets).strip()
        branch = f" (branch {spec.branch})" if spec.branch else ""
        raise RepositoryError(
            f"cannot clone {spec.url}{branch}: {message[-STDERR_TAIL:] or 'git failed'}"
        )
    return True


def _check_target(spec: RepositorySpec, root: Path) -> str:
    """The source to clone from; ``RepositoryError`` if ``root`` is in use or a local
    repository is missing."""
    if root.exists() and any(root.iterdir()):
        raise RepositoryError(f"cannot clone {spec.url}: the workspace {root} is not empty")
    if spec.is_remote() or spec.url.startswith("file://"):
        return spec.url
    local = Path(spec.url).expanduser()
    if not local.exists():
        raise RepositoryError(f"cannot clone {spec.url}: no such repository")
    return str(local.resolve())


def _hide(text: str, secrets: Mapping[str, SecretStr]) -> str:
    for secret in secrets.values():
        value = secret.get_secret_value()
        if len(value) >= 6:
            text = text.replace(value, "<secret-hidden>")
    return text
