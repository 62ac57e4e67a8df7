"""The Kubernetes objects of the kubernetes sandbox, as plain dicts (the API's JSON).

Pure functions of a ``PodSettings``: no client, no cluster, so the tests check them field by
field and against the Kubernetes OpenAPI schema. Names and label values follow the API's
rules (DNS-1123 names, label values of at most 63 characters); a value that does not fit a
label (a user name, the conversations root) goes in an annotation, its label being a hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

POD_PREFIX = "convo-runtime-"
LABEL_PREFIX = "jupyter-convo/"
LABEL_APP = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
APP_NAME = "jupyter-convo"
COMPONENT = "runtime"
LABEL_CONVERSATION = LABEL_PREFIX + "conversation-id"
LABEL_OWNER = LABEL_PREFIX + "owner"
LABEL_INSTANCE = LABEL_PREFIX + "server-instance"
LABEL_ROOT = LABEL_PREFIX + "root"
ANNOTATION_OWNER = LABEL_PREFIX + "owner"
ANNOTATION_ROOT = LABEL_PREFIX + "conversations-root"
CONTAINER_NAME = "runtime"
SHARED_VOLUME = "convo-data"
# Writable scratch space on a read-only root filesystem: the runtime's HOME (IPython and
# Jupyter write there) and /tmp.
SCRATCH_MOUNTS = {"convo-home": "/home/convo", "convo-tmp": "/tmp"}

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def pod_name(conversation_id: str) -> str:
    return f"{POD_PREFIX}{conversation_id}"


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def label_value(text: str) -> str:
    """``text`` when it is a valid label value, else a hash of it (the full text goes in an
    annotation)."""
    return text if _LABEL_VALUE.match(text) else "h-" + short_hash(text)


def root_label(conversations_root: str) -> str:
    """The label every runtime pod of one conversations root carries."""
    return short_hash(conversations_root)


@dataclass(frozen=True)
class SharedVolume:
    """The claim that holds the conversations root, mounted at the same path as in the user's
    server (``sub_path`` of the claim at ``mount_path``), so every path means the same."""

    claim_name: str
    mount_path: str
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class PodSettings:
    """Everything a runtime pod is made from (the sandbox's traits, resolved)."""

    namespace: str
    image: str
    conversations_root: str
    server_instance_id: str
    runtime_port: int
    volume: SharedVolume
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: Sequence[str] = ()
    service_account: str = ""
    run_as_user: int = 1000
    run_as_group: int = 100
    fs_group: int | None = 100
    read_only_root_filesystem: bool = True
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    affinity: Mapping[str, Any] | None = None
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    extra_annotations: Mapping[str, str] = field(default_factory=dict)
    owner_references: Sequence[Mapping[str, Any]] = ()
    termination_grace_seconds: int = 10


def selector_labels(settings: PodSettings) -> dict[str, str]:
    """The labels that pick out this server's runtime pods (adoption, NetworkPolicy)."""
    return {
        LABEL_APP: APP_NAME,
        LABEL_COMPONENT: COMPONENT,
        LABEL_ROOT: root_label(settings.conversations_root),
    }


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def pod_labels(settings: PodSettings, conversation_id: str, owner: str | None) -> dict[str, str]:
    return {
        **settings.extra_labels,
        **selector_labels(settings),
        LABEL_CONVERSATION: conversation_id,
        LABEL_OWNER: label_value(owner or ""),
        LABEL_INSTANCE: label_value(settings.server_instance_id),
    }


def runtime_args(settings: PodSettings, conversation_dir: str, extra: Sequence[str]) -> list[str]:
    """Arguments after the image's ``python -m jupyter_convo.runtime`` (no secrets)."""
    return [
        "--conversations-root",
        settings.conversations_root,
        "--host",
        "0.0.0.0",
        "--port",
        str(settings.runtime_port),
        "--ready-file",
        f"{conversation_dir}/.ready",
        "--log-file",
        f"{conversation_dir}/runtime.log",
        *extra,
    ]


def pod_manifest(
    settings: PodSettings,
    conversation_id: str,
    *,
    env: Mapping[str, str],
    owner: str | None,
    args: Sequence[str],
) -> dict[str, Any]:
    """The runtime pod: one container, non-root, no privilege escalation, no capabilities,
    no API token, the shared volume at its server path and scratch space for the rest."""
    container_security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": settings.read_only_root_filesystem,
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
    }
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if settings.fs_group is not None:
        pod_security["fsGroup"] = settings.fs_group
    volume = settings.volume
    mount: dict[str, Any] = {
        "name": SHARED_VOLUME,
        "mountPath": volume.mount_path,
        "readOnly": volume.read_only,
    }
    if volume.sub_path:
        mount["subPath"] = volume.sub_path
    resources: dict[str, Any] = {}
    if settings.requests:
        resources["requests"] = dict(settings.requests)
    if settings.limits:
        resources["limits"] = dict(settings.limits)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": list(args),
        "env": [
            {"name": name, "value": value}
            for name, value in sorted({**env, "PYTHONUNBUFFERED": "1"}.items())
        ],
        "ports": [{"name": "runtime", "containerPort": settings.runtime_port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/alive", "port": settings.runtime_port},
            "periodSeconds": 2,
        },
        "resources": resources,
        "securityContext": container_security,
        "volumeMounts": [
            mount,
            *({"name": name, "mountPath": path} for name, path in SCRATCH_MOUNTS.items()),
        ],
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": [
            {
                "name": SHARED_VOLUME,
                "persistentVolumeClaim": {"claimName": volume.claim_name},
            },
            *({"name": name, "emptyDir": {}} for name in SCRATCH_MOUNTS),
        ],
    }
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in settings.tolerations]
    if settings.affinity:
        spec["affinity"] = dict(settings.affinity)
    metadata: dict[str, Any] = {
        "name": pod_name(conversation_id),
        "namespace": settings.namespace,
        "labels": pod_labels(settings, conversation_id, owner),
        "annotations": {
            **settings.extra_annotations,
            ANNOTATION_OWNER: owner or "",
            ANNOTATION_ROOT: settings.conversations_root,
        },
    }
    if settings.owner_references:
        metadata["ownerReferences"] = [dict(ref) for ref in settings.owner_references]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def network_policy_name(settings: PodSettings) -> str:
    return f"convo-runtimes-{root_label(settings.conversations_root)}"


def network_policy_manifest(
    settings: PodSettings, allowed_from: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Ingress to this server's runtime pods, on the runtime port, only from ``allowed_from``
    (NetworkPolicy peers: by default the user's server pod). Egress stays open: the runtime
    reaches the LLM provider itself."""
    metadata: dict[str, Any] = {
        "name": network_policy_name(settings),
        "namespace": settings.namespace,
        "labels": {**selector_labels(settings)},
        "annotations": {ANNOTATION_ROOT: settings.conversations_root},
    }
    if settings.owner_references:
        metadata["ownerReferences"] = [dict(ref) for ref in settings.owner_references]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": selector_labels(settings)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [dict(peer) for peer in allowed_from],
                    "ports": [{"protocol": "TCP", "port": settings.runtime_port}],
                }
            ],
        },
    }
