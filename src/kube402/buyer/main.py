"""Wiring: config source (a directory or the cluster's ConfigMaps) → proxy; state file → ledger; granian.

:class:`Buyer` is usable in-process (``await start()`` / ``await stop()``) and is what ``kube402 buyer``
runs. The state file is read once at start (a corrupt one refuses the start: guessing which vouchers are
spent could pay twice); every change of the consumed set is written through :class:`Persister`, which
group-commits concurrent holds into one atomic write.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
from pathlib import Path
from typing import Any

from kube402.buyer import config as config_mod
from kube402.buyer import statefile
from kube402.buyer.app import MAX_BODY_BYTES, BuyerApp
from kube402.buyer.ledger import Ledger, load_consumed
from kube402.buyer.metrics import Metrics
from kube402.buyer.proxy import BuyerProxy

__all__ = ["Buyer", "Options", "Persister", "run"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    state_file: str = "/state/consumed.json"
    listen: str = "127.0.0.1:8402"
    config_dir: str | None = None
    kubeconfig: str | None = None
    namespace: str | None = None
    poll_seconds: float = 1.0
    upstream_timeout: float = 300.0
    max_body_bytes: int = MAX_BODY_BYTES


class Persister:
    """Write the ledger's consumed set durably; concurrent callers share one write (group commit)."""

    def __init__(self, ledger: Ledger, path: Path) -> None:
        self.ledger = ledger
        self.path = path
        self.written = ledger.version
        self.writes = 0
        self._lock = asyncio.Lock()

    async def __call__(self, version: int) -> None:
        async with self._lock:
            if self.written >= version:
                return  # an earlier write already carried this change
            current = self.ledger.version
            data = self.ledger.snapshot_bytes()
            await asyncio.to_thread(statefile.write_atomic, self.path, data)
            self.written = current
            self.writes += 1


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit():
        raise ValueError(f"--listen {listen!r} is not HOST:PORT")
    p = int(port)
    if p == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1" if host == "0.0.0.0" else host, 0))
            p = int(s.getsockname()[1])
    return host, p


def _find(directory: Path, name: str) -> Path | None:
    direct = directory / name
    if direct.is_file():
        return direct
    for sub in sorted(directory.iterdir()) if directory.is_dir() else ():
        if sub.is_dir() and not sub.name.startswith(".") and (sub / name).is_file():
            return sub / name
    return None


class Buyer:
    def __init__(self, options: Options) -> None:
        self.options = options
        path = Path(options.state_file)
        raw = statefile.read(path)
        self.ledger = Ledger(load_consumed(raw) if raw is not None else None)
        self.persister = Persister(self.ledger, path)
        self.proxy = BuyerProxy(
            ledger=self.ledger,
            persist=self.persister,
            metrics=Metrics(lambda: self.proxy.pool_stats()),
            upstream_timeout=options.upstream_timeout,
        )
        self.port = 0
        self.host = ""
        self.reloads = 0
        self._last: tuple[str, str] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: Any = None
        self._serve_task: asyncio.Task[Any] | None = None
        self._kube: Any = None
        self._cms: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '') else self.host}:{self.port}"

    # -- config --------------------------------------------------------------------------------------

    def apply_text(self, config_text: str, auths_text: str, *, origin: str) -> bool:
        if self._last == (config_text, auths_text):
            return True
        try:
            cfg = config_mod.parse(config_text, auths_text)
        except config_mod.ConfigError as err:
            log.error("buyer config from %s rejected (previous kept): %s", origin, err)
            return False
        for w in cfg.warnings:
            log.warning("buyer config from %s: %s", origin, w)
        self.proxy.apply(cfg)
        self._last = (config_text, auths_text)
        self.reloads += 1
        log.info(
            "buyer config from %s applied",
            origin,
            extra={
                "fields": {
                    "upstreams": sorted(cfg.upstreams),
                    "vouchers": {k: len(v) for k, v in cfg.vouchers.items()},
                }
            },
        )
        return True

    def _read_dir(self) -> tuple[str, str] | None:
        assert self.options.config_dir is not None
        d = Path(self.options.config_dir)
        cfg = _find(d, config_mod.CONFIG_KEY)
        auths = _find(d, config_mod.AUTHS_KEY)
        try:
            return (cfg.read_text() if cfg else "", auths.read_text() if auths else "")
        except OSError as err:
            log.warning("cannot read %s: %s", d, err)
            return None

    async def _watch_dir(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_seconds)
            texts = await asyncio.to_thread(self._read_dir)
            if texts is not None:
                self.apply_text(*texts, origin=str(self.options.config_dir))

    def _on_configmap(self, event: Any) -> None:
        from kube402.kube.informer import EventType

        name = event.key[1]
        if name not in (config_mod.CONFIG_CONFIGMAP, config_mod.AUTHS_CONFIGMAP):
            return
        key = config_mod.CONFIG_KEY if name == config_mod.CONFIG_CONFIGMAP else config_mod.AUTHS_KEY
        data = {} if event.type is EventType.DELETED else (event.obj.get("data") or {})
        self._cms[key] = str(data.get(key, ""))
        self.apply_text(
            self._cms.get(config_mod.CONFIG_KEY, ""),
            self._cms.get(config_mod.AUTHS_KEY, ""),
            origin=f"ConfigMaps in {self.options.namespace}",
        )

    async def _start_kube(self) -> None:
        from kube402.kube import resources
        from kube402.kube.client import Kube
        from kube402.kube.informer import Informer

        self._kube = Kube.connect(kubeconfig=self.options.kubeconfig)
        inf = Informer(self._kube, resources.CONFIGMAP, namespace=self.options.namespace)
        inf.add_handler(self._on_configmap)
        self._tasks.append(asyncio.get_running_loop().create_task(inf.run()))
        try:
            await asyncio.wait_for(inf.synced.wait(), 30)
        except TimeoutError:
            log.error(
                "ConfigMaps in %s not listed within 30 s; serving without config", self.options.namespace
            )

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> str:
        o = self.options
        path = Path(o.state_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        statefile.remove_stale_temps(path)
        if o.config_dir is not None:
            texts = self._read_dir()
            if texts is not None:
                self.apply_text(*texts, origin=o.config_dir)
            self._tasks.append(asyncio.get_running_loop().create_task(self._watch_dir()))
        elif o.kubeconfig is not None or o.namespace is not None:
            await self._start_kube()
        await self._serve()
        log.info("buyer listening", extra={"fields": {"url": self.url, "state_file": o.state_file}})
        return self.url

    async def _serve(self) -> None:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        host, port = _split(self.options.listen)
        app = BuyerApp(self.proxy, max_body_bytes=self.options.max_body_bytes)
        server = Server(
            app, address=host, port=port, interface=Interfaces.RSGI, log_enabled=False, backlog=1024
        )
        task = asyncio.get_running_loop().create_task(server.serve())
        probe = "127.0.0.1" if host == "0.0.0.0" else host
        for _ in range(500):
            if task.done():
                task.result()
                raise OSError(f"could not listen on {host}:{port}")
            try:
                _, writer = await asyncio.open_connection(probe, port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            break
        else:
            raise OSError(f"could not listen on {host}:{port}")
        self._server, self._serve_task, self.host, self.port = server, task, host, port

    async def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.stop()
            if self._serve_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._serve_task, 5)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.proxy.aclose()
        if self._kube is not None:
            await self._kube.aclose()


async def run(options: Options) -> int:
    """Serve until SIGTERM or SIGINT (the CLI's entry point)."""
    buyer = Buyer(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await buyer.start()
        await stop.wait()
    finally:
        await buyer.stop()
    return 0
