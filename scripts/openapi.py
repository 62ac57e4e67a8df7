"""Write ``docs/openapi.yaml``: the OpenAPI 3.1 document of the server API (``api/convo/``).

Schemas come from the pydantic models the handlers validate with (``server/models.py``,
the store's records, ``events.inputs``, ``events.schema``), so the document cannot drift
from the code without ``tests/reliability/test_openapi_routes.py`` noticing: that test
compares the routes with the ones the extension registers (both ways) and the file with
what this script writes.

    python scripts/openapi.py            # rewrite docs/openapi.yaml
    python scripts/openapi.py --check    # exit 1 if docs/openapi.yaml is out of date
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from jupyter_convo._version import __version__
from jupyter_convo.events.inputs import UserInput
from jupyter_convo.events.schema import Event
from jupyter_convo.manager.base import AgentLoopInfo, UploadResult
from jupyter_convo.server import models as m
from jupyter_convo.server.capabilities import Capabilities
from jupyter_convo.server.skills import Skill
from jupyter_convo.store.conversations import (
    ConversationMetadata,
    ConversationPage,
    StartTask,
    StartTaskPage,
)
from jupyter_convo.store.settings import SettingsUpdate, UserSettings

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
REF = "#/components/schemas/{model}"
CID = "/api/convo/conversations/{conversation_id}"

Schema = dict[str, Any]
# A response: (description, JSON schema or model, media type).
Answer = tuple[str, "Schema | type[BaseModel] | None", str]


@dataclass
class Operation:
    path: str
    method: str
    summary: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | TypeAdapter[Any] | None = None
    body_name: str = ""
    multipart: bool = False
    ok: dict[int, Answer] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    websocket: bool = False


class WireSchema(GenerateJsonSchema):
    """Answers are whole model dumps: in serialization mode every field is always present,
    so it is required (the generated TypeScript types then need no ``?`` on them)."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode == "serialization":
            return not field.get("serialization_exclude")
        return super().field_is_required(field, total)


