"""A conversation's workspace: list, read, upload, download as a zip.

Paths are checked here before anything is asked of the runtime: relative to the workspace,
no NUL byte, no name over 255 bytes, never above its root (``..``) -> 400. Symlinks that
point outside are refused by the runtime's own workspace check (it answers 400 as well);
files that are not served (hard links, FIFOs, devices, other mounts) answer 403. An
upload is checked whole (names and total size) before any file is written, so a refused
upload writes nothing.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath

from jupyter_server.auth.decorator import authorized
from tornado import web

from ...agent.workspace import WorkspaceError, check_path_length
from ...manager.base import ConversationNotRunning, FileUpload, WorkspaceRequestError
from ..models import FileContentParams, FilesParams
from .base import ConvoHandler, fail


def workspace_path(raw: str, field: str) -> str:
    """``raw`` normalized (``.`` for the root), or 400 if it is absolute or climbs out."""
    if "\x00" in raw:
        fail(400, f"{field}: path contains a NUL byte")
    try:
        check_path_length(raw)
    except WorkspaceError as exc:
        fail(400, f"{field}: {exc}")
    if PurePosixPath(raw).is_absolute():
        fail(400, f"{field}: path {raw!r} must be relative to the workspace")
    depth = 0
    for part in PurePosixPath(raw).parts:
        if part == "..":
            depth -= 1
        elif part != ".":
            depth += 1
        if depth < 0:
            fail(400, f"{field}: path {raw!r} leaves the workspace")
    return posixpath.normpath(raw) if raw else "."


class FilesHandler(ConvoHandler):
    """``GET conversations/{id}/files?path`` and ``POST conversations/{id}/files``."""

    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        params = self.query(FilesParams)
        self.conversation(conversation_id)
        path = None if params.path is None else workspace_path(params.path, "path")
        try:
            files = await self.services.manager.list_files(conversation_id, path)
        except WorkspaceRequestError as exc:
            fail(exc.status, str(exc))
        except ConversationNotRunning as exc:
            self.not_running(conversation_id, exc)
        self.send_json(files)

    @web.authenticated
    @authorized
    async def post(self, conversation_id: str) -> None:
        self.conversation(conversation_id)
        limit = self.services.config.upload_max_bytes
        declared = int(self.request.headers.get("Content-Length") or 0)
        if declared > limit:
            fail(413, f"upload of {declared} bytes exceeds the limit of {limit} bytes")
        uploads: list[FileUpload] = []
        for field_files in self.request.files.values():
            for index, item in enumerate(field_files):
                name = workspace_path(item.filename, f"files[{index}].filename")
                if name == ".":
                    fail(400, f"files[{index}].filename: a file needs a name")
                uploads.append(FileUpload(name=name, content=item.body))
        if not uploads:
            fail(400, "no files in the upload (send multipart/form-data with file fields)")
        total = sum(len(upload.content) for upload in uploads)
        if total > limit:
            fail(413, f"upload of {total} bytes exceeds the limit of {limit} bytes")
        try:
            result = await self.services.manager.upload_files(conversation_id, uploads)
        except WorkspaceRequestError as exc:
            fail(exc.status, str(exc))
        except ConversationNotRunning as exc:
            self.not_running(conversation_id, exc)
        self.send_model(result)


class FileContentHandler(ConvoHandler):
    """``GET conversations/{id}/files/content?path``: a text file's content."""

    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        params = self.query(FileContentParams)
        self.conversation(conversation_id)
        path = workspace_path(params.path, "path")
        try:
            content = await self.services.manager.select_file(conversation_id, path)
        except WorkspaceRequestError as exc:
            fail(exc.status, str(exc))
        except ConversationNotRunning as exc:
            self.not_running(conversation_id, exc)
        self.send_json({"path": path, "content": content})


class WorkspaceZipHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        self.conversation(conversation_id)
        try:
            data = await self.services.manager.workspace_zip(conversation_id)
        except WorkspaceRequestError as exc:
            fail(exc.status, str(exc))
        except ConversationNotRunning as exc:
            self.not_running(conversation_id, exc)
        self.set_header(
            "Content-Disposition", f'attachment; filename="workspace-{conversation_id}.zip"'
        )
        self.finish(data, set_content_type="application/zip")
