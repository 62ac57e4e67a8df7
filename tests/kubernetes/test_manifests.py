"""The runtime pod and NetworkPolicy manifests: every field that matters, and validity
against the Kubernetes OpenAPI schema of the installed client's Kubernetes version."""

from __future__ import annotations

from typing import Any

import kubernetes_asyncio
import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from jupyter_convo.manager.sandboxes.kubernetes import manifests

CID = "0123456789abcdef0123456789abcdef"


def settings(**overrides: Any) -> manifests.PodSettings:
    values: dict[str, Any] = {
        "namespace": "jhub",
        "image": "registry.example/convo-runtime:1",
        "conversations_root": "/home/jovyan/.local/share/jupyter/convo/conversations",
        "server_instance_id": "f" * 32,
        "runtime_port": 8000,
        "volume": manifests.SharedVolume("claim-ada", "/home/jovyan"),
        "run_as_user": 1000,
        "run_as_group": 100,
        "fs_group": 100,
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "2Gi"},
        "node_selector": {"pool": "agents"},
        "tolerations": ({"key": "agents", "operator": "Exists", "effect": "NoSchedule"},),
        "image_pull_secrets": ("regcred",),
        "owner_references": (
            {"apiVersion": "v1", "kind": "Pod", "name": "jupyter-ada", "uid": "u-1"},
        ),
    }
    values.update(overrides)
    return manifests.PodSettings(**values)


def pod(**overrides: Any) -> dict[str, Any]:
    return manifests.pod_manifest(
        settings(**overrides),
        CID,
        env={"JUPYTER_CONVO_SESSION_API_KEY": "k"},
        owner="ada@example.org",
        args=["--port", "8000"],
    )


def schema_version() -> str:
    """The Kubernetes minor version the installed kubernetes_asyncio was generated for:
    client 36.x speaks Kubernetes 1.36."""
    major = kubernetes_asyncio.__version__.split(".")[0]
    return f"1.{major}.0"


def test_the_schema_version_is_one_kubernetes_validate_ships() -> None:
    assert schema_version() in all_versions(), (
        f"kubernetes-validate has no schema for {schema_version()}: upgrade it"
    )


@pytest.mark.parametrize("read_only", [True, False])
def test_the_pod_is_valid_against_the_openapi_schema(read_only: bool) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
                ]
            }
        }
    }
    manifest = pod(read_only_root_filesystem=read_only, affinity=affinity)
    # strict: no field the schema does not know
    used = kubernetes_validate.validate(manifest, schema_version(), strict=True)
    assert used == schema_version().removesuffix(".0")  # no fallback to another version


def test_an_invalid_pod_is_rejected_by_the_schema_check() -> None:
    """The check can fail: a misspelt field is caught."""
    manifest = pod()
    manifest["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, schema_version(), strict=True)


def test_the_network_policy_is_valid_against_the_openapi_schema() -> None:
    policy = manifests.network_policy_manifest(
        settings(), [{"podSelector": {"matchLabels": {"hub.jupyter.org/username": "ada"}}}]
    )
    kubernetes_validate.validate(policy, schema_version(), strict=True)
    assert policy["spec"]["podSelector"]["matchLabels"] == manifests.selector_labels(settings())
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"hub.jupyter.org/username": "ada"}}}]
    assert policy["metadata"]["ownerReferences"][0]["name"] == "jupyter-ada"


def test_the_pod_runs_unprivileged_without_an_api_token() -> None:
    manifest = pod()
    spec = manifest["spec"]
    [container] = spec["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec  # the namespace default, with no token mounted
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 100,
        "fsGroup": 100,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 100,
    }
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/home/jovyan"]["name"] == manifests.SHARED_VOLUME
    assert {"/home/convo", "/tmp"} <= set(mounts)  # writable scratch on a read-only root
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes[manifests.SHARED_VOLUME] == {
        "name": manifests.SHARED_VOLUME,
        "persistentVolumeClaim": {"claimName": "claim-ada"},
    }
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "2Gi"},
    }
    assert spec["nodeSelector"] == {"pool": "agents"}
    assert spec["tolerations"][0]["key"] == "agents"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]


def test_labels_fit_the_api_and_long_values_go_to_annotations() -> None:
    manifest = pod()
    labels = manifest["metadata"]["labels"]
    assert manifest["metadata"]["name"] == f"convo-runtime-{CID}"
    assert labels[manifests.LABEL_CONVERSATION] == CID
    # "ada@example.org" is no valid label value: a hash, the name in the annotation
    assert labels[manifests.LABEL_OWNER].startswith("h-")
    assert manifest["metadata"]["annotations"][manifests.ANNOTATION_OWNER] == "ada@example.org"
    assert manifest["metadata"]["annotations"][manifests.ANNOTATION_ROOT] == (
        settings().conversations_root
    )
    assert all(len(value) <= 63 for value in labels.values())
    assert manifests.label_value("ada") == "ada"
    assert manifests.label_value("") == ""
    assert manifests.label_value("x" * 64).startswith("h-")


def test_the_session_key_is_only_in_the_environment() -> None:
    manifest = pod()
    text = repr({k: v for k, v in manifest.items() if k != "spec"}) + repr(
        manifest["spec"]["containers"][0]["args"]
    )
    assert "JUPYTER_CONVO_SESSION_API_KEY" not in text
    env = manifest["spec"]["containers"][0]["env"]
    assert {"name": "JUPYTER_CONVO_SESSION_API_KEY", "value": "k"} in env
