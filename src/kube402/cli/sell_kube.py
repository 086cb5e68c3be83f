"""The seller CLI's connection to one cluster, with every API failure turned into a sentence.

Which kubeconfig: ``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``, else the local stack's
(``.kube402/dev.env`` in the working directory, written by ``kube402 dev up``), else the in-cluster
service account. ``--context`` selects a context. All traffic goes through :class:`kube402.kube.client.Kube`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from lightkube.core.exceptions import ConfigError as KubeConfigError

from kube402.api import names
from kube402.cli.errors import CliError, api_sentence
from kube402.kube import errors as kube_errors
from kube402.kube import resources
from kube402.kube.client import Kube, load_config
from kube402.kube.resources import Resource

__all__ = ["DEFAULT_GATEWAY", "Cluster", "dev_env", "gateway_url", "resolve_kubeconfig"]

T = TypeVar("T")
FIELD_MANAGER = "kube402-sell"
DEV_ENV = Path(".kube402") / "dev.env"
SA_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def dev_env(directory: Path | None = None) -> dict[str, str]:
    """``KEY=value`` lines of the local stack's ``.kube402/dev.env`` (empty when there is none)."""
    path = (directory or Path.cwd()) / DEV_ENV
    try:
        text = path.read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


DEFAULT_GATEWAY = "http://obol.stack:8080"
GATEWAY_ENV = "KUBE402_GATEWAY_URL"


def gateway_url(flag: str | None) -> str:
    """Where buyers reach the offers: ``--host``, else $KUBE402_GATEWAY_URL, else the local stack's
    (``.kube402/dev.env``), else ``http://obol.stack:8080`` (SPEC 0)."""
    value = flag or os.environ.get(GATEWAY_ENV) or dev_env().get(GATEWAY_ENV) or DEFAULT_GATEWAY
    return (value if "://" in value else f"http://{value}").rstrip("/")


def resolve_kubeconfig(flag: str | None) -> tuple[str | None, str]:
    """(kubeconfig path or None for in-cluster, where it came from)."""
    if flag:
        return flag, "--kubeconfig"
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return env.split(os.pathsep)[0], "$KUBECONFIG"
    home = Path.home() / ".kube" / "config"
    if home.is_file():
        return str(home), "~/.kube/config"
    dev = dev_env().get("KUBECONFIG")
    if dev:
        return dev, str(DEV_ENV)
    if SA_TOKEN.is_file():
        return None, "in-cluster service account"
    raise CliError(
        "no kubeconfig: pass --kubeconfig FILE, set KUBECONFIG, "
        "or start the local stack with `kube402 dev up`"
    )


def _contexts(path: str | None) -> list[str]:
    if path is None:
        return []
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return []
    items = doc.get("contexts") if isinstance(doc, dict) else None
    return [str(c.get("name")) for c in items or [] if isinstance(c, dict)]


def _is_file(path: str) -> bool:
    return Path(path).is_file()


@dataclasses.dataclass
class Cluster:
    """One connection; use ``async with Cluster.open(...) as c``."""

    kube: Kube
    kubeconfig: str
    source: str
    context: str
    server: str
    default_namespace: str

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, *, kubeconfig: str | None, context: str | None, request_timeout: float = 10.0
    ) -> AsyncIterator[Cluster]:
        path, source = resolve_kubeconfig(kubeconfig)
        if path is not None and not _is_file(path):
            raise CliError(
                f"kubeconfig {path} (from {source}) does not exist: pass --kubeconfig FILE or set KUBECONFIG "
                "(for the local stack run `kube402 dev up` first)"
            )
        try:
            conf = load_config(path, context)
        except (kube_errors.ApiError, KubeConfigError) as err:
            if context and "not found" in str(err):
                known = ", ".join(_contexts(path)) or "none"
                raise CliError(
                    f"--context {context}: no such context in kubeconfig {path} (it has: {known})"
                ) from None
            raise CliError(f"kubeconfig {path or 'in-cluster'}: {err}") from None
        kube = Kube.connect(
            kubeconfig=path, context=context, field_manager=FIELD_MANAGER, timeout=request_timeout
        )
        ctx = str(getattr(conf, "context_name", "") or "")
        server = str(getattr(getattr(conf, "cluster", None), "server", "") or "")
        ns = str(getattr(conf, "namespace", "") or "default")
        try:
            yield cls(kube, path or "in-cluster", source, ctx, server, ns)
        finally:
            await kube.aclose()

    # -- error translation --------------------------------------------------------------------------------

    def _where(self) -> str:
        return (
            f"{self.server or 'the API server'} (kubeconfig {self.kubeconfig}, context {self.context or '-'})"
        )

    async def call(
        self, verb: str, res: Resource | str, aw: Awaitable[T], *, namespace: str | None = None
    ) -> T:
        """Await one API call; failures become a CliError naming the verb, the resource and the cluster."""
        what = res if isinstance(res, str) else f"{res.plural}.{res.group}" if res.group else res.plural
        scope = f" in namespace {namespace}" if namespace else ""
        try:
            return await aw
        except kube_errors.ApiError as err:
            if isinstance(err, kube_errors.Unavailable) and err.code == 0:
                raise CliError(
                    f"cannot reach the Kubernetes API server at {self._where()}: {err.message}. "
                    "Is the cluster running? (local stack: `kube402 dev up`)"
                ) from None
            if err.code == 403:
                raise CliError(
                    f"permission denied (RBAC): cannot {verb} {what}{scope}: {err.message}"
                ) from None
            if err.code == 401:
                raise CliError(
                    f"the API server at {self._where()} rejected this kubeconfig's credentials (401)"
                ) from None
            if err.code == 404 and (err.message or "").startswith("namespaces ") and namespace:
                raise CliError(
                    f"namespace {namespace} does not exist (create it: kubectl create namespace {namespace})"
                ) from None
            raise CliError(api_sentence(err, what=f"{verb} {what}{scope}")) from None

    # -- checks and helpers ---------------------------------------------------------------------------------

    async def require_crds(self) -> None:
        """Fail with how-to-install when the obol.org ServiceOffer API is not served."""
        try:
            doc = await self.call(
                "discover",
                f"API group {names.API_VERSION}",
                self.kube.raw("GET", "/apis/" + names.API_VERSION),
            )
        except CliError as err:
            if "not found" not in str(err):
                raise
            doc = None
        plurals = {r.get("name") for r in (doc or {}).get("resources") or [] if isinstance(r, Mapping)}
        if names.PLURAL_OFFER not in plurals:
            raise CliError(
                f"the ServiceOffer CRD (serviceoffers.{names.GROUP}) is not installed in the cluster at "
                f"{self.server or self.kubeconfig}: install it with `kubectl apply -f deploy/crds/` "
                "(or the whole stack: `kubectl apply -k deploy/`)"
            )

    async def get(self, res: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        return await self.call("get", res, self.kube.get(res, name, namespace=namespace), namespace=namespace)

    async def list(self, res: Resource, *, namespace: str | None = None) -> list[dict[str, Any]]:
        items, _ = await self.call("list", res, self.kube.list(res, namespace=namespace), namespace=namespace)
        return items

    async def offer(self, name: str, namespace: str) -> dict[str, Any]:
        obj = await self.get(resources.SERVICE_OFFER, name, namespace=namespace)
        if obj is None:
            raise CliError(
                f"ServiceOffer {namespace}/{name} not found (see `kube402 sell list`; "
                "use -n to pick the namespace)"
            )
        return obj
