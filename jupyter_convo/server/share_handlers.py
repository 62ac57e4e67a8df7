"""Share routes: export a conversation as a zip, import one, get it as a notebook, and the
``replay`` source of ``POST conversations``.

Exports and notebooks are read from the conversation's folder (complete lines only, so a
running conversation can be exported too) and pass through every secret the server knows:
the users' API keys and named secrets, the conversation's session key and credential-named
environment variables. Imports are validated whole before anything is written
(``jupyter_convo.share.importer``): a bad upload is a 400 that names the problem.
Zip work runs in a thread so the server's loop keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..events.redact import SecretRegistry
from ..manager.keys import load_or_create_server_secret, session_key
from ..share.export import ExportError, export_bytes, known_secrets
from ..share.format import EVENTS_FILE
from ..share.importer import ImportTooLarge, ShareFormatError, import_conversation
from ..share.notebook import conversation_notebook, notebook_json
from ..share.source import source_from_conversation, source_to_wire
from ..store.conversations import ConversationMetadata
from .handlers.base import ConvoHandler, fail
from .models import MAX_TITLE_LENGTH, ExportParams, ReplayOptions

log = logging.getLogger(__name__)

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def download_name(metadata: ConversationMetadata, suffix: str) -> str:
    """A file name from the title (or id) that any file system and header accepts."""
    stem = _UNSAFE_FILENAME.sub("-", metadata.title or "").strip("-.")[:60] or metadata.id
    return f"{stem}{suffix}"


def export_secrets(handler: ConvoHandler, metadata: ConversationMetadata) -> SecretRegistry:
    """Every secret the server knows that could have reached this conversation's files."""
    services = handler.services
    extra: list[str | None] = []
    try:
        secret = load_or_create_server_secret(services.config.data_dir)
        extra.append(session_key(secret, metadata.id))
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("Export of %s: no server secret to hide (%s)", metadata.id, exc)
    return known_secrets(
        settings_store=services.settings_store,
        user_ids=[handler.user_id, metadata.user_id],
        extra=extra,
    )


class ExportHandler(ConvoHandler):
    """``GET conversations/{id}/export[?workspace=true]``: the export zip."""

    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        params = self.query(ExportParams)
        metadata = self.conversation(conversation_id)
        directory = self.services.conversation_dir(conversation_id)
        if not (directory / EVENTS_FILE).is_file():
            fail(409, f"conversation {conversation_id} has no events to export yet")
        try:
            data = await asyncio.to_thread(
                export_bytes,
                directory,
                metadata=metadata,
                secrets=export_secrets(self, metadata),
                include_workspace=params.workspace,
                workspace=self.services.workspace_dir(metadata),
            )
        except ExportError as exc:
            log.warning("Export of %s refused: %s", conversation_id, exc)
            fail(409, f"conversation {conversation_id} cannot be exported: {exc}")
        self.set_header(
            "Content-Disposition",
            f'attachment; filename="{download_name(metadata, ".convo.zip")}"',
        )
        self.finish(data, set_content_type="application/zip")


class ImportHandler(ConvoHandler):
    """``POST conversations/import``: an export zip (the body, or one multipart file)."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        limit = self.services.config.upload_max_bytes
        declared = int(self.request.headers.get("Content-Length") or 0)
        if declared > limit:
            fail(413, f"upload of {declared} bytes exceeds the limit of {limit} bytes")
        data = self._upload()
        if len(data) > limit:
            fail(413, f"upload of {len(data)} bytes exceeds the limit of {limit} bytes")
        try:
            result = await asyncio.to_thread(
                import_conversation,
                data,
                self.services.config.conversations_root,
                store=self.services.store,
                user_id=self.user_id,
                limits=self.services.import_limits(),
                secrets=self.services.user_secrets(self.user_id),
            )
        except ImportTooLarge as exc:
            fail(413, f"export too large to import: {exc}")
        except ShareFormatError as exc:
            fail(400, f"invalid export: {exc}")
        log.info(
            "User %s imported conversation %s as %s",
            self.user_id,
            result.original_id,
            result.conversation_id,
        )
        self.send_model(result.metadata, status=201)

    def _upload(self) -> bytes:
        files = [item for items in self.request.files.values() for item in items]
        if len(files) > 1:
            fail(400, f"upload one export zip at a time, not {len(files)} files")
        if files:
            body = bytes(files[0].body)
        elif self.request.headers.get("Content-Type", "").startswith("multipart/"):
            body = b""
        else:
            body = bytes(self.request.body or b"")
        if not body:
            fail(400, "no export in the upload: send the zip as the body or as a multipart file")
        return body


class NotebookHandler(ConvoHandler):
    """``GET conversations/{id}/notebook``: the conversation as an ``.ipynb``."""

    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        metadata = self.conversation(conversation_id)
        directory = self.services.conversation_dir(conversation_id)
        source = await asyncio.to_thread(source_from_conversation, directory, metadata)
        roots = [str(self.services.workspace_dir(metadata)), *source.workspace_roots]
        notebook = conversation_notebook(
            source.events,
            conversation_id=conversation_id,
            title=metadata.title,
            workspace_roots=roots,
        )
        text = export_secrets(self, metadata).redact(notebook_json(notebook))
        self.set_header(
            "Content-Disposition", f'attachment; filename="{download_name(metadata, ".ipynb")}"'
        )
        self.finish(text.encode("utf-8"), set_content_type="application/x-ipynb+json")


async def replay_source(
    handler: ConvoHandler, options: ReplayOptions | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The runtime's ``replay`` request (the recorded run inline) and a default title, for
    ``POST conversations`` with ``replay``; 404 for a conversation the user cannot see."""
    if options is None:
        return None, None
    source_id = options.source_conversation_id
    metadata = handler.conversation(source_id)
    directory = handler.services.conversation_dir(source_id)
    try:
        source = await asyncio.to_thread(source_from_conversation, directory, metadata)
    except (ShareFormatError, OSError) as exc:
        fail(400, f"invalid request body: replay.source_conversation_id: {exc}")
    if not source.events:
        fail(400, f"invalid request body: replay: conversation {source_id} has no events")
    if options.mode == "cassette" and not any(entry.final for entry in source.cassette):
        fail(
            400,
            f"invalid request body: replay.mode: conversation {source_id} has no recorded LLM "
            "answers to replay in cassette mode (use mode actions)",
        )
    title = f"Replay of {metadata.title or source_id}"[:MAX_TITLE_LENGTH]
    return source_to_wire(source, options.mode), title


def share_routes(api_prefix: str, conversation_id: str) -> list[tuple[str, Any]]:
    """The share routes (before the ``conversations/{id}`` pattern that would match them)."""
    one = f"{api_prefix}/conversations/{conversation_id}"
    return [
        (f"{api_prefix}/conversations/import", ImportHandler),
        (f"{one}/export", ExportHandler),
        (f"{one}/notebook", NotebookHandler),
    ]


__all__ = [
    "ExportHandler",
    "ImportHandler",
    "NotebookHandler",
    "download_name",
    "export_secrets",
    "replay_source",
    "share_routes",
]
