"""KubernetesSandbox against the fake Kubernetes API: every request it makes, every pod
transition, and the failure cases (unschedulable, image pull, crash, API refusal).

Waits are on the fake's state changes or on the sandbox's own answers; each has the
sandbox's start timeout as its bound.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from kube_harness import CLAIM, NAMESPACE, MakeSandbox

from jupyter_convo.manager.sandboxes.base import SandboxStartError
from jupyter_convo.manager.sandboxes.kubernetes import manifests
from jupyter_convo.runtime.auth import SESSION_KEY_ENV
from jupyter_convo.testing.fake_kubernetes import TOKEN, FakeKubernetes

START = 60.0
KEY = "a-session-key-of-32-characters!"
CID = "c0ffee00c0ffee00c0ffee00c0ffee00"
POD = f"convo-runtime-{CID}"


class Progress(list[str]):
    """The start's progress lines; ``wait_for`` waits until one matches."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def append(self, line: str) -> None:
        super().append(line)
        self.changed.set()

    async def wait_for(self, text: str) -> None:
        async def wait() -> None:
            while not any(text in line for line in self):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), START)


async def start(sandbox: Any, progress: list[str] | None = None, **kwargs: Any) -> Any:
    return await sandbox.start(
        CID,
        {SESSION_KEY_ENV: KEY},
        timeout=kwargs.pop("timeout", START),
        owner="ada",
        progress=progress.append if progress is not None else None,
        **kwargs,
    )


async def test_start_makes_one_pod_and_reports_its_progress(
    fake: FakeKubernetes, make_sandbox: MakeSandbox, data_dir: Path, runtime_port: int
) -> None:
    sandbox = make_sandbox()
    progress: list[str] = []
    handle = await start(sandbox, progress)

    # The handle reaches the real runtime at the pod IP.
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{handle.url}/alive")).status_code == 200
    pod = fake.pods[(NAMESPACE, POD)]
    assert handle.host == pod["status"]["podIP"] and handle.port == runtime_port
    assert handle.runtime_id == pod["metadata"]["uid"] and handle.kind == "kubernetes"
    assert sandbox.read_record(CID) == handle

    # Every request, in order, authenticated with the kubeconfig's token.
    assert {r.authorization for r in fake.requests} == {f"Bearer {TOKEN}"}
    creates = fake.requests_to("POST")
    assert [r.path for r in creates] == [
        f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies",
        f"/api/v1/namespaces/{NAMESPACE}/pods",
    ]
    policy, body = creates[0].body, creates[1].body
    assert policy["spec"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"hub.jupyter.org/username": "ada"}}}
    ]
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items() <= body["metadata"]["labels"].items()
    )
    assert body["metadata"]["labels"][manifests.LABEL_CONVERSATION] == CID
    assert body["metadata"]["labels"][manifests.LABEL_OWNER] == "ada"
    assert body["metadata"]["labels"][manifests.LABEL_INSTANCE] == "server-1"
    [container] = body["spec"]["containers"]
    assert {"name": SESSION_KEY_ENV, "value": KEY} in container["env"]
    assert KEY not in repr(body["metadata"]) + repr(container["args"])
    assert body["spec"]["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert body["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": CLAIM}
    assert container["volumeMounts"][0]["mountPath"] == str(data_dir)
    assert container["args"][:2] == ["--conversations-root", str(data_dir / "conversations")]
    # Policy, a look for an old pod, the pod; then reads of it and its events only.
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.requests]
    assert calls[:3] == [("POST", "networkpolicies"), ("GET", POD), ("POST", "pods")]
    assert set(calls[3:]) == {("GET", POD), ("GET", "events")}
    events_query = fake.requests_to("GET", "/events")[0].query
    assert events_query["fieldSelector"] == (
        f"involvedObject.kind=Pod,involvedObject.name={POD},"
        f"involvedObject.uid={pod['metadata']['uid']}"
    )

    assert fake.transitions[POD] == ["Pending", "Scheduled", "Running"]
    assert any(line.startswith("Scheduled:") for line in progress)
    assert any(line.startswith("Pulling:") for line in progress)
    assert progress[-1] == f"ready at {handle.url}"

    assert await sandbox.is_alive(handle)
    await sandbox.stop(handle, grace=2)
    assert fake.transitions[POD][-2:] == ["Terminating", "Deleted"]
    [delete] = fake.requests_to("DELETE")
    assert delete.body == {"gracePeriodSeconds": 2, "preconditions": {"uid": handle.runtime_id}}
    assert not await sandbox.is_alive(handle)
    assert sandbox.read_record(CID) is None
    assert await sandbox.wait_exit(handle) is None  # the pod is gone


