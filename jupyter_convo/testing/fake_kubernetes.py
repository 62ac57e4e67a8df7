"""A fake Kubernetes API over HTTP: the test double at the cluster boundary.

No API server can run on the test machines, so the kubernetes sandbox is tested against
this: an aiohttp server in the test's event loop that serves the subset of the API the
sandbox uses (pods, pod events, NetworkPolicies) with label and field selectors, uid
preconditions and graceful deletion, records every request (method, path, query, JSON
body), and plays a kubelet that scripts each new pod's life: ``run`` (scheduled, image
pulled, then a real runtime process on its own loopback address as the pod IP),
``unschedulable``, ``scale_up`` (unschedulable until ``release``), ``image_pull_error``,
``crash`` and ``hang``. Every phase a pod goes through is kept in ``transitions``.

What a fake cannot show (admission, real scheduling, CNI enforcing the NetworkPolicy,
volume attachment, garbage collection by owner) is for the real-cluster tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

BEHAVIOURS = ("run", "unschedulable", "scale_up", "image_pull_error", "crash", "hang")
TOKEN = "fake-token"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str


@dataclass
class _PodLife:
    behaviour: str
    process: asyncio.subprocess.Process | None = None
    home: tempfile.TemporaryDirectory[str] | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


Launcher = Callable[[Mapping[str, Any], str, str], Awaitable[asyncio.subprocess.Process]]


async def launch_runtime(
    pod: Mapping[str, Any], pod_ip: str, home: str
) -> asyncio.subprocess.Process:
    """Run the pod's container as the image would: ``python -m jupyter_convo.runtime`` with
    the pod's args (listening on ``pod_ip`` instead of 0.0.0.0) and env, HOME in ``home``."""
    container = pod["spec"]["containers"][0]
    args = [pod_ip if arg == "0.0.0.0" else arg for arg in container.get("args") or []]
    env = {item["name"]: item.get("value", "") for item in container.get("env") or []}
    keep = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "VIRTUAL_ENV")
    base = {name: os.environ[name] for name in keep if name in os.environ}
    output = await asyncio.to_thread(open, os.path.join(home, "container-output"), "wb")
    with output:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jupyter_convo.runtime",
            *args,
            env={**base, **env, "HOME": home},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=output,
            start_new_session=True,
        )


