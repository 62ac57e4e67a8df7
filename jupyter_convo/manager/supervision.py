"""Runtime supervision: the runtimes this manager runs, a watcher per runtime that notices
when it exits, the graceful stop protocol, and reconnecting a lost event stream.

What an exit or a lost stream means for the conversation (its log, status and watchers)
is the manager's business: it is told through the callbacks it passes in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .config import ManagerConfig
from .runtime_client import RuntimeClient, RuntimeClientError
from .sandboxes.base import RuntimeHandle, Sandbox

log = logging.getLogger(__name__)

# A lost upstream is re-checked this many times (doubling delay) before giving up on it.
UPSTREAM_RETRIES = 3
UPSTREAM_RETRY_DELAY = 0.5


@dataclass(eq=False)
class ManagedRuntime:
    """A runtime this manager started or found again."""

    conversation_id: str
    user_id: str | None
    handle: RuntimeHandle
    client: RuntimeClient
    ready: bool = False
    stopping: bool = False
    # Bound to its conversation and not yet ended: its routes are the way to its events.
    bound: bool = False
    watcher: asyncio.Task[None] | None = None


class RuntimeSupervisor:
    """Owns the running runtimes (see the module doc). Callbacks: the session key of a
    conversation, its lock, ``on_exit(runtime, code)`` (called under the lock when a
    runtime ends unasked) and ``reconnect(runtime)`` (its event stream again)."""

    def __init__(
        self,
        sandbox: Sandbox,
        config: ManagerConfig,
        *,
        session_key: Callable[[str], str],
        lock: Callable[[str], asyncio.Lock],
        on_exit: Callable[[ManagedRuntime, int | None], Awaitable[None]],
        reconnect: Callable[[ManagedRuntime], Awaitable[None]],
    ) -> None:
        self.sandbox = sandbox
        self.config = config
        self._session_key = session_key
        self._lock = lock
        self._on_exit = on_exit
        self._reconnect = reconnect
        self.runtimes: dict[str, ManagedRuntime] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.closing = False

    def client(self, handle: RuntimeHandle, key: str | None = None) -> RuntimeClient:
        """A client of ``handle``'s runtime with the conversation's key (or ``key``)."""
        return RuntimeClient(
            handle.url,
            key if key is not None else self._session_key(handle.conversation_id),
            handle.conversation_id,
            timeout=self.config.runtime_request_timeout,
        )

    def get(self, conversation_id: str) -> ManagedRuntime | None:
        return self.runtimes.get(conversation_id)

    def ready(self, conversation_id: str) -> ManagedRuntime | None:
        """The conversation's runtime if it is bound and not stopping."""
        runtime = self.runtimes.get(conversation_id)
        if runtime is None or not runtime.ready or runtime.stopping:
            return None
        return runtime

    def current(self, runtime: ManagedRuntime) -> bool:
        """Whether ``runtime`` is still its conversation's runtime and not being stopped."""
        return not runtime.stopping and self.runtimes.get(runtime.conversation_id) is runtime

    # --- watching -----------------------------------------------------------------------------

    def watch(self, runtime: ManagedRuntime) -> None:
        runtime.watcher = asyncio.create_task(
            self._watch(runtime), name=f"watch-{runtime.conversation_id}"
        )

    def cancel_watcher(self, runtime: ManagedRuntime) -> None:
        watcher, runtime.watcher = runtime.watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()

    async def _watch(self, runtime: ManagedRuntime) -> None:
        code = await self.sandbox.wait_exit(runtime.handle)
        if not self.current(runtime):
            return
        async with self._lock(runtime.conversation_id):
            if not self.current(runtime):
                return
            runtime.watcher = None
            await self._on_exit(runtime, code)

    def upstream_closed(self, conversation_id: str) -> None:
        """A relay's event stream ended by itself: reconnect it, or end the runtime."""
        runtime = self.runtimes.get(conversation_id)
        if runtime is None or runtime.stopping or not runtime.ready or self.closing:
            return
        task: asyncio.Task[None] = asyncio.ensure_future(self._recover_upstream(runtime))
        task.set_name(f"upstream-{conversation_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _recover_upstream(self, runtime: ManagedRuntime) -> None:
        """The event stream ended while the runtime should run: reconnect if it answers,
        else end it (its watcher then reports it dead)."""
        delay = UPSTREAM_RETRY_DELAY
        for _attempt in range(UPSTREAM_RETRIES):
            if not self.current(runtime):
                return
            if not await self.sandbox.is_alive(runtime.handle):
                return  # the watcher takes it from here
            if await runtime.client.alive():
                await self._reconnect(runtime)
                log.info("reconnected to the event stream of %s", runtime.conversation_id)
                return
            await asyncio.sleep(delay)
            delay *= 2
        if not self.current(runtime):
            return
        log.warning("runtime of %s stopped answering; killing it", runtime.conversation_id)
        await self.sandbox.kill(runtime.handle)

    async def cancel_background(self) -> None:
        self.closing = True
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # --- stopping -----------------------------------------------------------------------------

    async def stop(self, runtime: ManagedRuntime) -> None:
        """Graceful stop: ask the runtime, poll it a few times, then end it through the
        sandbox. The runtime stays recorded; the caller settles the conversation."""
        conversation_id = runtime.conversation_id
        runtime.stopping = True
        self.cancel_watcher(runtime)
        handle = runtime.handle
        log.info("stopping conversation %s (runtime %s)", conversation_id, handle.runtime_id)
        try:
            await runtime.client.stop()
        except RuntimeClientError as exc:
            log.warning("runtime of %s refused to stop (%s); terminating it", conversation_id, exc)
        else:
            for _attempt in range(self.config.stop_poll_attempts):
                if await self._exited_within(handle, self.config.stop_poll_interval):
                    break
                try:
                    info = await runtime.client.info()
                except RuntimeClientError:
                    continue  # going away: the next wait sees it exit
                log.debug("runtime of %s reports %s", conversation_id, info.status)
        await self.sandbox.stop(handle, grace=self.config.kill_grace_seconds)

    async def _exited_within(self, handle: RuntimeHandle, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.sandbox.wait_exit(handle), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def stop_orphans(self, conversation_id: str) -> None:
        """A runtime of this conversation that runs unknown to us (its record lost) holds
        the log's lock, so a new one could never start: stop it first."""
        for handle in await self.sandbox.find_orphans(conversation_id):
            log.warning(
                "runtime %s of %s runs without a record; stopping it before the start",
                handle.runtime_id,
                conversation_id,
            )
            client = self.client(handle)
            try:
                await client.stop()
            except RuntimeClientError as exc:
                log.info("the orphaned runtime did not stop by itself (%s)", exc.message)
            finally:
                await client.aclose()
            await self.sandbox.stop(handle, grace=self.config.kill_grace_seconds)
