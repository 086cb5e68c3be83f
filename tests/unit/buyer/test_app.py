"""The buyer served by granian in-process: ops endpoints, the 10 MiB body limit, config reload."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from kube402.buyer.app import MAX_BODY_BYTES
from kube402.buyer.main import Buyer, Options
from tests.support.buyer_env import SELLER, USDC, voucher


def write(d: Path, n: int) -> None:
    up = {"url": "http://127.0.0.1:9/x", "remoteModel": "m", "network": "base-sepolia", "payTo": SELLER,
          "asset": USDC, "price": "1000"}  # fmt: skip
    (d / "config.json").write_text(json.dumps({"upstreams": {"q": up}}))
    (d / "auths.json").write_text(json.dumps({"q": [voucher(i).to_json() for i in range(n)]}))


async def test_ops_body_limit_and_reload(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    (cfg / "mounted").mkdir(parents=True)
    write(cfg / "mounted", 2)
    state = tmp_path / "state" / "consumed.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"consumed": {"q": [voucher(0).nonce]}}))
    buyer = Buyer(
        Options(state_file=str(state), listen="127.0.0.1:0", config_dir=str(cfg), poll_seconds=0.05)
    )
    await buyer.start()
    try:
        async with httpx.AsyncClient(base_url=buyer.url, trust_env=False, timeout=30) as http:
            assert (await http.get("/healthz")).text == "ok"
            st = (await http.get("/status")).json()["upstreams"]["q"]
            assert (st["remaining"], st["spent"], st["public_model"]) == (1, 1, "paid/m")
            assert "kube402_buyer_vouchers_remaining" in (await http.get("/metrics")).text
            assert (await http.get("/v1/models")).json()["data"][0]["id"] == "paid/m"
            big = await http.post("/v1/chat/completions", content=b"x" * (MAX_BODY_BYTES + 1))
            assert big.status_code == 413
            exact = await http.post("/v1/chat/completions", content=b"x" * MAX_BODY_BYTES)
            assert exact.status_code == 400, "10 MiB itself is accepted (and then is not JSON)"

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(11):
                    yield b"y" * (1024 * 1024)

            chunked = await http.post("/upstream/q/x", content=chunks())
            assert chunked.status_code == 413

            write(cfg / "mounted", 5)
            for _ in range(200):
                st = (await http.get("/status")).json()["upstreams"]["q"]
                if st["remaining"] == 4:
                    break
                await asyncio.sleep(0.02)
            assert (st["remaining"], st["spent"]) == (4, 1), "reloaded; the consumed nonce stays consumed"
            assert buyer.reloads == 2
    finally:
        await buyer.stop()
