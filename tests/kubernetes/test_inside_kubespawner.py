"""Defaults inside a KubeSpawner pod: namespace, claim, node, owner and NetworkPolicy peers
come from the server's own pod (read through the API, as in a z2jh deployment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kube_harness import NAMESPACE, MakeSandbox
from test_sandbox_contract import CID, KEY, POD

from jupyter_convo.manager.sandboxes.base import SandboxStartError
from jupyter_convo.runtime.auth import SESSION_KEY_ENV
from jupyter_convo.testing.fake_kubernetes import FakeKubernetes

SERVER_POD = "jupyter-ada"


def add_server_pod(fake: FakeKubernetes, home: Path) -> dict[str, object]:
    """A singleuser pod as KubeSpawner makes it: the user's claim at their home."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": SERVER_POD,
            "namespace": NAMESPACE,
            "uid": "server-pod-uid",
            "labels": {
                "app": "jupyterhub",
                "component": "singleuser-server",
                "hub.jupyter.org/username": "ada",
                "hub.jupyter.org/servername": "",
            },
        },
        "spec": {
            "nodeName": "node-7",
            "containers": [
                {
                    "name": "notebook",
                    "image": "quay.io/jupyter/base-notebook",
                    "volumeMounts": [
                        {"name": "volume-ada", "mountPath": str(home), "subPath": "homes/ada"},
                        {"name": "cache", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "volume-ada", "persistentVolumeClaim": {"claimName": "claim-ada"}},
                {"name": "cache", "emptyDir": {}},
            ],
        },
        "status": {"phase": "Running"},
    }
    fake.pods[(NAMESPACE, SERVER_POD)] = pod
    return pod


@pytest.fixture
def in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of a pod (the kubeconfig still points at the fake)."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("HOSTNAME", SERVER_POD)


async def test_the_server_pod_supplies_claim_node_owner_and_peers(
    fake: FakeKubernetes, make_sandbox: MakeSandbox, data_dir: Path, in_a_pod: None
) -> None:
    add_server_pod(fake, data_dir.parent)
    sandbox = make_sandbox(
        shared_volume_claim="", shared_volume_mount_path="", network_policy_ingress_from=[]
    )
    handle = await sandbox.start(CID, {SESSION_KEY_ENV: KEY}, timeout=60, owner="ada")

    assert fake.requests_to("GET", f"/pods/{SERVER_POD}")
    body = fake.requests_to("POST", "/pods")[0].body
    spec = body["spec"]
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": SERVER_POD, "uid": "server-pod-uid"}
    ]
    assert spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "claim-ada"}
    mount = spec["containers"][0]["volumeMounts"][0]
    assert (mount["mountPath"], mount["subPath"]) == (str(data_dir.parent), "homes/ada")
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ] == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}]
    [policy] = fake.network_policies.values()
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "server-pod-uid"
    assert policy["spec"]["ingress"][0]["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "hub.jupyter.org/username": "ada",
                    "hub.jupyter.org/servername": "",
                    "component": "singleuser-server",
                }
            }
        }
    ]
    assert sandbox.reaches(CID, data_dir.parent / "notebooks")
    assert not sandbox.reaches(CID, Path("/srv/elsewhere"))
    await sandbox.kill(handle)


async def test_without_a_shared_claim_the_start_says_what_to_set(
    fake: FakeKubernetes, make_sandbox: MakeSandbox, in_a_pod: None
) -> None:
    pod = add_server_pod(fake, Path("/home/someone-else"))
    assert pod["metadata"]
    sandbox = make_sandbox(shared_volume_claim="")
    with pytest.raises(SandboxStartError, match=r"set c\.KubernetesSandbox\.shared_volume_claim"):
        await sandbox.start(CID, {SESSION_KEY_ENV: KEY}, timeout=60)
    assert (NAMESPACE, POD) not in fake.pods
    assert not fake.requests_to("POST", "/pods")