class Components:
    """Collects the models' JSON schemas under ``components/schemas``."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def add(self, name: str, schema: Schema) -> Schema:
        for def_name, definition in schema.pop("$defs", {}).items():
            self.schemas.setdefault(def_name, definition)
        self.schemas.setdefault(name, schema)
        return {"$ref": REF.format(model=name)}

    def model(self, model: type[BaseModel], mode: str = "serialization") -> Schema:
        schema = model.model_json_schema(
            ref_template=REF,
            mode=mode,  # type: ignore[arg-type]
            schema_generator=WireSchema,
        )
        return self.add(model.__name__, schema)

    def adapter(self, name: str, adapter: TypeAdapter[Any], mode: str = "validation") -> Schema:
        schema = adapter.json_schema(
            ref_template=REF,
            mode=mode,  # type: ignore[arg-type]
            schema_generator=WireSchema,
        )
        return self.add(name, schema)


def _count() -> Schema:
    return {
        "type": "object",
        "properties": {"count": {"type": "integer", "minimum": 0}},
        "required": ["count"],
    }


def _accepted() -> Schema:
    return {
        "type": "object",
        "properties": {"conversation_id": {"type": "string"}, "status": {"type": "string"}},
        "required": ["conversation_id", "status"],
    }


def _event_page(components: Components) -> Schema:
    event = components.adapter("Event", TypeAdapter(Event), mode="serialization")
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": event},
            "next_page_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["items"],
    }


def operations(components: Components) -> list[Operation]:
    """Every route of ``jupyter_convo.server.handlers.routes()``, with its method(s)."""
    start_task = components.model(StartTask)
    metadata = components.model(ConversationMetadata)
    loop_info = components.model(AgentLoopInfo)
    json_object: Schema = {"type": "object"}
    return [
        Operation(
            "/api/convo/conversations/search",
            "get",
            "Search the user's conversations (newest first, keyset pages)",
            query=m.ConversationSearchParams,
            ok={200: ("a page of conversations", ConversationPage, "application/json")},
            errors={400: "a bad filter, limit or page_id"},
        ),
        Operation(
            "/api/convo/conversations/count",
            "get",
            "Count the user's conversations matching the filters",
            query=m.ConversationFilters,
            ok={200: ("the count", _count(), "application/json")},
            errors={400: "a bad filter"},
        ),
        Operation(
            "/api/convo/conversations/stream-start",
            "post",
            "Create a conversation and stream its start-task updates as one JSON list",
            body=m.CreateConversationRequest,
            ok={
                200: (
                    "start-task updates, written as they happen, ending READY or ERROR",
                    {"type": "array", "items": start_task},
                    "application/json",
                )
            },
            errors={400: "a bad body field", 500: "the conversation could not start"},
        ),
        Operation(
            "/api/convo/conversations",
            "get",
            "Batch get: one entry per id, in order, null where missing or not the user's",
            query=m.IdsParams,
            ok={
                200: (
                    "the conversations",
                    {"type": "array", "items": {"anyOf": [metadata, {"type": "null"}]}},
                    "application/json",
                )
            },
            errors={400: "no ids or too many"},
        ),
        Operation(
            "/api/convo/conversations",
            "post",
            "Create a conversation; the runtime starts in the background",
            body=m.CreateConversationRequest,
            ok={202: ("the first start task", start_task, "application/json")},
            errors={400: "a bad body field", 500: "the conversation could not start"},
        ),
        Operation(
            f"{CID}/start",
            "post",
            "(Re)start the conversation's runtime, continuing from its log",
            body=m.StartConversationRequest,
            ok={200: ("the running agent loop", loop_info, "application/json")},
            errors={400: "a bad body field", 404: "no such conversation", 500: "start failed"},
        ),
        Operation(
            f"{CID}/stop",
            "post",
            "Stop the conversation's runtime (graceful, then killed)",
            ok={200: ("the conversation, stopped", metadata, "application/json")},
            errors={404: "no such conversation"},
        ),
        Operation(
            f"{CID}/messages",
            "post",
            "Send a user message (restarts a stopped conversation)",
            body=m.SendMessageRequest,
            ok={202: ("delivered", _accepted(), "application/json")},
            errors={
                400: "a bad body field",
                404: "no such conversation",
                409: "not running",
                500: "restart failed",
            },
        ),
        Operation(
            f"{CID}/events",
            "post",
            "Send a user input: message, confirmation answer or agent state change",
            body=TypeAdapter(UserInput),
            body_name="UserInput",
            ok={202: ("delivered", _accepted(), "application/json")},
            errors={
                400: "not a valid input",
                404: "no such conversation",
                409: "not running",
                500: "restart failed",
            },
        ),
        Operation(
            f"{CID}/events/search",
            "get",
            "Search the conversation's stored events (ids are exclusive bounds)",
            query=m.EventSearchParams,
            ok={200: ("a page of events", _event_page(components), "application/json")},
            errors={400: "a bad filter", 404: "no such conversation"},
        ),
        Operation(
            f"{CID}/events/count",
            "get",
            "Count the conversation's stored events matching the filters",
            query=m.EventFilters,
            ok={200: ("the count", _count(), "application/json")},
            errors={400: "a bad filter", 404: "no such conversation"},
        ),
        Operation(
            f"{CID}/events/ws",
            "get",
            "WebSocket: stored events after after_id, then live ones; accepts UserInput frames",
            query=m.WebSocketParams,
            ok={101: ("switching to the WebSocket protocol", None, "")},
            errors={
                400: "a bad after_id, or not a WebSocket upgrade",
                403: "not authorized",
                404: "no such conversation",
            },
            websocket=True,
        ),
        Operation(
            f"{CID}/files",
            "get",
            "List the workspace (directories first, ending in /)",
            query=m.FilesParams,
            ok={
                200: (
                    "workspace-relative paths",
                    {"type": "array", "items": {"type": "string"}},
                    "application/json",
                )
            },
            errors={400: "a path outside the workspace", 404: "no such conversation or path"},
        ),
        Operation(
            f"{CID}/files",
            "post",
            "Upload files into the workspace (multipart; names may hold subdirectories)",
            multipart=True,
            ok={200: ("uploaded and skipped files", UploadResult, "application/json")},
            errors={
                400: "no files or a bad name",
                404: "no such conversation",
                413: "over the upload limit",
            },
        ),
        Operation(
            f"{CID}/files/content",
            "get",
            "A text file of the workspace",
            query=m.FileContentParams,
            ok={
                200: (
                    "the file's text",
                    {
                        "type": "object",
                        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                        "required": ["path", "content"],
                    },
                    "application/json",
                )
            },
            errors={
                400: "a path outside the workspace or a directory",
                404: "no such conversation or file",
                413: "too large",
                415: "binary or not UTF-8",
            },
        ),
        Operation(
            f"{CID}/workspace.zip",
            "get",
            "The whole workspace as a zip file",
            ok={200: ("the zip", {"type": "string", "format": "binary"}, "application/zip")},
            errors={404: "no such conversation"},
        ),
        Operation(
            f"{CID}/export",
            "get",
            "The conversation as an export zip (meta, events, cassette, manifest, workspace?)",
            query=m.ExportParams,
            ok={200: ("the export", {"type": "string", "format": "binary"}, "application/zip")},
            errors={404: "no such conversation", 409: "no events yet, or not exportable"},
        ),
        Operation(
            "/api/convo/conversations/import",
            "post",
            "Import an export zip as a new stopped conversation (the body or one file)",
            multipart=True,
            ok={201: ("the imported conversation", metadata, "application/json")},
            errors={400: "not a valid export (the problem is named)", 413: "over the limit"},
        ),
        Operation(
            f"{CID}/notebook",
            "get",
            "The conversation as a notebook (.ipynb) that re-runs its steps",
            ok={200: ("the notebook", json_object, "application/x-ipynb+json")},
            errors={404: "no such conversation"},
        ),
        Operation(
            f"{CID}/skills",
            "get",
            "The workspace's skills: AGENTS.md and .convo/skills/*.md",
            ok={
                200: (
                    "the skills",
                    {
                        "type": "object",
                        "properties": {
                            "skills": {"type": "array", "items": components.model(Skill)}
                        },
                        "required": ["skills"],
                    },
                    "application/json",
                )
            },
            errors={404: "no such conversation"},
        ),
        Operation(
            f"{CID}/remember-prompt",
            "get",
            "An AGENTS.md update prompt written by the LLM from the events around event_id",
            query=m.RememberPromptParams,
            ok={
                200: (
                    "the prompt",
                    {
                        "type": "object",
                        "properties": {
                            "conversation_id": {"type": "string"},
                            "prompt": {"type": "string"},
                        },
                        "required": ["conversation_id", "prompt"],
                    },
                    "application/json",
                )
            },
            errors={
                400: "a bad event_id",
                404: "no such conversation or event",
                502: "the LLM failed",
            },
        ),
        Operation(
            f"{CID}/exp-config",
            "get",
            "The conversation's experiment configuration",
            ok={200: ("the configuration", json_object, "application/json")},
            errors={404: "no such conversation, or none set"},
        ),
        Operation(
            f"{CID}/exp-config",
            "post",
            "Attach an experiment configuration (write once)",
            body=m.ExpConfigRequest,
            ok={201: ("the stored configuration", json_object, "application/json")},
            errors={
                400: "a bad body",
                404: "no such conversation",
                409: "already set",
                413: "a body over 1 MiB",
            },
        ),
        Operation(
            CID,
            "get",
            "One conversation's metadata",
            ok={200: ("the conversation", metadata, "application/json")},
            errors={404: "no such conversation"},
        ),
        Operation(
            CID,
            "patch",
            "Rename (owner only; subscribers get a title event)",
            body=m.UpdateConversationRequest,
            ok={200: ("the renamed conversation", metadata, "application/json")},
            errors={400: "a bad title", 403: "not the owner", 404: "no such conversation"},
        ),
        Operation(
            CID,
            "delete",
            "Stop and delete the conversation, its log and its folder",
            ok={204: ("deleted", None, "")},
            errors={404: "no such conversation"},
        ),
        Operation(
            "/api/convo/start-tasks/search",
            "get",
            "Search the user's start tasks (newest first)",
            query=m.StartTaskSearchParams,
            ok={200: ("a page of start tasks", StartTaskPage, "application/json")},
            errors={400: "a bad filter, limit or page_id"},
        ),
        Operation(
            "/api/convo/start-tasks/count",
            "get",
            "Count the user's start tasks",
            query=m.StartTaskFilters,
            ok={200: ("the count", _count(), "application/json")},
            errors={400: "a bad filter"},
        ),
        Operation(
            "/api/convo/start-tasks",
            "get",
            "Batch get of start tasks, null where missing or not the user's",
            query=m.IdsParams,
            ok={
                200: (
                    "the start tasks",
                    {"type": "array", "items": {"anyOf": [start_task, {"type": "null"}]}},
                    "application/json",
                )
            },
            errors={400: "no ids or too many"},
        ),
        Operation(
            "/api/convo/settings",
            "get",
            "The user's settings (secrets are never returned, only whether they are set)",
            ok={200: ("the settings", UserSettings, "application/json")},
        ),
        Operation(
            "/api/convo/settings",
            "put",
            "Update the user's settings (None leaves a field alone, '' clears it)",
            body=SettingsUpdate,
            ok={200: ("the settings", UserSettings, "application/json")},
            errors={400: "a bad field"},
        ),
        Operation(
            "/api/convo/capabilities",
            "get",
            "The sandbox kinds and agent backends this server offers new conversations",
            ok={200: ("what the server offers", Capabilities, "application/json")},
        ),
        Operation(
            "/api/convo/runtimes",
            "get",
            "The user's running agent loops",
            ok={
                200: (
                    "the running loops",
                    {"type": "array", "items": loop_info},
                    "application/json",
                )
            },
        ),
    ]


def _parameters(query: type[BaseModel], components: Components) -> list[Schema]:
    schema = query.model_json_schema(ref_template=REF, mode="validation")
    for def_name, definition in schema.pop("$defs", {}).items():
        components.schemas.setdefault(def_name, definition)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(prop)
        param: Schema = {"name": name, "in": "query", "required": name in required}
        param["schema"] = prop
        if "array" in str(prop.get("type")) or any(
            option.get("type") == "array" for option in prop.get("anyOf", [])
        ):
            param["style"] = "form"
            param["explode"] = True  # ?kind=a&kind=b
        params.append(param)
    return params


def _without_null(prop: Schema) -> Schema:
    """A query parameter is absent or a string: drop the JSON ``null`` option and default."""
    prop = {key: value for key, value in prop.items() if key != "title"}
    if prop.get("default", 0) is None:
        del prop["default"]
    options = [option for option in prop.pop("anyOf", []) if option != {"type": "null"}]
    if len(options) == 1:
        prop.update(options[0])
    elif options:
        prop["anyOf"] = options
    return prop


def _answer(answer: Answer, components: Components) -> Schema:
    description, schema, media = answer
    out: Schema = {"description": description}
    if schema is None:
        return out
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        schema = components.model(schema)
    out["content"] = {media: {"schema": schema}}
    return out


def build_document() -> Schema:
    components = Components()
    paths: dict[str, Schema] = {}
    for op in operations(components):
        item: Schema = {"summary": op.summary, "operationId": _operation_id(op)}
        parameters: list[Schema] = []
        if "{conversation_id}" in op.path:
            parameters.append(
                {
                    "name": "conversation_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": m.ID_PATTERN},
                }
            )
        if op.query is not None:
            parameters.extend(_parameters(op.query, components))
        if parameters:
            item["parameters"] = parameters
        if op.body is not None:
            if isinstance(op.body, TypeAdapter):
                schema = components.adapter(op.body_name, op.body)
            else:
                schema = components.model(op.body, mode="validation")
            item["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": schema}},
            }
        if op.multipart:
            item["requestBody"] = {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "files": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                        }
                    }
                },
            }
        responses: Schema = {str(code): _answer(a, components) for code, a in op.ok.items()}
        errors = {401: "no credentials", 403: "not authorized", **op.errors}
        for code, description in sorted(errors.items()):
            responses.setdefault(
                str(code),
                {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model="Error")}}
                    },
                },
            )
        item["responses"] = responses
        if op.websocket:
            item["x-websocket"] = True
        paths.setdefault(op.path, {})[op.method] = item
    components.schemas["Error"] = {
        "type": "object",
        "properties": {"message": {"type": "string"}, "reason": {"type": ["string", "null"]}},
        "required": ["message"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter-convo server API",
            "version": __version__,
            "description": (
                "The routes of the jupyter-convo Jupyter server extension, under the "
                "server's base_url. Every route needs the Jupyter server's credentials "
                "(a token header, or the login cookie). Generated by scripts/openapi.py "
                "from the pydantic models the handlers validate with; do not edit by hand."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8888/"}],
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'token <the Jupyter server token>'",
                }
            },
            "schemas": dict(sorted(components.schemas.items())),
        },
    }


def _operation_id(op: Operation) -> str:
    words = [
        part.strip("{}").replace("-", "_").replace(".", "_")
        for part in op.path.removeprefix("/api/convo/").split("/")
    ]
    return "_".join([op.method, *words])


def render() -> str:
    return yaml.safe_dump(build_document(), sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
        if current != text:
            print(f"{DOCUMENT} is out of date: run python scripts/openapi.py", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