async def test_the_network_policy_is_made_once(
    fake: FakeKubernetes, make_sandbox: MakeSandbox
) -> None:
    sandbox = make_sandbox()
    handle = await start(sandbox)
    await sandbox.kill(handle)
    other = make_sandbox()  # a restarted server: the policy exists (409) and is kept
    handle = await start(other)
    await other.kill(handle)
    policy_posts = fake.requests_to("POST", "/networkpolicies")
    assert len(policy_posts) == 2 and len(fake.network_policies) == 1
    kill = fake.requests_to("DELETE")[-1]
    assert kill.body["gracePeriodSeconds"] == 0


@pytest.mark.parametrize(
    ("behaviour", "transitions", "says"),
    [
        (
            "image_pull_error",
            ["Pending", "Scheduled", "ErrImagePull", "Terminating", "Deleted"],
            "cannot pull the runtime image 'jupyter-convo-runtime:latest' (ErrImagePull",
        ),
        (
            "unschedulable",
            ["Pending", "Unschedulable", "Terminating", "Deleted"],
            "no node can run the runtime pod (0/3 nodes are available: 3 Insufficient cpu.)",
        ),
        (
            "crash",
            ["Pending", "Scheduled", "Failed", "Terminating", "Deleted"],
            "the runtime exited before it was ready (exit code 3, Error)",
        ),
    ],
)
async def test_a_pod_that_cannot_run_ends_the_start_with_why(
    fake: FakeKubernetes,
    make_sandbox: MakeSandbox,
    behaviour: str,
    transitions: list[str],
    says: str,
) -> None:
    fake.behaviours.append(behaviour)
    sandbox = make_sandbox()
    with pytest.raises(SandboxStartError) as caught:
        await start(sandbox)
    assert says in str(caught.value)
    # The failed pod was deleted before the start returned; no record stays.
    assert fake.transitions[POD] == transitions
    assert (NAMESPACE, POD) not in fake.pods
    assert sandbox.read_record(CID) is None


async def test_an_unschedulable_pod_waits_while_the_autoscaler_adds_a_node(
    fake: FakeKubernetes, make_sandbox: MakeSandbox
) -> None:
    fake.behaviours.append("scale_up")
    sandbox = make_sandbox()
    progress = Progress()
    starting = asyncio.create_task(start(sandbox, progress))
    await progress.wait_for("TriggeredScaleUp")
    assert not starting.done()
    fake.release(POD)
    handle = await starting
    assert fake.transitions[POD] == ["Pending", "Unschedulable", "Scheduled", "Running"]
    assert any(line.startswith("pod waiting for a node") for line in progress)
    await sandbox.kill(handle)


async def test_a_pod_that_never_answers_times_out_with_its_last_state(
    fake: FakeKubernetes, make_sandbox: MakeSandbox
) -> None:
    fake.behaviours.append("hang")  # Running, but nothing listens
    sandbox = make_sandbox()
    progress = Progress()
    starting = asyncio.create_task(start(sandbox, progress, timeout=3600))
    await progress.wait_for("pod Running")
    # The start keeps probing; give it a deadline that has now passed.
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert fake.transitions[POD][-2:] == ["Terminating", "Deleted"]
    with pytest.raises(SandboxStartError, match=r"did not become ready within 0\.5 s \(last"):
        fake.behaviours.append("hang")
        await start(sandbox, timeout=0.5)