class FakeKubernetes:
    """The fake API server; ``await fake.start()``, then ``fake.url`` / ``fake.kubeconfig()``."""

    def __init__(self, *, launcher: Launcher = launch_runtime) -> None:
        self.launcher = launcher
        self.requests: list[RecordedRequest] = []
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.network_policies: dict[tuple[str, str], dict[str, Any]] = {}
        # pod name -> every phase or state it went through, in order
        self.transitions: dict[str, list[str]] = {}
        self.behaviours: deque[str] = deque()
        # pod name -> what its container wrote to stderr (kept when the pod goes)
        self.container_output: dict[str, str] = {}
        self.default_behaviour = "run"
        # (method, path suffix) -> (status, message): the next matching request fails
        self.failures: dict[tuple[str, str], tuple[int, str]] = {}
        self._lives: dict[str, _PodLife] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._ips = itertools.count(2)
        self._net = f"127.{random.randint(20, 250)}.{random.randint(0, 250)}"
        self.url = ""

    # --- serving -------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._record])
        core = "/api/v1/namespaces/{ns}"
        net = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
        app.router.add_post(core + "/pods", self._create_pod)
        app.router.add_get(core + "/pods", self._list_pods)
        app.router.add_get(core + "/pods/{name}", self._read_pod)
        app.router.add_delete(core + "/pods/{name}", self._delete_pod)
        app.router.add_get(core + "/events", self._list_events)
        app.router.add_post(net, self._create_policy)
        app.router.add_get(net + "/{name}", self._read_policy)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        for name in list(self._lives):
            await self._stop_life(name, grace=0)
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig (JSON is YAML) pointing at this server with a bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            body = await request.json()
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                body,
                request.headers.get("Authorization", ""),
            )
        )
        for (method, suffix), (status, message) in list(self.failures.items()):
            if request.method == method and request.path.endswith(suffix):
                del self.failures[(method, suffix)]
                return _status(status, message)
        response: web.StreamResponse = await handler(request)
        return response

    def requests_to(self, method: str, suffix: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    # --- pods ----------------------------------------------------------------------------

    async def _create_pod(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        pod = copy.deepcopy(await request.json())
        name = pod["metadata"]["name"]
        if (ns, name) in self.pods:
            return _status(409, f'pods "{name}" already exists')
        pod["metadata"].update(
            namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion="1"
        )
        pod["status"] = {"phase": "Pending"}
        self.pods[(ns, name)] = pod
        self.transitions.setdefault(name, []).append("Pending")
        behaviour = self.behaviours.popleft() if self.behaviours else self.default_behaviour
        life = _PodLife(behaviour)
        self._lives[name] = life
        life.task = asyncio.create_task(self._kubelet(ns, name, life))
        await self._notify()
        return web.json_response(pod, status=201)

    async def _list_pods(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        wanted = _selector(request.query.get("labelSelector", ""))
        items = [
            pod
            for (pod_ns, _), pod in self.pods.items()
            if pod_ns == ns
            and all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
        return web.json_response(
            {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        )

    async def _read_pod(self, request: web.Request) -> web.Response:
        pod = self.pods.get((request.match_info["ns"], request.match_info["name"]))
        if pod is None:
            return _status(404, f'pods "{request.match_info["name"]}" not found')
        return web.json_response(pod)

    async def _delete_pod(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self.pods.get((ns, name))
        if pod is None:
            return _status(404, f'pods "{name}" not found')
        body = (await request.json()) if request.can_read_body else {}
        uid = (body.get("preconditions") or {}).get("uid")
        if uid and uid != pod["metadata"]["uid"]:
            return _status(409, "Precondition failed: UID in precondition does not match")
        grace = int(
            body.get("gracePeriodSeconds", pod["spec"].get("terminationGracePeriodSeconds", 30))
        )
        if not pod["metadata"].get("deletionTimestamp"):
            pod["metadata"]["deletionTimestamp"] = _now()
            self.transitions[name].append("Terminating")
            task = asyncio.create_task(self._finish_delete(ns, name, grace))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(pod)

    async def _finish_delete(self, ns: str, name: str, grace: int) -> None:
        await self._stop_life(name, grace=grace)
        if self.pods.pop((ns, name), None) is not None:
            self.transitions[name].append("Deleted")
        await self._notify()

    async def _list_events(self, request: web.Request) -> web.Response:
        wanted = _selector(request.query.get("fieldSelector", ""))
        items = [
            event for event in self.events if all(_field(event, k) == v for k, v in wanted.items())
        ]
        return web.json_response(
            {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": items}
        )

    # --- network policies ----------------------------------------------------------------

    async def _create_policy(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        policy = copy.deepcopy(await request.json())
        name = policy["metadata"]["name"]
        if (ns, name) in self.network_policies:
            return _status(409, f'networkpolicies.networking.k8s.io "{name}" already exists')
        policy["metadata"].update(namespace=ns, uid=str(uuid.uuid4()))
        self.network_policies[(ns, name)] = policy
        return web.json_response(policy, status=201)

    async def _read_policy(self, request: web.Request) -> web.Response:
        policy = self.network_policies.get((request.match_info["ns"], request.match_info["name"]))
        return web.json_response(policy) if policy else _status(404, "not found")

    # --- the kubelet ---------------------------------------------------------------------

    def release(self, name: str) -> None:
        """A ``scale_up`` pod gets its node."""
        self._lives[name].released.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds (checked after every change of a pod or event)."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def add_event(
        self, ns: str, name: str, reason: str, message: str, kind: str = "Normal"
    ) -> None:
        pod = self.pods[(ns, name)]
        self.events.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{name}.{uuid.uuid4().hex[:8]}",
                    "namespace": ns,
                    "uid": str(uuid.uuid4()),
                },
                "involvedObject": {
                    "kind": "Pod",
                    "name": name,
                    "namespace": ns,
                    "uid": pod["metadata"]["uid"],
                },
                "reason": reason,
                "message": message,
                "type": kind,
            }
        )

    async def _set(self, ns: str, name: str, state: str, status: Mapping[str, Any]) -> None:
        pod = self.pods.get((ns, name))
        if pod is None:
            return
        pod["status"] = {**pod["status"], **copy.deepcopy(dict(status))}
        self.transitions[name].append(state)
        await self._notify()

    async def _kubelet(self, ns: str, name: str, life: _PodLife) -> None:
        image = self.pods[(ns, name)]["spec"]["containers"][0]["image"]
        unschedulable = {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu.",
                }
            ]
        }
        if life.behaviour in ("unschedulable", "scale_up"):
            self.add_event(
                ns,
                name,
                "FailedScheduling",
                "0/3 nodes are available: 3 Insufficient cpu.",
                "Warning",
            )
            if life.behaviour == "scale_up":
                self.add_event(ns, name, "TriggeredScaleUp", "pod triggered scale-up: [pool 1->2]")
            await self._set(ns, name, "Unschedulable", unschedulable)
            if life.behaviour == "unschedulable":
                return
            await life.released.wait()
        scheduled = {"conditions": [{"type": "PodScheduled", "status": "True"}]}
        self.add_event(ns, name, "Scheduled", f"Successfully assigned {ns}/{name} to node-1")
        await self._set(ns, name, "Scheduled", {**scheduled, "hostIP": "10.0.0.1"})
        self.add_event(ns, name, "Pulling", f'Pulling image "{image}"')
        if life.behaviour == "image_pull_error":
            message = f'failed to pull and unpack image "{image}": not found'
            self.add_event(ns, name, "Failed", f"Failed to pull image: {message}", "Warning")
            waiting = {"waiting": {"reason": "ErrImagePull", "message": message}}
            await self._set(ns, name, "ErrImagePull", {"containerStatuses": [_container(waiting)]})
            return
        self.add_event(ns, name, "Pulled", f'Successfully pulled image "{image}"')
        if life.behaviour == "crash":
            terminated = {"terminated": {"exitCode": 3, "reason": "Error"}}
            await self._set(
                ns,
                name,
                "Failed",
                {"phase": "Failed", "containerStatuses": [_container(terminated)]},
            )
            return
        pod_ip = f"{self._net}.{next(self._ips)}"
        if life.behaviour in ("run", "scale_up"):
            life.home = tempfile.TemporaryDirectory(prefix="fake-pod-home-")
            life.process = await self.launcher(self.pods[(ns, name)], pod_ip, life.home.name)
        self.add_event(ns, name, "Started", "Started container runtime")
        running = {"running": {"startedAt": _now()}}
        await self._set(
            ns,
            name,
            "Running",
            {"phase": "Running", "podIP": pod_ip, "containerStatuses": [_container(running)]},
        )
        if life.process is not None:
            code = await life.process.wait()
            if (ns, name) in self.pods and not self.pods[(ns, name)]["metadata"].get(
                "deletionTimestamp"
            ):
                phase = "Succeeded" if code == 0 else "Failed"
                terminated = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                    }
                }
                await self._set(
                    ns, name, phase, {"phase": phase, "containerStatuses": [_container(terminated)]}
                )

    async def _stop_life(self, name: str, *, grace: int) -> None:
        life = self._lives.pop(name, None)
        if life is None:
            return
        process = life.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL if grace == 0 else signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace or None)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if life.task is not None and not life.task.done():
            life.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await life.task
        if life.home is not None:
            with contextlib.suppress(OSError):
                path = Path(life.home.name, "container-output")
                output = await asyncio.to_thread(path.read_text, errors="replace")
                self.container_output[name] = output
            life.home.cleanup()

    def kill_runtime(self, name: str) -> None:
        """The runtime process dies (OOM, crash): the pod turns Failed."""
        process = self._lives[name].process
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)


def _container(state: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": "runtime",
        "image": "x",
        "imageID": "",
        "ready": "running" in state,
        "restartCount": 0,
        "state": dict(state),
    }


def _status(code: int, message: str) -> web.Response:
    reasons = {
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "AlreadyExists",
        422: "Invalid",
    }
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reasons.get(code, "InternalError"),
        "code": code,
    }
    return web.json_response(body, status=code)


def _selector(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    return {key: value for key, value in pairs}


def _field(obj: Mapping[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
