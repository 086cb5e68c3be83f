"""The one place that talks to kube-apiserver.

lightkube builds the authenticated connection (kubeconfig, contexts, client certificates, exec plugins,
in-cluster service-account tokens). kube402 then speaks the REST API in raw JSON: ServiceOffers and the
rendered children are plain dicts, and the informer needs exact control over resourceVersion, watch
bookmarks and 410 Gone. Every write of desired state is server-side apply with one field manager.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import orjson
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import KubeConfig

from kube402.api import names
from kube402.kube import errors
from kube402.kube.resources import Resource

__all__ = ["Kube", "WatchEvent", "load_config"]

WatchEvent = tuple[str, dict[str, Any]]
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"


def load_config(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """Kubeconfig file (explicit, $KUBECONFIG, ~/.kube/config) or the in-cluster service account."""
    conf = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    single = conf.get(context_name=context)
    if single is None:
        raise errors.Invalid(0, "ConfigError", f"context {context!r} not found in kubeconfig")
    return single


class Kube:
    """Async REST access to one cluster. Create with :meth:`connect`; close with :meth:`aclose`."""

    def __init__(self, http: httpx2.AsyncClient, *, field_manager: str = names.FIELD_MANAGER) -> None:
        self._http = http
        self.field_manager = field_manager

    @classmethod
    def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        field_manager: str = names.FIELD_MANAGER,
        timeout: float = 10.0,
    ) -> Kube:
        config = load_config(kubeconfig or os.environ.get("KUBECONFIG") or None, context)
        params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(timeout), trust_env=False)
        http = client_adapter.AsyncClient(config, params)
        return cls(http, field_manager=field_manager)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing ---------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = content_type
        try:
            resp = await self._http.request(method, path, params=params, content=content, headers=headers)
        except httpx2.HTTPError as err:
            raise errors.Unavailable(0, "Transport", str(err) or type(err).__name__) from err
        data: Any = None
        if resp.content:
            try:
                data = orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                data = resp.text
        if resp.status_code >= 400:
            raise errors.from_status(resp.status_code, data)
        return data

    # -- reads ------------------------------------------------------------------------------------------

    async def version(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._request("GET", "/version")
        return data

    async def get(self, res: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            data: dict[str, Any] = await self._request("GET", res.path(namespace=namespace, name=name))
        except errors.NotFound:
            return None
        return data

    async def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 500,
    ) -> tuple[list[dict[str, Any]], str]:
        """All matching objects (paged) and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            params = {"limit": str(limit)}
            if label_selector:
                params["labelSelector"] = label_selector
            if field_selector:
                params["fieldSelector"] = field_selector
            if cont:
                params["continue"] = cont
            data = await self._request("GET", res.path(namespace=namespace), params=params)
            kind = res.kind
            for item in data.get("items") or []:
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", kind)
                items.append(item)
            meta = data.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                return items, str(meta.get("resourceVersion", ""))

    async def watch(
        self,
        res: Resource,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[WatchEvent]:
        """Stream watch events from ``resource_version``; raises errors.Gone when it is too old.

        BOOKMARK events are yielded too (their object carries only the new resourceVersion).
        The stream ends normally when the server closes it (timeout_seconds).
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        timeout = httpx2.Timeout(10.0, read=timeout_seconds + 30.0)
        try:
            async with self._http.stream(
                "GET", res.path(namespace=namespace), params=params, timeout=timeout
            ) as resp:
                if resp.status_code >= 400:
                    body = await resp.aread()
                    try:
                        parsed = orjson.loads(body)
                    except orjson.JSONDecodeError:
                        parsed = body.decode(errors="replace")
                    raise errors.from_status(resp.status_code, parsed)
                async for line in resp.aiter_lines():
                    if not line:
                        continue
                    event = orjson.loads(line)
                    etype = event.get("type", "")
                    obj = event.get("object") or {}
                    if etype == "ERROR":
                        raise errors.from_status(int(obj.get("code", 500)), obj)
                    if etype != "BOOKMARK":
                        obj.setdefault("apiVersion", res.api_version)
                        obj.setdefault("kind", res.kind)
                    yield etype, obj
        except httpx2.HTTPError as err:
            raise errors.Unavailable(0, "Transport", str(err) or type(err).__name__) from err

    # -- writes -----------------------------------------------------------------------------------------

    async def apply(
        self,
        res: Resource,
        obj: Mapping[str, Any],
        *,
        subresource: str = "",
        force: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply ``obj`` (full intent) with this client's field manager."""
        meta = obj.get("metadata") or {}
        params = {"fieldManager": self.field_manager, "force": "true" if force else "false"}
        if dry_run:
            params["dryRun"] = "All"
        path = res.path(namespace=meta.get("namespace"), name=meta["name"], subresource=subresource)
        data: dict[str, Any] = await self._request(
            "PATCH", path, params=params, body=obj, content_type=_APPLY
        )
        return data

    async def apply_status(
        self, res: Resource, *, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Apply only ``status`` through the status subresource."""
        obj = {
            "apiVersion": res.api_version,
            "kind": res.kind,
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
            "status": dict(status),
        }
        return await self.apply(res, obj, subresource="status")

    async def create(self, res: Resource, obj: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        params = {"fieldManager": self.field_manager}
        if dry_run:
            params["dryRun"] = "All"
        data: dict[str, Any] = await self._request(
            "POST", res.path(namespace=meta.get("namespace")), params=params, body=obj
        )
        return data

    async def replace(self, res: Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        data: dict[str, Any] = await self._request(
            "PUT", res.path(namespace=meta.get("namespace"), name=meta["name"]), body=obj
        )
        return data

    async def merge_patch(
        self,
        res: Resource,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str = "",
    ) -> dict[str, Any]:
        data: dict[str, Any] = await self._request(
            "PATCH",
            res.path(namespace=namespace, name=name, subresource=subresource),
            body=patch,
            content_type=_MERGE,
        )
        return data

    async def json_patch(
        self, res: Resource, name: str, ops: builtins.list[dict[str, Any]], *, namespace: str | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = await self._request(
            "PATCH", res.path(namespace=namespace, name=name), body=ops, content_type=_JSON_PATCH
        )
        return data

    async def delete(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> bool:
        """Delete; False when it was already gone (NotFound is not an error)."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self._request("DELETE", res.path(namespace=namespace, name=name), body=body)
        except errors.NotFound:
            return False
        return True

    async def raw(self, method: str, path: str, **kw: Any) -> Any:
        """Escape hatch for endpoints without a Resource (``/readyz``, discovery)."""
        return await self._request(method, path, **kw)