async def test_an_api_refusal_says_which_rights_are_missing(
    fake: FakeKubernetes, make_sandbox: MakeSandbox
) -> None:
    fake.failures[("POST", "/pods")] = (
        403,
        'pods is forbidden: User "system:serviceaccount:jhub:default" cannot create resource',
    )
    with pytest.raises(SandboxStartError, match=r"needs the Role in docs/kubernetes\.md"):
        await start(make_sandbox())
    assert not fake.pods


async def test_restart_replaces_the_old_pod(
    fake: FakeKubernetes, make_sandbox: MakeSandbox
) -> None:
    sandbox = make_sandbox()
    first = await start(sandbox)
    # The server lost track (no stop): the next start deletes the old pod, makes a new one.
    second = await start(sandbox)
    assert second.runtime_id != first.runtime_id
    assert fake.transitions[POD] == [
        "Pending", "Scheduled", "Running", "Terminating", "Deleted",
        "Pending", "Scheduled", "Running",
    ]  # fmt: skip
    assert not await sandbox.is_alive(first)
    assert await sandbox.is_alive(second)
    await sandbox.remove(CID)
    assert (NAMESPACE, POD) not in fake.pods and sandbox.read_record(CID) is None


async def test_a_foreign_pod_of_the_same_name_is_left_alone(
    fake: FakeKubernetes, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    other_root = tmp_path / "other" / "conversations"
    other_root.mkdir(parents=True)
    foreign = make_sandbox()
    foreign.conversations_root = other_root
    await start(foreign)
    with pytest.raises(SandboxStartError, match="belongs to another data directory"):
        await start(make_sandbox())
    assert fake.transitions[POD] == ["Pending", "Scheduled", "Running"]


async def test_a_dead_runtime_is_seen_and_its_exit_code_kept(
    fake: FakeKubernetes, make_sandbox: MakeSandbox
) -> None:
    sandbox = make_sandbox()
    handle = await start(sandbox)
    fake.kill_runtime(POD)
    assert await asyncio.wait_for(sandbox.wait_exit(handle), START) == -9
    assert fake.transitions[POD][-1] == "Failed"
    assert not await sandbox.is_alive(handle)
    await sandbox.kill(handle)
    assert (NAMESPACE, POD) not in fake.pods


async def test_a_restarted_server_adopts_its_pods_by_label(
    fake: FakeKubernetes, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sandbox = make_sandbox()
    handle = await start(sandbox)
    # A pod of another data directory in the same namespace: never touched.
    other_root = tmp_path / "other" / "conversations"
    other_root.mkdir(parents=True)
    other = make_sandbox()
    other.conversations_root = other_root
    await other.start("feed" * 8, {SESSION_KEY_ENV: KEY}, timeout=START)
    # A pod of ours whose runtime died: deleted. A stale record without a pod: removed.
    await sandbox.start("dead" * 8, {SESSION_KEY_ENV: KEY}, timeout=START)
    fake.kill_runtime("convo-runtime-" + "dead" * 8)
    await asyncio.wait_for(
        fake.wait_for(lambda: fake.transitions["convo-runtime-" + "dead" * 8][-1] == "Failed"),
        START,
    )
    stale = handle.model_copy(update={"conversation_id": "5ca1e" * 6 + "00"})
    sandbox.conversation_dir(stale.conversation_id).mkdir()
    sandbox.write_record(stale)
    (data_dir := sandbox.conversations_root).exists()

    restarted = make_sandbox()
    found = await restarted.find_existing()
    assert found == [handle.model_copy(update={"started_at": found[0].started_at})]
    [listing] = fake.requests_to("GET", "/pods")
    assert listing.query["labelSelector"] == manifests.label_selector(
        manifests.selector_labels(await restarted.settings())
    )
    assert fake.transitions["convo-runtime-" + "dead" * 8][-1] == "Deleted"
    assert fake.transitions["convo-runtime-" + "feed" * 8] == ["Pending", "Scheduled", "Running"]
    assert restarted.read_record(stale.conversation_id) is None
    assert restarted.read_record(CID) is not None and data_dir.is_dir()
    await restarted.kill(found[0])
    await other.kill(other.read_record("feed" * 8))
