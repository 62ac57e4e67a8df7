"""The kubernetes sandbox: each runtime runs in its own pod, through the Kubernetes API.

One pod per conversation, ``convo-runtime-<id>``, labelled with the conversation, its owner,
the server instance and (as a hash) the conversations root, so a restarted server finds its
pods again by label, and only its own. The server reaches the runtime over HTTP at the pod's
IP only; a NetworkPolicy admits nothing else to the runtime port.

Shared-volume mode, the only one: the conversations root lives on a PersistentVolumeClaim
that the user's server also mounts, and the runtime pod mounts the same claim at the same
path. The manager reads ``events.jsonl`` and the workspace from disk when a runtime is down
(docs/internals.md), so without a shared volume a conversation's history would die with its
pod. Inside a KubeSpawner pod the claim, namespace, node and owner are read from the server's
own pod; the runtime pod is owned by it (garbage-collected with it) and, by default, put on
its node (a ReadWriteOnce claim, z2jh's default, can be mounted by pods of one node only).

A pod cannot be started again: restarting a conversation deletes its old pod and makes a new
one (its files are on the volume). Traits: ``c.KubernetesSandbox.*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from traitlets import Bool, Dict, Float, Int, List, Unicode

from ....agent.confine import ConfinementSpec
from ..base import RuntimeHandle, Sandbox, SandboxStartError
from ..process import LOG_FILE_NAME, UPLOAD_FRAMING_BYTES, log_tail
from . import manifests, pod_state
from .cluster import ApiError, Cluster, ServerPod, in_cluster, incluster_namespace

ALIVE_TIMEOUT = 3.0
# A deleted pod is waited for this long beyond its grace before the sandbox goes on.
DELETE_SLACK = 30.0


class KubernetesSandbox(Sandbox):
    """Runtimes in pods of ``image`` in ``namespace``."""

    kind = "kubernetes"
    description = "A pod per runtime, through the Kubernetes API (docs/kubernetes.md)"
    # A pod keeps the environment it was created with: a warm one boots with its
    # conversation's own key.
    keeps_environment = True

    kubeconfig = Unicode(
        "",
        config=True,
        help="Kubeconfig file to reach the API. Default: '' (the in-cluster service account "
        "inside a pod, else KUBECONFIG or ~/.kube/config).",
    )
    kube_context = Unicode("", config=True, help="Kubeconfig context. Default: '' (current).")
    namespace = Unicode(
        "",
        config=True,
        help="Namespace of the runtime pods. Default: '' (the server pod's namespace inside "
        "a pod, else 'default').",
    )
    image = Unicode(
        "jupyter-convo-runtime:latest",
        config=True,
        help="Runtime image (`jupyter convo build-image`, pushed where the nodes pull from). "
        "Default: jupyter-convo-runtime:latest.",
    )
    image_pull_policy = Unicode(
        "IfNotPresent", config=True, help="Image pull policy. Default: IfNotPresent."
    )
    image_pull_secrets = List(
        Unicode(), config=True, help="Names of image pull secrets. Default: [] (none)."
    )
    service_account = Unicode(
        "",
        config=True,
        help="Service account of the runtime pods; its token is never mounted, so it needs "
        "no API rights. Default: '' (the namespace's default account).",
    )
    cpu_request = Unicode("100m", config=True, help="CPU request per runtime. Default: 100m.")
    cpu_limit = Unicode("", config=True, help="CPU limit per runtime. Default: '' (none).")
    memory_request = Unicode(
        "256Mi", config=True, help="Memory request per runtime. Default: 256Mi."
    )
    memory_limit = Unicode("2Gi", config=True, help="Memory limit per runtime. Default: 2Gi.")
    node_selector = Dict(config=True, help="Node selector of runtime pods. Default: {}.")
    tolerations = List(Dict(), config=True, help="Tolerations of runtime pods. Default: [].")
    extra_labels = Dict(config=True, help="More labels on runtime pods. Default: {}.")
    extra_annotations = Dict(config=True, help="More annotations on runtime pods. Default: {}.")
    run_as_user = Int(
        None,
        allow_none=True,
        config=True,
        help="UID of the runtime (never 0). Default: None (the server's own UID, so files "
        "on the shared volume stay the user's; 1000 when the server runs as root).",
    )
    run_as_group = Int(
        None,
        allow_none=True,
        config=True,
        help="GID of the runtime. Default: None (the server's GID; 100 when it runs as root).",
    )
    fs_group = Int(
        None,
        allow_none=True,
        config=True,
        help="fsGroup of runtime pods. Default: None (the run_as_group).",
    )
    read_only_root_filesystem = Bool(
        True,
        config=True,
        help="Read-only root filesystem (HOME and /tmp are emptyDirs). Default: True.",
    )
    shared_volume_claim = Unicode(
        "",
        config=True,
        help="PersistentVolumeClaim holding the conversations root, also mounted by the "
        "user's server. Default: '' (the claim mounted where the data directory is in the "
        "server's own pod).",
    )
    shared_volume_mount_path = Unicode(
        "",
        config=True,
        help="Where shared_volume_claim is mounted in the server (the runtime mounts it at "
        "the same path). Default: '' (the data directory: the claim holds just it).",
    )
    shared_volume_sub_path = Unicode(
        "", config=True, help="subPath of shared_volume_claim. Default: '' (its root)."
    )
    server_pod_name = Unicode(
        "",
        config=True,
        help="Name of the server's own pod. Default: '' (HOSTNAME inside a pod: KubeSpawner "
        "names the pod's host after it).",
    )
    own_runtimes_by_server_pod = Bool(
        True,
        config=True,
        help="Make the server's pod the owner of runtime pods, so they are deleted with it. "
        "Default: True.",
    )
    co_locate_with_server = Bool(
        True,
        config=True,
        help="Put runtime pods on the server pod's node (a ReadWriteOnce claim mounts on one "
        "node only); turn off for ReadWriteMany storage. Default: True.",
    )
    network_policy = Bool(
        True,
        config=True,
        help="Create a NetworkPolicy letting only network_policy_ingress_from reach the "
        "runtimes. Default: True.",
    )
    network_policy_ingress_from = List(
        Dict(),
        config=True,
        help="NetworkPolicy peers allowed to reach runtimes. Default: [] (pods with the "
        "server pod's KubeSpawner labels: hub.jupyter.org/username, ...).",
    )
    runtime_port = Int(8000, config=True, help="The runtime's port in its pod. Default: 8000.")
    poll_interval = Float(
        0.5, config=True, help="Seconds between pod status reads while starting. Default: 0.5."
    )

    def __init__(
        self,
        conversations_root: Path,
        *,
        server_instance_id: str = "",
        max_upload_bytes: int | None = None,
        **traits: Any,
    ) -> None:
        super().__init__(
            conversations_root.resolve(),
            server_instance_id=server_instance_id,
            max_upload_bytes=max_upload_bytes,
            **traits,
        )
        self.cluster = Cluster(kubeconfig=self.kubeconfig, context=self.kube_context)
        self._settings: manifests.PodSettings | None = None
        self._ingress: list[dict[str, Any]] = []
        self._policy_done = False
        # The last pod state seen per starting conversation (for the timeout message).
        self._last_state: dict[str, str] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("kubernetes_asyncio") is None:
            return "needs kubernetes_asyncio: pip install 'jupyter-convo[kubernetes]'"
        return None

    # --- settings -------------------------------------------------------------------------

    async def settings(self) -> manifests.PodSettings:
        """The pod settings: traits, completed from the server's own pod when it has one."""
        if self._settings is not None:
            return self._settings
        await self.cluster.connect()
        namespace = self.namespace or incluster_namespace() or "default"
        server = await self._server_pod(namespace)
        uid = os.getuid()
        user = self.run_as_user if self.run_as_user is not None else (uid or 1000)
        group = (
            self.run_as_group if self.run_as_group is not None else (os.getgid() if uid else 100)
        )
        if user == 0:
            raise SandboxStartError("c.KubernetesSandbox.run_as_user must not be 0 (root)")
        affinity = None
        if self.co_locate_with_server and server is not None and server.node_name:
            affinity = _on_node(server.node_name)
        owners = [server.owner_reference()] if server and self.own_runtimes_by_server_pod else []
        self._settings = manifests.PodSettings(
            namespace=namespace,
            image=self.image,
            image_pull_policy=self.image_pull_policy,
            image_pull_secrets=tuple(self.image_pull_secrets),
            conversations_root=str(self.conversations_root),
            server_instance_id=self.server_instance_id,
            runtime_port=self.runtime_port,
            volume=self._volume(server),
            service_account=self.service_account,
            run_as_user=user,
            run_as_group=group,
            fs_group=self.fs_group if self.fs_group is not None else group,
            read_only_root_filesystem=self.read_only_root_filesystem,
            requests=_quantities(cpu=self.cpu_request, memory=self.memory_request),
            limits=_quantities(cpu=self.cpu_limit, memory=self.memory_limit),
            node_selector=dict(self.node_selector),
            tolerations=tuple(self.tolerations),
            affinity=affinity,
            extra_labels=dict(self.extra_labels),
            extra_annotations=dict(self.extra_annotations),
            owner_references=tuple(owners),
        )
        self._ingress = list(self.network_policy_ingress_from)
        peer = server.ingress_peer() if server is not None else None
        if not self._ingress and peer is not None:
            self._ingress = [peer]
        return self._settings

    async def _server_pod(self, namespace: str) -> ServerPod | None:
        name = self.server_pod_name or (os.environ.get("HOSTNAME", "") if in_cluster() else "")
        if not name:
            return None
        try:
            pod = await self.cluster.read_pod(namespace, name)
        except ApiError as exc:
            self.log.warning("cannot read the server's own pod %s: %s", name, exc)
            return None
        if pod is None:
            self.log.warning("the server's own pod %s is not in namespace %s", name, namespace)
            return None
        return ServerPod.from_json(pod)

    def _volume(self, server: ServerPod | None) -> manifests.SharedVolume:
        if self.shared_volume_claim:
            mount = self.shared_volume_mount_path or str(self.conversations_root.parent)
            return manifests.SharedVolume(
                claim_name=self.shared_volume_claim,
                mount_path=mount,
                sub_path=self.shared_volume_sub_path,
            )
        volume = server.volume_for(self.conversations_root) if server else None
        if volume is None:
            raise SandboxStartError(
                f"the kubernetes sandbox needs the conversations folder {self.conversations_root} "
                "on a PersistentVolumeClaim the runtime pods can mount too, and found none in "
                "the server's pod: set c.KubernetesSandbox.shared_volume_claim (and "
                "shared_volume_mount_path)"
            )
        return volume

    def reaches(self, conversation_id: str, path: Path) -> bool:
        """A runtime pod sees the shared volume, nothing else of the server's disk."""
        if self._settings is None:
            return path.resolve().is_relative_to(self.conversations_root)
        return path.resolve().is_relative_to(self._settings.volume.mount_path)

    def confinement_spec(self) -> ConfinementSpec:
        """The pod is the jail: the tools run in it as they are."""
        return ConfinementSpec(mechanism="container")

    # --- start ----------------------------------------------------------------------------

    async def start(
        self,
        conversation_id: str,
        env: Mapping[str, str],
        *,
        timeout: float,
        owner: str | None = None,
        workspace: Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> RuntimeHandle:
        def say(detail: str) -> None:
            self.log.info("runtime pod of %s: %s", conversation_id, detail)
            if progress is not None:
                progress(detail)

        try:
            return await asyncio.wait_for(self._start(conversation_id, env, owner, say), timeout)
        except asyncio.TimeoutError:
            last = self._last_state.pop(conversation_id, "no pod yet")
            await self._delete_quietly(conversation_id)
            raise SandboxStartError(
                f"the runtime pod did not become ready within {timeout:g} s (last state: {last})"
                + self._log_suffix(conversation_id)
            ) from None
        except ApiError as exc:
            await self._delete_quietly(conversation_id)
            raise SandboxStartError(self._refused(exc)) from None
        except SandboxStartError as exc:
            await self._delete_quietly(conversation_id)
            raise SandboxStartError(f"{exc}{self._log_suffix(conversation_id)}") from None
        except BaseException:
            await asyncio.shield(self._delete_quietly(conversation_id))
            raise

    async def _start(
        self,
        conversation_id: str,
        env: Mapping[str, str],
        owner: str | None,
        say: Callable[[str], None],
    ) -> RuntimeHandle:
        self._last_state[conversation_id] = "no pod yet"
        settings = await self.settings()
        await self._ensure_network_policy(settings)
        name = manifests.pod_name(conversation_id)
        old = await self.cluster.read_pod(settings.namespace, name)
        if old is not None:
            self._check_ours(old)
            say(f"replacing the old pod {name}")
            await self._delete_and_wait(settings, old, grace=0)
        extra = []
        if self.max_upload_bytes is not None:
            extra = ["--max-upload-bytes", str(self.max_upload_bytes + UPLOAD_FRAMING_BYTES)]
        body = manifests.pod_manifest(
            settings,
            conversation_id,
            env=env,
            owner=owner,
            args=manifests.runtime_args(
                settings, str(self.conversation_dir(conversation_id)), extra
            ),
        )
        self.conversation_dir(conversation_id).mkdir(parents=True, exist_ok=True)
        pod = await self.cluster.create_pod(settings.namespace, body)
        uid = str(pod["metadata"]["uid"])
        say(f"pod {name} created")
        pod_ip = await self._wait_ready(settings, conversation_id, uid, say)
        handle = RuntimeHandle(
            conversation_id=conversation_id,
            kind=self.kind,
            host=pod_ip,
            port=settings.runtime_port,
            runtime_id=uid,
            server_instance_id=self.server_instance_id,
        )
        self.write_record(handle)
        say(f"ready at {handle.url}")
        return handle

    async def _wait_ready(
        self,
        settings: manifests.PodSettings,
        conversation_id: str,
        uid: str,
        say: Callable[[str], None],
    ) -> str:
        name = manifests.pod_name(conversation_id)
        seen_events: set[str] = set()
        last = ""
        async with httpx.AsyncClient(timeout=ALIVE_TIMEOUT) as client:
            while True:
                pod = await self.cluster.read_pod(settings.namespace, name)
                if pod is None or (pod.get("metadata") or {}).get("uid") != uid:
                    raise SandboxStartError(f"pod {name} was deleted while starting")
                events = await self.cluster.pod_events(settings.namespace, name, uid)
                for event in events:
                    key = str((event.get("metadata") or {}).get("uid") or id(event))
                    if key not in seen_events:
                        seen_events.add(key)
                        say(pod_state.event_line(event))
                verdict = pod_state.judge(pod, events, settings.image)
                self._last_state[conversation_id] = verdict.summary
                if verdict.failure:
                    raise SandboxStartError(verdict.failure)
                if verdict.summary != last:
                    last = verdict.summary
                    say(f"pod {verdict.summary}")
                if verdict.ready_to_probe and verdict.pod_ip:
                    url = f"http://{verdict.pod_ip}:{settings.runtime_port}/alive"
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(url)).status_code == 200:
                            return verdict.pod_ip
                await asyncio.sleep(self.poll_interval)

    async def _ensure_network_policy(self, settings: manifests.PodSettings) -> None:
        if self._policy_done or not self.network_policy:
            return
        if not self._ingress:
            self.log.warning(
                "no NetworkPolicy for runtime pods: the server runs in no pod with KubeSpawner "
                "labels; set c.KubernetesSandbox.network_policy_ingress_from"
            )
        else:
            body = manifests.network_policy_manifest(settings, self._ingress)
            if await self.cluster.ensure_network_policy(settings.namespace, body):
                self.log.info("created NetworkPolicy %s", body["metadata"]["name"])
        self._policy_done = True

    def _check_ours(self, pod: Mapping[str, Any]) -> None:
        metadata = pod.get("metadata") or {}
        root = (metadata.get("annotations") or {}).get(manifests.ANNOTATION_ROOT)
        if root != str(self.conversations_root):
            raise SandboxStartError(
                f"a pod named {metadata.get('name')} exists but belongs to another data "
                f"directory ({root or 'not jupyter-convo'}): delete it (kubectl delete pod "
                f"{metadata.get('name')}) and start again"
            )

    def _refused(self, exc: ApiError) -> str:
        if exc.status in (401, 403):
            return (
                f"the Kubernetes API refused the server ({exc.message}): its service account "
                "needs the Role in docs/kubernetes.md (pods, pods/status, events, "
                "networkpolicies)"
            )
        return f"the Kubernetes API could not start the runtime pod: {exc}"

    def _log_suffix(self, conversation_id: str) -> str:
        tail = log_tail(self.conversation_dir(conversation_id) / LOG_FILE_NAME)
        return f"; last lines of {LOG_FILE_NAME}:\n{tail}" if tail.strip() else ""

    # --- watch, stop, remove --------------------------------------------------------------

    async def _pod(self, handle: RuntimeHandle) -> dict[str, Any] | None:
        """The handle's pod (that incarnation), or None when it is gone."""
        settings = await self.settings()
        pod = await self.cluster.read_pod(
            settings.namespace, manifests.pod_name(handle.conversation_id)
        )
        if pod is None or (pod.get("metadata") or {}).get("uid") != handle.runtime_id:
            return None
        return pod

    async def is_alive(self, handle: RuntimeHandle) -> bool:
        try:
            pod = await self._pod(handle)
        except (ApiError, SandboxStartError) as exc:
            # The API did not answer: the pod may well still run.
            self.log.warning("cannot ask the API about %s: %s", handle.conversation_id, exc)
            return True
        return pod is not None and pod_state.is_running(pod)

    async def wait_exit(self, handle: RuntimeHandle) -> int | None:
        """Polls the pod (a watch would need list rights across restarts of the stream)."""
        warned = False
        while True:
            try:
                pod = await self._pod(handle)
            except (ApiError, SandboxStartError) as exc:
                if not warned:
                    self.log.warning("cannot ask the API about %s: %s", handle.conversation_id, exc)
                    warned = True
            else:
                if pod is None:
                    return None
                if not pod_state.is_running(pod):
                    return pod_state.exit_code(pod)
            await asyncio.sleep(max(self.poll_interval, 0.5))

    async def _delete_and_wait(
        self, settings: manifests.PodSettings, pod: Mapping[str, Any], *, grace: int
    ) -> None:
        metadata = pod.get("metadata") or {}
        name, uid = str(metadata.get("name")), str(metadata.get("uid"))
        if await self.cluster.delete_pod(settings.namespace, name, grace=grace, uid=uid):
            self.log.info("deleting pod %s (grace %s s)", name, grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace + DELETE_SLACK
        while loop.time() < deadline:
            now = await self.cluster.read_pod(settings.namespace, name)
            if now is None or (now.get("metadata") or {}).get("uid") != uid:
                return
            await asyncio.sleep(self.poll_interval)
        self.log.warning("pod %s is still terminating; going on", name)

    async def _end(self, handle: RuntimeHandle, grace: int) -> None:
        try:
            pod = await self._pod(handle)
            if pod is not None:
                await self._delete_and_wait(await self.settings(), pod, grace=grace)
        except (ApiError, SandboxStartError) as exc:
            self.log.warning("cannot delete the pod of %s: %s", handle.conversation_id, exc)
        self.remove_record(handle.conversation_id)

    async def stop(self, handle: RuntimeHandle, *, grace: float) -> None:
        await self._end(handle, max(1, round(grace)))

    async def kill(self, handle: RuntimeHandle) -> None:
        await self._end(handle, 0)

    async def _delete_quietly(self, conversation_id: str) -> None:
        with contextlib.suppress(Exception):
            settings = await self.settings()
            pod = await self.cluster.read_pod(
                settings.namespace, manifests.pod_name(conversation_id)
            )
            if pod is not None:
                self._check_ours(pod)
                await self._delete_and_wait(settings, pod, grace=0)

    async def remove(self, conversation_id: str) -> None:
        """The conversation is deleted: its pod goes too (stopped already, normally)."""
        await self._delete_quietly(conversation_id)
        self.remove_record(conversation_id)

    async def aclose(self) -> None:
        await self.cluster.close()

    # --- find again -----------------------------------------------------------------------

    async def find_existing(self) -> list[RuntimeHandle]:
        """This root's pods, by label: those that answer /alive are adopted, others deleted."""
        try:
            settings = await self.settings()
            pods = await self.cluster.list_pods(
                settings.namespace, manifests.label_selector(manifests.selector_labels(settings))
            )
        except (ApiError, SandboxStartError) as exc:
            self.log.warning("cannot look for running runtime pods: %s", exc)
            return []
        found: list[RuntimeHandle] = []
        async with httpx.AsyncClient(timeout=ALIVE_TIMEOUT) as client:
            for pod in pods:
                metadata = pod.get("metadata") or {}
                labels = metadata.get("labels") or {}
                annotations = metadata.get("annotations") or {}
                conversation_id = labels.get(manifests.LABEL_CONVERSATION)
                if not conversation_id or annotations.get(manifests.ANNOTATION_ROOT) != str(
                    self.conversations_root
                ):
                    continue  # a hash collision or a foreign pod: not ours to touch
                pod_ip = (pod.get("status") or {}).get("podIP")
                handle = RuntimeHandle(
                    conversation_id=conversation_id,
                    kind=self.kind,
                    host=str(pod_ip or "0.0.0.0"),
                    port=settings.runtime_port,
                    runtime_id=str(metadata.get("uid")),
                    server_instance_id=labels.get(manifests.LABEL_INSTANCE, ""),
                )
                if pod_state.is_running(pod) and pod_ip and await _answers(client, handle):
                    self.write_record(handle)
                    found.append(handle)
                    continue
                self.log.warning("runtime pod %s is not serving; deleting it", metadata.get("name"))
                await self.kill(handle)
        running = {handle.conversation_id for handle in found}
        for conversation_id in self.recorded_conversations():
            if conversation_id not in running:
                self.log.info("removing the stale runtime record of %s", conversation_id)
                self.remove_record(conversation_id)
        return found


def _quantities(**values: str) -> dict[str, str]:
    return {name: value for name, value in values.items() if value}


def _on_node(node_name: str) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": [node_name]}
                        ]
                    }
                ]
            }
        }
    }


async def _answers(client: httpx.AsyncClient, handle: RuntimeHandle) -> bool:
    try:
        response = await client.get(f"{handle.url}/alive")
    except httpx.HTTPError:
        return False
    return response.status_code == 200
