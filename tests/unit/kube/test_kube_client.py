"""Request building in ``kube.client.Kube`` over an httpx2 MockTransport (no API server).

Every write of desired state is server-side apply (PATCH, application/apply-patch+yaml) with the one field
manager and force; deletes treat NotFound as "already gone".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from kube402.kube import errors, resources
from kube402.kube.client import Kube

Handler = Callable[[httpx2.Request], httpx2.Response]


class Recorder:
    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[httpx2.Request] = []
        self.handler = handler or (lambda r: httpx2.Response(200, json={"ok": True}))

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def last(self) -> httpx2.Request:
        return self.requests[-1]

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def make_kube(rec: Recorder, **kw: Any) -> Kube:
    http = httpx2.AsyncClient(base_url="http://kube.test", transport=httpx2.MockTransport(rec))
    return Kube(http, **kw)


MW = {
    "apiVersion": "traefik.io/v1alpha1",
    "kind": "Middleware",
    "metadata": {"name": "x402-demo", "namespace": "shop"},
    "spec": {"forwardAuth": {"address": "http://v/verify"}},
}


class TestResourcePaths:
    @pytest.mark.parametrize(
        ("res", "kw", "path"),
        [
            (
                resources.SERVICE_OFFER,
                {"namespace": "shop", "name": "demo", "subresource": "status"},
                "/apis/obol.org/v1alpha1/namespaces/shop/serviceoffers/demo/status",
            ),
            (resources.SERVICE_OFFER, {}, "/apis/obol.org/v1alpha1/serviceoffers"),
            (resources.SERVICE, {"namespace": "shop", "name": "web"}, "/api/v1/namespaces/shop/services/web"),
            (resources.NAMESPACE, {"namespace": "ignored", "name": "shop"}, "/api/v1/namespaces/shop"),
            (
                resources.REFERENCEGRANT,
                {"namespace": "x402"},
                "/apis/gateway.networking.k8s.io/v1beta1/namespaces/x402/referencegrants",
            ),
        ],
    )
    def test_paths(self, res: resources.Resource, kw: dict[str, Any], path: str) -> None:
        assert res.path(**kw) == path

    def test_api_versions(self) -> None:
        assert resources.SERVICE.api_version == "v1"
        assert resources.HTTPROUTE.api_version == "gateway.networking.k8s.io/v1"
        assert resources.MIDDLEWARE.api_version == "traefik.io/v1alpha1"


class TestApply:
    async def test_apply_is_a_forced_server_side_apply_with_the_field_manager(self) -> None:
        rec = Recorder(lambda r: httpx2.Response(200, json={"applied": True}))
        kube = make_kube(rec)
        result = await kube.apply(resources.MIDDLEWARE, MW)
        req = rec.last
        assert req.method == "PATCH"
        assert req.url.path == "/apis/traefik.io/v1alpha1/namespaces/shop/middlewares/x402-demo"
        assert dict(req.url.params) == {"fieldManager": "serviceoffer-controller", "force": "true"}
        assert req.headers["content-type"] == "application/apply-patch+yaml"
        assert req.headers["accept"] == "application/json"
        assert rec.body() == MW
        assert result == {"applied": True}

    async def test_apply_without_force_and_as_dry_run(self) -> None:
        rec = Recorder()
        kube = make_kube(rec, field_manager="someone")
        await kube.apply(resources.MIDDLEWARE, MW, force=False, dry_run=True)
        assert dict(rec.last.url.params) == {"fieldManager": "someone", "force": "false", "dryRun": "All"}

    async def test_apply_of_a_cluster_scoped_object(self) -> None:
        rec = Recorder()
        await make_kube(rec).apply(
            resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
        )
        assert rec.last.url.path == "/api/v1/namespaces/shop"

    async def test_apply_status_sends_only_identity_and_status_to_the_subresource(self) -> None:
        rec = Recorder()
        status = {"observedGeneration": 2, "conditions": []}
        await make_kube(rec).apply_status(
            resources.SERVICE_OFFER, namespace="shop", name="demo", status=status
        )
        req = rec.last
        assert req.method == "PATCH"
        assert req.url.path == "/apis/obol.org/v1alpha1/namespaces/shop/serviceoffers/demo/status"
        assert req.headers["content-type"] == "application/apply-patch+yaml"
        assert dict(req.url.params) == {"fieldManager": "serviceoffer-controller", "force": "true"}
        assert rec.body() == {
            "apiVersion": "obol.org/v1alpha1",
            "kind": "ServiceOffer",
            "metadata": {"name": "demo", "namespace": "shop"},
            "status": status,
        }

    async def test_a_rejected_apply_raises_invalid_with_the_server_message(self) -> None:
        rec = Recorder(
            lambda r: httpx2.Response(
                422,
                json={
                    "kind": "Status",
                    "reason": "Invalid",
                    "message": "spec.path: Invalid value",
                    "code": 422,
                },
            )
        )
        with pytest.raises(errors.Invalid) as info:
            await make_kube(rec).apply(resources.MIDDLEWARE, MW)
        assert (info.value.code, info.value.reason, info.value.message) == (
            422,
            "Invalid",
            "spec.path: Invalid value",
        )


class TestOtherWrites:
    async def test_merge_patch(self) -> None:
        rec = Recorder()
        patch = {"metadata": {"finalizers": ["monetize.obol.org/finalizer"]}}
        await make_kube(rec).merge_patch(resources.SERVICE_OFFER, "demo", patch, namespace="shop")
        assert rec.last.method == "PATCH"
        assert rec.last.headers["content-type"] == "application/merge-patch+json"
        assert rec.last.url.path == "/apis/obol.org/v1alpha1/namespaces/shop/serviceoffers/demo"
        assert rec.body() == patch

    async def test_json_patch(self) -> None:
        rec = Recorder()
        ops = [{"op": "remove", "path": "/metadata/finalizers/0"}]
        await make_kube(rec).json_patch(resources.SERVICE_OFFER, "demo", ops, namespace="shop")
        assert rec.last.headers["content-type"] == "application/json-patch+json"
        assert rec.body() == ops

    async def test_create_posts_to_the_collection(self) -> None:
        rec = Recorder(lambda r: httpx2.Response(201, json={"created": True}))
        result = await make_kube(rec).create(resources.MIDDLEWARE, MW)
        assert rec.last.method == "POST"
        assert rec.last.url.path == "/apis/traefik.io/v1alpha1/namespaces/shop/middlewares"
        assert dict(rec.last.url.params) == {"fieldManager": "serviceoffer-controller"}
        assert result == {"created": True}

    async def test_replace_puts_the_object(self) -> None:
        rec = Recorder()
        await make_kube(rec).replace(resources.MIDDLEWARE, MW)
        assert rec.last.method == "PUT"
        assert rec.last.url.path == "/apis/traefik.io/v1alpha1/namespaces/shop/middlewares/x402-demo"


class TestDelete:
    async def test_delete_sends_background_propagation_and_reports_true(self) -> None:
        rec = Recorder()
        assert await make_kube(rec).delete(resources.HTTPROUTE, "so-demo", namespace="shop") is True
        req = rec.last
        assert req.method == "DELETE"
        assert req.url.path == "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/so-demo"
        assert rec.body() == {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}

    async def test_delete_of_something_already_gone_is_false_not_an_error(self) -> None:
        rec = Recorder(lambda r: httpx2.Response(404, json={"reason": "NotFound", "message": "gone"}))
        assert await make_kube(rec).delete(resources.HTTPROUTE, "so-demo", namespace="shop") is False

    async def test_delete_with_a_uid_precondition(self) -> None:
        rec = Recorder()
        await make_kube(rec).delete(
            resources.REFERENCEGRANT, "g", namespace="llm", uid="u-1", propagation="Foreground"
        )
        assert rec.body() == {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Foreground",
            "preconditions": {"uid": "u-1"},
        }

    async def test_other_delete_failures_raise(self) -> None:
        rec = Recorder(lambda r: httpx2.Response(409, json={"reason": "Conflict", "message": "uid mismatch"}))
        with pytest.raises(errors.Conflict):
            await make_kube(rec).delete(resources.HTTPROUTE, "so-demo", namespace="shop", uid="u")


class TestReads:
    async def test_get_returns_none_when_not_found(self) -> None:
        rec = Recorder(lambda r: httpx2.Response(404, json={"reason": "NotFound"}))
        assert await make_kube(rec).get(resources.SERVICE, "web", namespace="shop") is None
        assert rec.last.method == "GET" and rec.last.url.path == "/api/v1/namespaces/shop/services/web"

    async def test_get_returns_the_object(self) -> None:
        rec = Recorder(lambda r: httpx2.Response(200, json={"metadata": {"name": "web"}}))
        assert await make_kube(rec).get(resources.SERVICE, "web", namespace="shop") == {
            "metadata": {"name": "web"}
        }

    async def test_list_follows_continue_tokens_and_fills_in_kind(self) -> None:
        pages = {
            "": {
                "metadata": {"continue": "t1", "resourceVersion": "5"},
                "items": [{"metadata": {"name": "a"}}],
            },
            "t1": {"metadata": {"resourceVersion": "9"}, "items": [{"metadata": {"name": "b"}, "kind": "X"}]},
        }
        rec = Recorder(lambda r: httpx2.Response(200, json=pages[r.url.params.get("continue", "")]))
        items, rv = await make_kube(rec).list(
            resources.SERVICE_OFFER,
            namespace="shop",
            label_selector="a=b",
            field_selector="metadata.name=x",
            limit=1,
        )
        assert rv == "9"
        assert [i["metadata"]["name"] for i in items] == ["a", "b"]
        assert items[0]["apiVersion"] == "obol.org/v1alpha1" and items[0]["kind"] == "ServiceOffer"
        assert items[1]["kind"] == "X"  # what the server said wins
        assert [dict(r.url.params) for r in rec.requests] == [
            {"limit": "1", "labelSelector": "a=b", "fieldSelector": "metadata.name=x"},
            {"limit": "1", "labelSelector": "a=b", "fieldSelector": "metadata.name=x", "continue": "t1"},
        ]
        assert rec.requests[0].url.path == "/apis/obol.org/v1alpha1/namespaces/shop/serviceoffers"


class TestFailures:
    async def test_a_transport_error_becomes_unavailable(self) -> None:
        def fail(request: httpx2.Request) -> httpx2.Response:
            raise httpx2.ConnectError("connection refused", request=request)

        with pytest.raises(errors.Unavailable) as info:
            await make_kube(Recorder(fail)).get(resources.SERVICE, "web", namespace="shop")
        assert info.value.code == 0 and info.value.reason == "Transport"
        assert "connection refused" in info.value.message
        assert isinstance(info.value.__cause__, httpx2.ConnectError)

    async def test_a_non_json_error_body_becomes_the_message(self) -> None:
        rec = Recorder(lambda r: httpx2.Response(503, text="upstream connect error"))
        with pytest.raises(errors.Unavailable) as info:
            await make_kube(rec).get(resources.SERVICE, "web", namespace="shop")
        assert info.value.message == "upstream connect error"


def lines(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


class TestWatch:
    async def collect(self, rec: Recorder) -> list[tuple[str, dict[str, Any]]]:
        kube = make_kube(rec)
        return [
            e
            async for e in kube.watch(
                resources.SERVICE_OFFER,
                resource_version="7",
                namespace="shop",
                label_selector="l=v",
                timeout_seconds=60,
            )
        ]

    async def test_watch_parameters_and_events(self) -> None:
        body = (
            lines(
                {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "8"}}},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
            )
            + b"\n"
        )
        rec = Recorder(lambda r: httpx2.Response(200, content=body))
        events = await self.collect(rec)
        assert dict(rec.last.url.params) == {
            "watch": "true",
            "resourceVersion": "7",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "60",
            "labelSelector": "l=v",
        }
        assert events == [
            (
                "ADDED",
                {
                    "metadata": {"name": "a", "resourceVersion": "8"},
                    "apiVersion": "obol.org/v1alpha1",
                    "kind": "ServiceOffer",
                },
            ),
            ("BOOKMARK", {"metadata": {"resourceVersion": "9"}}),
        ]

    async def test_an_error_event_410_is_gone(self) -> None:
        body = lines(
            {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "code": 410,
                    "reason": "Expired",
                    "message": "too old resource version",
                },
            }
        )
        with pytest.raises(errors.Gone) as info:
            await self.collect(Recorder(lambda r: httpx2.Response(200, content=body)))
        assert info.value.message == "too old resource version"

    async def test_an_http_410_is_gone(self) -> None:
        rec = Recorder(lambda r: httpx2.Response(410, json={"reason": "Expired", "message": "too old"}))
        with pytest.raises(errors.Gone):
            await self.collect(rec)

    async def test_a_transport_error_mid_stream_is_unavailable(self) -> None:
        async def stream() -> Any:
            yield lines({"type": "ADDED", "object": {"metadata": {"name": "a"}}})
            raise httpx2.ReadError("connection reset")

        rec = Recorder(lambda r: httpx2.Response(200, content=stream()))
        kube = make_kube(rec)
        seen: list[str] = []
        with pytest.raises(errors.Unavailable):
            async for etype, _ in kube.watch(resources.SERVICE_OFFER, resource_version="1"):
                seen.append(etype)
        assert seen == ["ADDED"]
