"""What a runtime pod's status and events say: still coming, ready to try, or failed.

Pure functions over the API's JSON (a pod and its events), so the start loop stays short
and every verdict is tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Waiting reasons that will not go away by waiting (the image cannot be pulled or the
# container cannot be made): the start fails at once with the API's message.
IMAGE_PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
CONTAINER_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError"})
# The cluster autoscaler's event when it adds a node for a pending pod: then an
# unschedulable pod is worth waiting for.
SCALE_UP_REASON = "TriggeredScaleUp"


@dataclass(frozen=True)
class PodVerdict:
    """``failure``: why the start must end now; ``ready_to_probe``: the container runs and
    has an address, so its /alive is worth asking; ``summary``: the state in words."""

    summary: str
    failure: str | None = None
    ready_to_probe: bool = False
    pod_ip: str | None = None


def _waiting(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"]), str(waiting.get("message") or "")
    return None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            if state.get("terminated"):
                terminated: Mapping[str, Any] = state["terminated"]
                return terminated
    return None


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            found: Mapping[str, Any] = condition
            return found
    return None


def exit_code(pod: Mapping[str, Any]) -> int | None:
    terminated = _terminated(pod)
    code = terminated.get("exitCode") if terminated else None
    return int(code) if isinstance(code, int) else None


def is_running(pod: Mapping[str, Any]) -> bool:
    """Not ended and not being deleted."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") in ("Pending", "Running")


def judge(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]], image: str) -> PodVerdict:
    """The verdict on a starting runtime pod."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    name = (pod.get("metadata") or {}).get("name", "the runtime pod")
    if phase in ("Failed", "Succeeded"):
        terminated = _terminated(pod) or {}
        reason = terminated.get("reason") or status.get("reason") or phase
        return PodVerdict(
            summary=phase,
            failure=(
                f"the runtime exited before it was ready (exit code "
                f"{terminated.get('exitCode', 'unknown')}, {reason})"
            ),
        )
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return PodVerdict(summary="deleting", failure=f"pod {name} was deleted while starting")
    waiting = _waiting(pod)
    if waiting is not None and waiting[0] in IMAGE_PULL_FAILURES:
        return PodVerdict(
            summary=waiting[0],
            failure=(
                f"the cluster cannot pull the runtime image {image!r} ({waiting[0]}: "
                f"{waiting[1] or 'no message'}). Push it to a registry the nodes reach "
                "(build it with `jupyter convo build-image`), set "
                "c.KubernetesSandbox.image_pull_secrets if the registry needs credentials, "
                "or set c.KubernetesSandbox.image to an image the cluster has"
            ),
        )
    if waiting is not None and waiting[0] in CONTAINER_FAILURES:
        return PodVerdict(
            summary=waiting[0],
            failure=f"the cluster cannot create the runtime container ({waiting[0]}: "
            f"{waiting[1] or 'no message'})",
        )
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        message = scheduled.get("message") or "no node fits"
        if scheduled.get("reason") == "Unschedulable" and not any(
            event.get("reason") == SCALE_UP_REASON for event in events
        ):
            return PodVerdict(
                summary="Unschedulable",
                failure=(
                    f"no node can run the runtime pod ({message}). Lower "
                    "c.KubernetesSandbox.cpu_request / memory_request, or check its "
                    "node_selector and tolerations"
                ),
            )
        return PodVerdict(summary=f"waiting for a node ({message})")
    pod_ip = status.get("podIP")
    if phase == "Running" and pod_ip:
        return PodVerdict(summary="Running", ready_to_probe=True, pod_ip=str(pod_ip))
    if waiting is not None:
        return PodVerdict(summary=waiting[0])
    return PodVerdict(summary=phase)


def event_line(event: Mapping[str, Any]) -> str:
    """One event as the start task shows it, e.g. ``Pulling: Pulling image "x"``."""
    return f"{event.get('reason') or 'Event'}: {event.get('message') or ''}".strip()
