"""The proxy gate keeps keep-alive connections reusable when it answers without the upstream (issue 10).

Behind Traefik the gate's connections are pooled: answering an unpaid POST before its body was read left the
connection unusable, and Traefik's next request on it failed (0.02 % 500s under wrk). One raw TCP connection
carries several POSTs with bodies; every one must be answered on that same connection.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from kube402.verifier.main import Verifier

pytestmark = pytest.mark.integration


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return status, headers, body


@pytest.mark.parametrize("size", [200, 64 * 1024])
async def test_early_answers_leave_the_connection_reusable(verifier: Verifier, size: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", verifier.ports["proxy"])
    try:
        body = json.dumps({"model": "m", "pad": "x" * size}).encode()
        for i in range(5):
            writer.write(
                f"POST /services/no-such-offer-{i}/v1/chat/completions HTTP/1.1\r\n"
                f"Host: gate\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            status, headers, answer = await _read_response(reader)
            assert status in (404, 503), (i, status, answer)  # route_not_found (or not_ready before sync)
            assert headers.get("connection", "").lower() != "close", (i, headers)
    finally:
        writer.close()
