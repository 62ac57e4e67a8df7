"""Workspace operations of the routes (list, read, upload, zip): through the runtime while
it runs, from the disk only when no runtime runs.

The runtime is the one that sees the workspace while it runs (a container or a remote
sandbox may be the only place it exists), so nothing here touches the files then.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from ..agent.workspace import Workspace
from ..runtime import workspace as workspace_files
from ..store.conversations import ConversationMetadata
from .base import ConversationNotRunning, FileUpload, UploadResult, WorkspaceRequestError
from .runtime_client import RuntimeBadRequest, RuntimeClient, RuntimeClientError, RuntimeNotFound

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_WORKSPACE_ERROR_STATUS = {400: 400, 403: 403, 404: 404, 413: 413, 415: 415}


class WorkspaceProxy:
    """The workspace routes' one way in (see the module doc). Callbacks: the running
    runtime's client (None when none runs), the conversation's lock (a delete holds it),
    its metadata (ConversationNotFound) and where its workspace is on this machine."""

    def __init__(
        self,
        *,
        upload_max_bytes: int,
        ready_client: Callable[[str], RuntimeClient | None],
        lock: Callable[[str], asyncio.Lock],
        existing: Callable[[str], ConversationMetadata],
        workspace_root: Callable[[str, str | None], Path],
    ) -> None:
        self.upload_max_bytes = upload_max_bytes
        self._ready_client = ready_client
        self._lock = lock
        self._existing = existing
        self._workspace_root = workspace_root

    async def _offline(self, conversation_id: str, work: Callable[[Workspace], _T]) -> _T:
        """Serve the workspace from disk (no runtime runs), under the conversation's lock:
        a delete holds it, so a read or upload racing it cannot bring the folder back."""
        async with self._lock(conversation_id):
            meta = self._existing(conversation_id)
            root = self._workspace_root(conversation_id, meta.workspace)
            with workspace_errors():
                return await asyncio.to_thread(lambda: work(Workspace(root)))

    async def list_files(self, conversation_id: str, path: str | None = None) -> list[str]:
        client = self._ready_client(conversation_id)
        if client is not None:
            with workspace_errors():
                return await client.list_files(path)
        return await self._offline(
            conversation_id, lambda workspace: workspace_files.list_entries(workspace, path)
        )

    async def select_file(self, conversation_id: str, file: str) -> str:
        client = self._ready_client(conversation_id)
        if client is not None:
            with workspace_errors():
                return await client.select_file(file)
        return await self._offline(
            conversation_id, lambda workspace: workspace_files.read_text(workspace, file)
        )

    async def upload_files(self, conversation_id: str, files: list[FileUpload]) -> UploadResult:
        result = UploadResult(uploaded=[], skipped=[])
        accepted: list[tuple[str, bytes]] = []
        for upload in files:
            if len(upload.content) > self.upload_max_bytes:
                result.skipped.append(
                    {
                        "name": upload.name,
                        "reason": f"{len(upload.content)} bytes is over the limit of "
                        f"{self.upload_max_bytes} bytes per file",
                    }
                )
            else:
                accepted.append((upload.name, upload.content))
        client = self._ready_client(conversation_id)
        if client is not None:
            for name, content in accepted:  # one per request: each fits the runtime's limit
                with workspace_errors():
                    answer = await client.upload_files([(name, content)])
                result.uploaded.extend(answer.get("uploaded", []))
                result.skipped.extend(answer.get("skipped", []))
            return result
        saved = await self._offline(
            conversation_id, lambda workspace: workspace_files.save_uploads(workspace, accepted)
        )
        result.uploaded.extend(saved.uploaded)
        result.skipped.extend(saved.skipped)
        return result

    async def workspace_zip(self, conversation_id: str) -> bytes:
        client = self._ready_client(conversation_id)
        if client is not None:
            with workspace_errors():
                return await client.workspace_zip()

        def build(workspace: Workspace) -> bytes:
            buffer = io.BytesIO()
            workspace_files.write_zip(workspace, buffer)
            return buffer.getvalue()

        return await self._offline(conversation_id, build)


@contextlib.contextmanager
def workspace_errors() -> Iterator[None]:
    """Workspace failures, from the runtime or the disk, as ``WorkspaceRequestError``."""
    try:
        yield
    except workspace_files.WorkspaceFileError as exc:
        raise WorkspaceRequestError(str(exc), exc.status) from exc
    except RuntimeNotFound as exc:
        raise WorkspaceRequestError(exc.message, 404) from exc
    except RuntimeBadRequest as exc:
        status = _WORKSPACE_ERROR_STATUS.get(exc.status_code or 400, 400)
        raise WorkspaceRequestError(exc.message, status) from exc
    except RuntimeClientError as exc:
        raise ConversationNotRunning(f"the runtime did not answer: {exc.message}") from exc
