"""Wiring: settings + relayer key → service → RSGI app → embedded granian server on the event loop.

:class:`Facilitator` is the in-process handle used by ``kube402 facilitator`` and by tests and demos::

    async with Facilitator(settings, account=key) as fac:  # or url = await fac.start() … await fac.stop()
        client = FacilitatorClient(fac.url)

``listen`` with port ``0`` picks a free loopback port (retried if another process takes it first). The
RPC nodes are checked in the background after start; until a node answers with its chain id, requests for
that network get ``503``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from types import TracebackType
from typing import Any, Final, Self

from eth_account.signers.local import LocalAccount

from kube402.chain.facilitator import app as app_mod
from kube402.chain.facilitator import config, metrics, network, service

__all__ = ["Facilitator", "run"]

log = logging.getLogger(__name__)
_START_TIMEOUT: Final = 10.0
_PORT_ATTEMPTS: Final = 3


class Facilitator:
    """``kube402 facilitator`` in this process: start, serve, stop."""

    def __init__(self, settings: config.Settings, *, account: LocalAccount) -> None:
        self.settings = settings
        self.metrics = metrics.Metrics()
        self.service = service.Service(settings, account=account, metrics=self.metrics)
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._check: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    def __repr__(self) -> str:
        return f"Facilitator({self.url if self.port else 'stopped'}, relayer {self.service.relayer_address})"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def relayer_address(self) -> str:
        return self.service.relayer_address

    async def start(self) -> str:
        """Serve on ``settings.listen``; returns the base URL once the port accepts connections."""
        if self._task is not None:
            raise RuntimeError("facilitator already started")
        host, port = config.listen_address(self.settings.listen)
        for attempt in range(1 if port else _PORT_ATTEMPTS):
            chosen = port or _free_port(host)
            if await self._serve(host, chosen):
                self.host, self.port = host, chosen
                break
            if port or attempt == _PORT_ATTEMPTS - 1:
                raise OSError(f"could not listen on {host}:{chosen}")
        self._check = asyncio.get_running_loop().create_task(self._check_networks())
        log.info(
            "facilitator listening",
            extra={
                "fields": {
                    "url": self.url,
                    "relayer": self.relayer_address,
                    "networks": [n.caip2 for n in self.settings.networks],
                }
            },
        )
        return self.url

    async def stop(self) -> None:
        """Stop accepting requests, let running settles finish (bounded), release the worker threads."""
        if self._check is not None:
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._check
            self._check = None
        server, task, self._server, self._task = self._server, self._task, None, None
        if server is not None and task is not None:
            with contextlib.suppress(Exception):
                server.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        await self.service.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _serve(self, host: str, port: int) -> bool:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        app = app_mod.FacilitatorApp(self.service, max_body_bytes=self.settings.max_body_bytes)
        server = Server(
            app, address=host, port=port, interface=Interfaces.RSGI, log_enabled=False, backlog=1024
        )
        task = asyncio.get_running_loop().create_task(server.serve())
        probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_TIMEOUT
        while loop.time() < deadline:
            if task.done():
                with contextlib.suppress(BaseException):
                    task.result()
                return False
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(probe_host, port)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                self._server, self._task = server, task
                return True
            await asyncio.sleep(0.01)
        server.stop()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        return False

    async def _check_networks(self) -> None:
        for net in self.service.networks:
            try:
                await net.ensure_ready()
            except network.Unavailable as err:
                log.warning("%s not ready yet: %s (requests answer 503 until it is)", net.config.label, err)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1" if host in ("0.0.0.0", "") else host, 0))
        port: int = s.getsockname()[1]
        return port


async def run(settings: config.Settings, *, account: LocalAccount) -> int:
    """Serve until SIGTERM or SIGINT (the CLI's entry point)."""
    facilitator = Facilitator(settings, account=account)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await facilitator.start()
        await stop.wait()
        log.info("facilitator stopping")
    finally:
        await facilitator.stop()
    return 0
