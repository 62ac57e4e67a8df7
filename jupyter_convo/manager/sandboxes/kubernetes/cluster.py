"""The Kubernetes API as the sandbox uses it: a ``kubernetes_asyncio`` client on dicts.

``kubernetes_asyncio`` (the async client KubeSpawner uses) is an optional dependency,
imported only here and only when the kubernetes sandbox starts. Answers are turned back into
the API's JSON (dicts), the form ``manifests`` and ``pod_state`` work on. API refusals
become ``SandboxStartError`` messages that say what to grant or set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..base import SandboxStartError
from .manifests import SharedVolume

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Labels of a KubeSpawner pod that name its user's server (old and new chart versions);
# the NetworkPolicy admits pods carrying the ones the server's pod has.
SERVER_POD_LABELS = (
    "hub.jupyter.org/username",
    "hub.jupyter.org/servername",
    "component",
    "app.kubernetes.io/component",
)


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def incluster_namespace(directory: Path = SERVICE_ACCOUNT_DIR) -> str | None:
    try:
        return (directory / "namespace").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class ApiError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def _api_error(exc: Any) -> ApiError:
    import json

    message = str(getattr(exc, "reason", "") or "")
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message") or message
        except (TypeError, ValueError, AttributeError):
            message = str(body)[:500]
    return ApiError(int(getattr(exc, "status", 0) or 0), str(exc.reason or ""), message)


class Cluster:
    """One API connection: kubeconfig when given, in-cluster config in a pod, else the
    default kubeconfig (``KUBECONFIG`` or ``~/.kube/config``)."""

    def __init__(self, *, kubeconfig: str = "", context: str = "") -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self._client: Any = None

    async def connect(self) -> None:
        if self._client is not None:
            return
        try:
            from kubernetes_asyncio import client, config
        except ImportError as exc:
            raise SandboxStartError(
                "the kubernetes sandbox needs kubernetes_asyncio: "
                "pip install 'jupyter-convo[kubernetes]'"
            ) from exc
        configuration = client.Configuration()
        try:
            if self.kubeconfig or not in_cluster():
                await config.load_kube_config(
                    config_file=self.kubeconfig or None,
                    context=self.context or None,
                    client_configuration=configuration,
                )
            else:
                config.load_incluster_config(client_configuration=configuration)
        except Exception as exc:
            where = self.kubeconfig or "the in-cluster service account or ~/.kube/config"
            raise SandboxStartError(
                f"cannot load a Kubernetes configuration from {where} ({exc}). Run the server "
                "in a pod, or set c.KubernetesSandbox.kubeconfig"
            ) from exc
        self._client = client.ApiClient(configuration)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _call(self, api: str, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``api.method(*args)`` as JSON; ``ApiError`` for an error status."""
        await self.connect()
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        target = getattr(client, api)(self._client)
        try:
            result = await getattr(target, method)(*args, **kwargs)
        except ApiException as exc:
            raise _api_error(exc) from exc
        data: dict[str, Any] = self._client.sanitize_for_serialization(result)
        return data

    async def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("CoreV1Api", "read_namespaced_pod", name, namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_pod(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("CoreV1Api", "create_namespaced_pod", namespace, body)

    async def delete_pod(
        self, namespace: str, name: str, *, grace: int, uid: str | None = None
    ) -> bool:
        """Delete the pod (only that incarnation when ``uid``); False if it was gone."""
        body: dict[str, Any] = {"gracePeriodSeconds": grace}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self._call("CoreV1Api", "delete_namespaced_pod", name, namespace, body=body)
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or another incarnation now
                return False
            raise
        return True

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        data = await self._call(
            "CoreV1Api", "list_namespaced_pod", namespace, label_selector=selector
        )
        return list(data.get("items") or [])

    async def pod_events(self, namespace: str, name: str, uid: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=Pod,involvedObject.name={name},involvedObject.uid={uid}"
        data = await self._call(
            "CoreV1Api", "list_namespaced_event", namespace, field_selector=selector
        )
        return list(data.get("items") or [])

    async def ensure_network_policy(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create the policy; True if made, False if one of that name exists."""
        try:
            await self._call("NetworkingV1Api", "create_namespaced_network_policy", namespace, body)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True


@dataclass(frozen=True)
class ServerPod:
    """The user's server's own pod (KubeSpawner's), when the server runs in one."""

    name: str
    namespace: str
    uid: str
    node_name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    # mountPath -> (claim name, subPath) for every PVC mount of its containers
    claims: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, pod: Mapping[str, Any]) -> ServerPod:
        metadata = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        claim_of = {
            volume["name"]: volume["persistentVolumeClaim"]["claimName"]
            for volume in spec.get("volumes") or []
            if volume.get("persistentVolumeClaim")
        }
        claims = {}
        for container in spec.get("containers") or []:
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") in claim_of:
                    claims[mount["mountPath"]] = (claim_of[mount["name"]], mount.get("subPath", ""))
        return cls(
            name=str(metadata.get("name", "")),
            namespace=str(metadata.get("namespace", "")),
            uid=str(metadata.get("uid", "")),
            node_name=str(spec.get("nodeName") or ""),
            labels=dict(metadata.get("labels") or {}),
            claims=claims,
        )

    def owner_reference(self) -> dict[str, Any]:
        """Runtime pods owned by the server's pod are garbage-collected with it."""
        return {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}

    def ingress_peer(self) -> dict[str, Any] | None:
        labels = {key: self.labels[key] for key in SERVER_POD_LABELS if key in self.labels}
        return {"podSelector": {"matchLabels": labels}} if labels else None

    def volume_for(self, path: Path) -> SharedVolume | None:
        """The PVC mount that holds ``path`` (the deepest), as the runtime must mount it."""
        best: tuple[str, tuple[str, str]] | None = None
        for mount_path, claim in self.claims.items():
            if PurePosixPath(path).is_relative_to(mount_path) and (
                best is None or len(mount_path) > len(best[0])
            ):
                best = (mount_path, claim)
        if best is None:
            return None
        return SharedVolume(claim_name=best[1][0], mount_path=best[0], sub_path=best[1][1])
