"""Third-party CRDs and the controller-manager on the real control plane."""

from __future__ import annotations

import asyncio
import time

import pytest

from kube402.api import v1alpha1
from kube402.kube import resources
from kube402.kube.client import Kube

pytestmark = pytest.mark.integration


async def test_httproute_and_middleware_can_be_created(kube: Kube, namespace: str) -> None:
    mw = await kube.apply(
        resources.MIDDLEWARE,
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "Middleware",
            "metadata": {"name": "x402-demo", "namespace": namespace},
            "spec": {
                "forwardAuth": {
                    "address": "http://x402-verifier.x402.svc.cluster.local:8080/verify",
                    "authResponseHeaders": ["X-Payment-Status", "X-Payment-Tx", "Authorization"],
                }
            },
        },
    )
    assert mw["spec"]["forwardAuth"]["authResponseHeaders"][0] == "X-Payment-Status"
    route = await kube.apply(
        resources.HTTPROUTE,
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "so-demo", "namespace": namespace},
            "spec": {
                "parentRefs": [{"name": "traefik-gateway", "namespace": "traefik", "sectionName": "web"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/services/demo"}}],
                        "filters": [
                            {
                                "type": "ExtensionRef",
                                "extensionRef": {
                                    "group": "traefik.io",
                                    "kind": "Middleware",
                                    "name": "x402-demo",
                                },
                            },
                            {
                                "type": "URLRewrite",
                                "urlRewrite": {
                                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
                                },
                            },
                        ],
                        "backendRefs": [{"name": "ollama", "port": 11434}],
                        "timeouts": {"request": "420s"},
                    }
                ],
            },
        },
    )
    assert route["spec"]["rules"][0]["filters"][0]["type"] == "ExtensionRef"
    grant = await kube.apply(
        resources.REFERENCEGRANT,
        {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": "so-a.b-backend-grant", "namespace": namespace},
            "spec": {
                "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "a"}],
                "to": [{"group": "", "kind": "Service", "name": "ollama"}],
            },
        },
    )
    assert grant["metadata"]["name"] == "so-a.b-backend-grant"


async def test_owner_reference_garbage_collection(kube: Kube, namespace: str) -> None:
    parent = await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest("parent", namespace=namespace, upstream="ollama", pay_to="0x" + "11" * 20),
    )
    owner = {
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "name": "parent",
        "uid": parent["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    await kube.apply(
        resources.MIDDLEWARE,
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "Middleware",
            "metadata": {"name": "x402-parent", "namespace": namespace, "ownerReferences": [owner]},
            "spec": {"forwardAuth": {"address": "http://127.0.0.1:1/verify"}},
        },
    )
    assert await kube.get(resources.MIDDLEWARE, "x402-parent", namespace=namespace) is not None
    await kube.delete(resources.SERVICE_OFFER, "parent", namespace=namespace)
    deadline = time.monotonic() + 30
    while await kube.get(resources.MIDDLEWARE, "x402-parent", namespace=namespace) is not None:
        assert time.monotonic() < deadline, "garbage collector did not delete the owned Middleware"
        await asyncio.sleep(0.2)
