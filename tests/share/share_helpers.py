"""Helpers of the share tests: the committed example run and zip building."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from jupyter_convo.agent.cassette import Cassette
from jupyter_convo.agent.controller import AgentController
from jupyter_convo.agent.llm import LLMClient
from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools import build_tools
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.events.schema import ActionBase, ReplayMode, ReplayStepEvent, ReplaySummaryEvent
from jupyter_convo.share.format import MANIFEST_FILE
from jupyter_convo.share.replay import recorded_observations, run_replay
from jupyter_convo.share.source import ReplaySource

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "notebooks" / "runs" / "sales-summary"
EXAMPLE_SPEC = REPO / "notebooks" / "runs" / "sales-summary.run.json"
STEP_TIMEOUT = 60.0  # a bound that fails loudly; no step comes near it


def zip_directory(directory: Path) -> bytes:
    """An unpacked export zipped again (manifest included), as a download would be."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def build_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def manifest_of(members: dict[str, bytes]) -> dict[str, object]:
    loaded = json.loads(members[MANIFEST_FILE])
    assert isinstance(loaded, dict)
    return loaded


class ReplayTarget:
    """A fresh conversation folder (log, cassette, workspace, real tools) to replay into."""

    def __init__(self, directory: Path, settings: AgentSettings) -> None:
        self.directory = directory
        self.settings = settings
        self.secrets = SecretRegistry()
        self.workspace = Workspace(directory / "workspace")
        self.log = EventLog(directory / "events.jsonl", secrets=self.secrets)
        self.cassette = Cassette(directory / "cassette.jsonl", secrets=self.secrets)
        self.tools = build_tools(self.workspace, settings)
        self.llm = LLMClient(settings.llm, cassette=self.cassette, secrets=self.secrets)
        self.controller: AgentController | None = None

    async def replay(self, source: ReplaySource, mode: ReplayMode) -> ReplaySummaryEvent:
        outcome = await run_replay(
            source,
            mode,
            log=self.log,
            tools=self.tools,
            settings=self.settings,
            workspace=self.workspace,
            llm=self.llm,
            cassette=self.cassette,
            secrets=self.secrets,
            step_timeout=STEP_TIMEOUT,
        )
        self.controller = outcome.controller
        return outcome.summary

    def steps(self) -> list[ReplayStepEvent]:
        return [e for e in self.log.read() if isinstance(e, ReplayStepEvent)]

    def diffs(self) -> str:
        return "\n\n".join(f"step {s.step}:\n{s.diff}" for s in self.steps() if s.diff)

    async def close(self) -> None:
        if self.controller is not None:
            await self.controller.close()
        else:
            for tool in self.tools:
                await tool.close()
        await self.llm.close()
        self.cassette.close()
        self.log.close()


def executed_actions(source: ReplaySource) -> list[ActionBase]:
    """The recorded actions that had an observation: the steps a replay re-executes."""
    answered = recorded_observations(source.events)
    return [e for e in source.events if isinstance(e, ActionBase) and e.id in answered]
