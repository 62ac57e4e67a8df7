"""How the conversation manager behaves: where it keeps data, limits and timeouts.

The server builds one from its traitlets (``c.ConvoExtension.*``); tests and benches build
one directly over a temporary data directory.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


def _new_instance_id() -> str:
    return uuid.uuid4().hex


class ManagerConfig(BaseModel):
    """Settings of one ``NestedConversationManager``."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path
    # Where runtimes run: a kind registered under the jupyter_convo.sandboxes entry points
    # (each kind's own settings are its traits, c.<SandboxClass>.*).
    sandbox: str = Field(default="process", min_length=1)
    # Running conversations per user; starting one more stops the oldest.
    max_concurrent_conversations: int = Field(default=5, ge=1)
    # Idle runtimes started ahead of time and bound to the next new conversations.
    warm_pool_size: int = Field(default=0, ge=0)
    # From spawning a runtime to its ready line.
    runtime_start_timeout: float = Field(default=60.0, gt=0)
    # On server shutdown: leave runtimes running (found again on the next start) or stop them.
    keep_runtimes_on_shutdown: bool = True
    upload_max_bytes: int = Field(default=50 * MIB, ge=1)
    # An import may unpack to at most this many bytes (and 200 times its own size) and
    # hold at most this many files.
    import_max_unpacked_bytes: int = Field(default=1024 * MIB, ge=1)
    import_max_files: int = Field(default=10_000, ge=1)
    # Stopped conversations not updated for this long are deleted on manager start;
    # None keeps them forever.
    conversation_max_age_seconds: float | None = Field(default=None, gt=0)
    # Written into runtime.json so a restarted server can tell who started a runtime.
    server_instance_id: str = Field(default_factory=_new_instance_id)
    # Graceful stop: status polls after POST stop, their interval, then the TERM->KILL grace.
    stop_poll_attempts: int = Field(default=3, ge=1)
    stop_poll_interval: float = Field(default=0.5, gt=0)
    kill_grace_seconds: float = Field(default=5.0, gt=0)
    # Timeout of one REST call to a runtime.
    runtime_request_timeout: float = Field(default=30.0, gt=0)

    @property
    def conversations_root(self) -> Path:
        return self.data_dir / "conversations"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "convo.db"

    def conversation_dir(self, conversation_id: str) -> Path:
        return self.conversations_root / conversation_id
