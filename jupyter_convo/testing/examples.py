"""Example runs: hand-written LLM answers played through the real agent and tools.

A run description (``<name>.run.json``) names the conversation, the user's messages and a
script file of hand-written LLM answers (``jupyter_convo.testing`` format). Recording it
runs the real ``AgentController`` with the real tools against the scripted LLM server, so
the observations are genuine; the metadata is tagged ``example: hand-written`` so nobody
takes it for a real model's work. ``notebooks/runs/`` keeps the recorded exports, which
anyone can replay offline. It lives in ``testing`` (it plays the scripted LLM), above
``share``, whose export it uses.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..agent.cassette import Cassette
from ..agent.controller import AgentController
from ..agent.llm import LLMClient
from ..agent.settings import AgentSettings
from ..agent.tools import build_tools
from ..agent.workspace import Workspace
from ..events.inputs import MessageInput
from ..events.log import EventLog
from ..events.redact import SecretRegistry
from ..events.schema import ConversationStatus
from ..events.sink import LogSink
from ..share.export import export_conversation, metadata_from_log
from ..share.format import CASSETTE_FILE, EVENTS_FILE
from ..share.importer import extract_export
from ..share.replay import IDLE_STATES
from ..store.models import ConversationMetadata

RUN_TIMEOUT = 120.0  # seconds for one user turn of an example; fails loudly past it
EXAMPLE_TAG = "hand-written"


class RunSpec(BaseModel):
    """``<name>.run.json``: what the user says and where the LLM's answers are."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    title: str
    script: str  # path of the script file, relative to the run description
    messages: list[str] = Field(min_length=1)
    note: str = ""


def load_run_spec(path: str | os.PathLike[str]) -> tuple[RunSpec, Path]:
    """The description and the absolute path of its script file."""
    location = Path(path)
    spec = RunSpec.model_validate_json(location.read_bytes())
    return spec, (location.parent / spec.script).resolve()


async def record_run(
    spec_path: str | os.PathLike[str], conversations_root: str | os.PathLike[str]
) -> tuple[Path, ConversationMetadata]:
    """Play the example through the real agent into ``<conversations_root>/<id>/``."""
    from . import ScriptedLLM, llm_config_for

    spec, script = load_run_spec(spec_path)
    directory = Path(conversations_root) / spec.id
    llm_server = ScriptedLLM.from_file(script)
    secrets = SecretRegistry()
    with llm_server.serve():
        settings = AgentSettings(llm=llm_config_for(llm_server))
        workspace = Workspace(directory / "workspace")
        log = EventLog(directory / EVENTS_FILE, secrets=secrets)
        cassette = Cassette(directory / CASSETTE_FILE, secrets=secrets)
        llm = LLMClient(settings.llm, cassette=cassette, secrets=secrets)
        controller = AgentController(
            events=LogSink(log),
            llm=llm,
            tools=build_tools(workspace, settings),
            settings=settings,
            workspace=workspace,
        )
        try:
            await controller.start(spec.messages[0])
            for message in spec.messages[1:]:
                await controller.wait_for_state(*IDLE_STATES, timeout=RUN_TIMEOUT)
                await controller.join(RUN_TIMEOUT)
                await controller.handle_input(MessageInput(text=message))
            await controller.wait_for_state(*IDLE_STATES, timeout=RUN_TIMEOUT)
            await controller.join(RUN_TIMEOUT)
        finally:
            await controller.close()
            await llm.close()
            cassette.close()
            log.close()
    base = metadata_from_log(directory)
    metadata = base.model_copy(
        update={
            "title": spec.title,
            "status": ConversationStatus.STOPPED,
            "trigger": "example",
            "tags": {"example": EXAMPLE_TAG, "note": spec.note},
        }
    )
    return directory, ConversationMetadata.model_validate(metadata.model_dump())


def write_export_dir(zip_path: Path, destination: Path) -> None:
    """Unpack a checked export into ``destination`` with its manifest (an "unpacked export")."""
    check = destination.with_name(destination.name + ".check")
    extract_export(zip_path, check)  # full validation first
    shutil.rmtree(check)
    destination.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(destination)


async def record_example(
    spec_path: str | os.PathLike[str], work_dir: Path, destination: Path
) -> Path:
    """Record an example run and write it as an unpacked export to ``destination``."""
    directory, metadata = await record_run(spec_path, work_dir / "conversations")
    zip_path = work_dir / f"{metadata.id}.zip"
    export_conversation(directory, zip_path, metadata=metadata, include_workspace=True)
    write_export_dir(zip_path, destination)
    return destination


def describe(destination: Path) -> str:
    """One line for the recorder's output."""
    manifest = json.loads((destination / "manifest.json").read_text(encoding="utf-8"))
    return f"{destination}: {manifest['event_count']} events, {len(manifest['files'])} files"


__all__ = ["RunSpec", "load_run_spec", "record_example", "record_run", "write_export_dir"]
