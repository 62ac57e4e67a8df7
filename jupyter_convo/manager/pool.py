"""The warm pool: idle runtimes started ahead, so a new conversation need not wait for one.

Each warm runtime is started for a conversation id chosen ahead (the next conversation
takes that id), so its directory, log file and, in a container, its mounts are already the
conversation's own; nothing is moved at bind time. What makes it that conversation's comes
with the bind request (``POST /api/conversations``): settings, secrets, workspace, initial
message and, where the sandbox allows it, the session key (a process runtime boots with a
throwaway key and gets the real one then; a container keeps its environment for life, so it
boots with its conversation's key).

A ``.warm`` marker in the directory tells a warm runtime's leftovers (after a crash) from a
conversation's; the manager removes those on start. Taking a runtime starts a replacement
in the background; ``close`` stops the idle ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..runtime.auth import SESSION_KEY_ENV, SESSION_KEY_HEADER
from .runtime_client import shared_tls_context
from .sandboxes.base import RuntimeHandle, Sandbox, SandboxStartError

log = logging.getLogger(__name__)

WARM_MARKER = ".warm"
# After a failed start, wait this long before the next try (doubling up to the maximum):
# a missing image or a dead engine must not turn the pool into a busy loop.
RETRY_DELAY = 2.0
MAX_RETRY_DELAY = 60.0


@dataclass(frozen=True)
class WarmRuntime:
    """An idle runtime and the key it accepts until it is bound."""

    conversation_id: str
    handle: RuntimeHandle
    boot_key: str


class WarmPool:
    """Keeps ``size`` idle runtimes of ``sandbox`` ready (see the module doc)."""

    def __init__(
        self,
        sandbox: Sandbox,
        size: int,
        *,
        conversation_key: Callable[[str], str],
        new_id: Callable[[], str],
        start_timeout: float,
    ) -> None:
        if size < 0:
            raise ValueError(f"warm pool size must be >= 0, not {size}")
        self.sandbox = sandbox
        self.size = size
        self._conversation_key = conversation_key
        self._new_id = new_id
        self._start_timeout = start_timeout
        self._idle: list[WarmRuntime] = []
        self._changed = asyncio.Condition()
        self._filler: asyncio.Task[None] | None = None
        self._closed = False
        self.last_error: str | None = None

    @property
    def idle(self) -> list[WarmRuntime]:
        """The idle runtimes, oldest first (a copy)."""
        return list(self._idle)

    # --- filling ------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin filling the pool in the background."""
        self._refill()

    def _refill(self) -> None:
        if self._closed or self.size == 0:
            return
        if self._filler is None or self._filler.done():
            self._filler = asyncio.create_task(self._fill(), name="warm-pool-fill")

    async def _fill(self) -> None:
        """Start runtimes one at a time until ``size`` are idle."""
        delay = RETRY_DELAY
        while not self._closed and len(self._idle) < self.size:
            try:
                warm = await self._start_one()
            except SandboxStartError as exc:
                self.last_error = str(exc)
                log.warning("warm pool: a runtime did not start (%s); retrying in %g s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            delay = RETRY_DELAY
            self.last_error = None
            if self._closed:
                await self._discard(warm)
                return
            async with self._changed:
                self._idle.append(warm)
                self._changed.notify_all()
            log.info(
                "warm pool: runtime %s ready (%d/%d idle)",
                warm.handle.runtime_id,
                len(self._idle),
                self.size,
            )

    async def _start_one(self) -> WarmRuntime:
        conversation_id = self._new_id()
        directory = self.sandbox.conversation_dir(conversation_id)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / WARM_MARKER).touch()
        if self.sandbox.keeps_environment:
            boot_key = self._conversation_key(conversation_id)
        else:
            boot_key = secrets.token_urlsafe(32)
        try:
            handle = await self.sandbox.start(
                conversation_id, {SESSION_KEY_ENV: boot_key}, timeout=self._start_timeout
            )
        except BaseException:
            await asyncio.shield(self._remove_leftovers(conversation_id))
            raise
        warm = WarmRuntime(conversation_id, handle, boot_key)
        try:
            await self._warm_up(handle, boot_key)
        except BaseException:  # cancelled (the pool closes): this one must not outlive it
            await asyncio.shield(self._discard(warm))
            raise
        return warm

    async def _warm_up(self, handle: RuntimeHandle, boot_key: str) -> None:
        """Until the runtime has imported the agent modules (its first bind would wait
        for them); a runtime that does not say so is still used."""
        try:
            async with httpx.AsyncClient(
                timeout=self._start_timeout, verify=shared_tls_context()
            ) as client:
                response = await client.get(
                    f"{handle.url}/health",
                    params={"wait": "preload"},
                    headers={SESSION_KEY_HEADER: boot_key},
                )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("warm pool: runtime %s did not warm up: %s", handle.runtime_id, exc)

    async def wait_idle(self, count: int | None = None, timeout: float | None = None) -> None:
        """Until at least ``count`` (default: ``size``) runtimes are idle; TimeoutError."""
        wanted = self.size if count is None else count

        async def idle_enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self._idle) >= wanted or self._closed)

        await asyncio.wait_for(idle_enough(), timeout)

    # --- taking -------------------------------------------------------------------------------

    async def take(self, accept: Callable[[str], bool] | None = None) -> WarmRuntime | None:
        """An idle runtime still alive (whose conversation id ``accept`` takes), or None;
        a replacement starts in the background."""
        if self._closed:
            return None
        for warm in list(self._idle):
            if accept is not None and not accept(warm.conversation_id):
                continue
            self._idle.remove(warm)
            self._refill()
            if not await self.sandbox.is_alive(warm.handle):
                log.warning("warm pool: runtime %s died while idle", warm.handle.runtime_id)
                await self._discard(warm)
                continue
            marker = self.sandbox.conversation_dir(warm.conversation_id) / WARM_MARKER
            marker.unlink(missing_ok=True)
            log.info(
                "warm pool: runtime %s taken for conversation %s",
                warm.handle.runtime_id,
                warm.conversation_id,
            )
            return warm
        return None

    # --- cleaning up --------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop filling and stop every idle runtime (they serve no conversation)."""
        self._closed = True
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._filler
        idle, self._idle = self._idle, []
        for warm in idle:
            await self._discard(warm)
        async with self._changed:
            self._changed.notify_all()

    async def _discard(self, warm: WarmRuntime) -> None:
        try:
            await self.sandbox.kill(warm.handle)
        except Exception:
            log.exception("warm pool: could not stop runtime %s", warm.handle.runtime_id)
        await self._remove_leftovers(warm.conversation_id)

    async def _remove_leftovers(self, conversation_id: str) -> None:
        try:
            await self.sandbox.remove(conversation_id)
        except Exception:
            log.exception("warm pool: could not remove the runtime of %s", conversation_id)
        directory = self.sandbox.conversation_dir(conversation_id)
        await asyncio.to_thread(shutil.rmtree, directory, True)


def warm_leftovers(conversations_root: Path) -> list[str]:
    """Ids of directories still marked as a warm runtime's (an earlier server's pool)."""
    if not conversations_root.is_dir():
        return []
    return sorted(marker.parent.name for marker in conversations_root.glob(f"*/{WARM_MARKER}"))


async def remove_warm_leftovers(sandbox: Sandbox, is_conversation: Callable[[str], bool]) -> int:
    """After a restart: drop what an earlier server's idle warm runtimes left (their
    directories and, in containers, the containers); a marker on a directory that did
    become a conversation is just removed. Returns how many leftovers went."""
    removed = 0
    for conversation_id in warm_leftovers(sandbox.conversations_root):
        directory = sandbox.conversation_dir(conversation_id)
        if is_conversation(conversation_id):
            (directory / WARM_MARKER).unlink(missing_ok=True)
            continue
        log.info("removing the leftovers of an earlier warm runtime (%s)", conversation_id)
        try:
            await sandbox.remove(conversation_id)
        except Exception:
            log.exception("could not remove the runtime of %s", conversation_id)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        removed += 1
    return removed
