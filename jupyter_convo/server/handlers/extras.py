"""Per-conversation extras: the workspace's skills and a write-once experiment config."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..models import ExpConfigRequest
from ..skills import find_skills
from .base import ConvoHandler, fail

EXP_CONFIG_FILE = "exp_config.json"
# A configuration is a few settings: a bigger body is refused (413), not written to disk.
EXP_CONFIG_MAX_BYTES = 1024 * 1024


class SkillsHandler(ConvoHandler):
    """``GET conversations/{id}/skills``: AGENTS.md and ``.convo/skills/*.md``."""

    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        metadata = self.conversation(conversation_id)
        workspace = self.services.workspace_dir(metadata)
        skills = await asyncio.to_thread(find_skills, workspace)
        self.send_json({"skills": [skill.model_dump(mode="json") for skill in skills]})


def write_once(path: Path, data: dict[str, Any]) -> bool:
    """Write ``data`` as JSON to ``path`` unless it exists; False if it did.

    The content goes to a temp file first, then is linked into place: ``os.link`` fails
    if the target exists, so two racing writers cannot both win and no reader ever sees a
    half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        return True
    finally:
        temp.unlink(missing_ok=True)


class ExpConfigHandler(ConvoHandler):
    """``POST conversations/{id}/exp-config`` (write once: 409 after) and ``GET``."""

    max_body_bytes = EXP_CONFIG_MAX_BYTES

    def _path(self, conversation_id: str) -> Path:
        return self.services.conversation_dir(conversation_id) / EXP_CONFIG_FILE

    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        self.conversation(conversation_id)
        try:
            text = self._path(conversation_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            fail(404, f"conversation {conversation_id} has no exp-config")
        self.send_json(json.loads(text))

    @web.authenticated
    @authorized
    async def post(self, conversation_id: str) -> None:
        request = self.body(ExpConfigRequest)
        self.conversation(conversation_id)
        data = request.model_dump(mode="json")
        written = await asyncio.to_thread(write_once, self._path(conversation_id), data)
        if not written:
            fail(409, f"the exp-config of conversation {conversation_id} is already set")
        self.send_json(data, status=201)
