"""The CRDs on a real kube-apiserver: server-side defaults, server-side rejection, printer columns."""

from __future__ import annotations

import copy
import subprocess
from typing import Any

import pytest

from kube402.api import v1alpha1
from kube402.devenv import paths
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.kube import errors, resources
from kube402.kube.client import Kube

pytestmark = pytest.mark.integration

WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def offer(name: str, namespace: str, **kw: Any) -> dict[str, Any]:
    return v1alpha1.offer_manifest(name, namespace=namespace, upstream="ollama", pay_to=WALLET, **kw)


async def test_server_applies_defaults(kube: Kube, namespace: str) -> None:
    created = await kube.create(resources.SERVICE_OFFER, offer("defaults", namespace))
    spec = created["spec"]
    assert spec["type"] == "http"
    assert spec["upstream"]["port"] == 11434
    assert spec["upstream"]["healthPath"] == "/health"
    assert spec["payment"]["scheme"] == "exact"
    assert spec["payment"]["maxTimeoutSeconds"] == 300
    assert spec["registration"] == {"enabled": False}
    assert "gateMode" not in spec, "gateMode has no CRD default: offers keep the original's shape"


def _mutate(path: str, value: Any) -> Any:
    def apply(obj: dict[str, Any]) -> None:
        keys = path.split(".")
        target = obj
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return apply


_DELETE = object()

INVALID = [
    pytest.param("spec.payment.payTo", "0x1234", "spec.payment.payTo", id="payTo-short"),
    pytest.param(
        "spec.payment.payTo",
        "70997970C51812dc3A010C7d01b50e0d17dc79C8aa",
        "spec.payment.payTo",
        id="payTo-no-0x",
    ),
    pytest.param("spec.path", "services/x", "spec.path", id="path-no-leading-slash"),
    pytest.param("spec.path", "/services/x?y", "spec.path", id="path-bad-char"),
    pytest.param("spec.path", "/", "path must not be /", id="path-root"),
    pytest.param("spec.path", "/a//b", "path must not contain //", id="path-double-slash"),
    pytest.param("spec.path", "/a/../b", "path must not contain . or .. segments", id="path-dotdot"),
    pytest.param("spec.path", "/.well-known/x", "path must not be under /.well-known/", id="path-well-known"),
    pytest.param("spec.path", "/skill.md", "path is reserved", id="path-skill-md"),
    pytest.param("spec.upstream.port", 0, "spec.upstream.port", id="port-0"),
    pytest.param("spec.upstream.port", 70000, "spec.upstream.port", id="port-70000"),
    pytest.param("spec.payment.scheme", "upto", 'supported values: "exact"', id="scheme-unknown"),
    pytest.param(
        "spec.type", "batch", 'supported values: "inference", "fine-tuning", "http"', id="type-unknown"
    ),
    pytest.param("spec.upstream", _DELETE, "spec.upstream: Required value", id="missing-upstream"),
    pytest.param("spec.payment", _DELETE, "spec.payment: Required value", id="missing-payment"),
    pytest.param("spec.payment.price", {}, "spec.payment.price", id="price-empty"),
    pytest.param(
        "spec.payment.price", {"perRequest": "-1"}, "spec.payment.price.perRequest", id="price-negative"
    ),
    pytest.param(
        "spec.payment.price", {"perRequest": "1e-3"}, "spec.payment.price.perRequest", id="price-exp"
    ),
    pytest.param(
        "spec.payment.maxTimeoutSeconds", 5, "spec.payment.maxTimeoutSeconds", id="timeout-too-small"
    ),
    pytest.param(
        "spec.upstream.healthPath", "/../admin", "healthPath must not contain '..'", id="health-dotdot"
    ),
    pytest.param("spec.upstream.service", "Ollama_1", "spec.upstream.service", id="service-not-dns"),
    pytest.param("spec.payment.network", "Base Sepolia", "spec.payment.network", id="network-pattern"),
    pytest.param("spec.model", {"name": "qwen"}, "spec.model.runtime: Required value", id="model-no-runtime"),
    pytest.param(
        "spec.gateMode", "sidecar", 'supported values: "forwardAuth", "proxy"', id="gatemode-unknown"
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID)
async def test_server_rejects_invalid_offer(
    kube: Kube, namespace: str, path: str, value: Any, message: str
) -> None:
    obj = copy.deepcopy(offer("bad", namespace))
    _mutate(path, value)(obj)
    with pytest.raises(errors.Invalid) as err:
        await kube.create(resources.SERVICE_OFFER, obj)
    assert err.value.code == 422
    assert message in err.value.message, err.value.message


def kubectl(info: ControlPlaneInfo, *args: str) -> str:
    binary = paths.controlplane_bin() / "kubectl"
    out = subprocess.run(
        [str(binary), "--kubeconfig", str(info.kubeconfig), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout


async def test_printer_columns_in_kubectl_wide(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo
) -> None:
    await kube.create(
        resources.SERVICE_OFFER,
        offer("flow-qwen", namespace, type="inference", model={"name": "qwen3:0.6b", "runtime": "ollama"}),
    )
    await kube.apply_status(
        resources.SERVICE_OFFER,
        namespace=namespace,
        name="flow-qwen",
        status={
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Reconciled",
                    "message": "ok",
                    "lastTransitionTime": "2026-11-29T00:00:00Z",
                }
            ]
        },
    )
    out = kubectl(control_plane, "get", "so", "-n", namespace, "-o", "wide")
    header, row = out.strip().splitlines()
    assert header.split() == ["NAME", "TYPE", "MODEL", "PRICE", "NETWORK", "READY", "AGE"]
    assert row.split()[:6] == ["flow-qwen", "inference", "qwen3:0.6b", "0.001", "base-sepolia", "True"]


async def test_kubectl_explain_describes_fields(control_plane: ControlPlaneInfo) -> None:
    out = kubectl(control_plane, "explain", "serviceoffer.spec.payment.payTo")
    assert "Seller wallet that receives the USDC" in out
    out = kubectl(control_plane, "explain", "rr.spec.desiredState")
    assert "Tombstoned" in out


async def test_registration_request_short_name_and_columns(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo
) -> None:
    await kube.create(
        resources.REGISTRATION_REQUEST,
        {
            "apiVersion": "obol.org/v1alpha1",
            "kind": "RegistrationRequest",
            "metadata": {"name": "so-demo-registration", "namespace": namespace},
            "spec": {
                "serviceOfferName": "demo",
                "serviceOfferNamespace": namespace,
                "desiredState": "Active",
            },
        },
    )
    out = kubectl(control_plane, "get", "rr", "-n", namespace)
    assert out.split()[:5] == ["NAME", "OFFER", "STATE", "PHASE", "AGENTID"]
    with pytest.raises(errors.Invalid):
        await kube.create(
            resources.REGISTRATION_REQUEST,
            {
                "apiVersion": "obol.org/v1alpha1",
                "kind": "RegistrationRequest",
                "metadata": {"name": "bad", "namespace": namespace},
                "spec": {
                    "serviceOfferName": "demo",
                    "serviceOfferNamespace": namespace,
                    "desiredState": "Gone",
                },
            },
        )
