"""ReplayStore states and lifetimes (SPEC 7.9), the RSGI adapters (SPEC 7.1) driven with fake scope/protocol
objects, and the metrics rendering (SPEC 7.10)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from kube402.verifier.app import ProxyApp, VerifierApp
from kube402.verifier.metrics import Metrics
from kube402.verifier.replay import ReplayStore, State
from tests.support.verifier_env import Env, Upstream, b64, proxy_gate

KEY = (84532, "0xasset", "0xfrom", "00" * 32)
KEY2 = (84532, "0xasset", "0xfrom", "11" * 32)


class TestReplayStore:
    def make(self, ttl: float = 600.0) -> tuple[ReplayStore, list[float]]:
        clock = [1000.0]
        return ReplayStore(replay_ttl=ttl, clock=lambda: clock[0]), clock

    def test_begin_is_check_and_insert(self) -> None:
        s, _ = self.make()
        assert s.begin(KEY, payload_hash="h") is None
        existing = s.begin(KEY, payload_hash="h")
        assert existing is not None and existing.state is State.IN_FLIGHT
        assert s.begin(KEY2, payload_hash="h") is None
        assert len(s) == 2
        assert s.counts() == {"in_flight": 2, "settled": 0, "verify_only": 0, "pending": 0, "head_used": 0}

    def test_in_flight_never_expires(self) -> None:
        s, clock = self.make()
        s.begin(KEY, payload_hash="h")
        clock[0] += 10**9
        e = s.get(KEY)
        assert e is not None and e.state is State.IN_FLIGHT

    def test_settled_kept_for_ttl(self) -> None:
        s, clock = self.make(ttl=60)
        s.begin(KEY, payload_hash="h")
        s.settled(KEY, tx="0xtx")
        clock[0] += 59
        e = s.get(KEY)
        assert e is not None and e.state is State.SETTLED and e.tx == "0xtx"
        clock[0] += 2
        assert s.get(KEY) is None and len(s) == 0
        assert s.begin(KEY, payload_hash="h") is None

    def test_verify_only_kept_until_valid_before(self) -> None:
        s, clock = self.make()
        s.verify_only(KEY, valid_before=1500)
        clock[0] = 1499
        assert s.get(KEY).state is State.VERIFY_ONLY  # type: ignore[union-attr]
        clock[0] = 1500
        assert s.get(KEY) is None

    def test_pending_kept_until_valid_before_plus_ten_minutes(self) -> None:
        s, clock = self.make()
        s.pending(KEY, payload_hash="h1", tx="0xt", valid_before=2000)
        clock[0] = 2599
        e = s.get(KEY)
        assert e is not None and e.state is State.PENDING and e.payload_hash == "h1" and e.tx == "0xt"
        s.take_over(KEY)
        assert s.get(KEY).state is State.IN_FLIGHT  # type: ignore[union-attr]
        s.pending(KEY, payload_hash="h1", tx="0xt", valid_before=2000)
        clock[0] = 2600
        assert s.get(KEY) is None

    def test_sweep_removes_expired_entries(self) -> None:
        s, clock = self.make(ttl=1)
        for i in range(50):
            k = (1, "a", "f", f"{i:064x}")
            s.settled(k)
        clock[0] += 10
        s.get(KEY)
        assert len(s) == 0

    def test_drop(self) -> None:
        s, _ = self.make()
        s.begin(KEY, payload_hash="h")
        s.drop(KEY)
        s.drop(KEY)
        assert len(s) == 0


class FakeHeaders(dict[str, str]):
    pass


class FakeScope:
    def __init__(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        query: str = "",
        client: str = "10.0.0.1:5000",
    ) -> None:
        self.path = path
        self.method = method
        self.headers = FakeHeaders(headers or {})
        self.query_string = query
        self.client = client


class FakeStream:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.chunks.append(data)


class FakeProtocol:
    def __init__(self, body: tuple[bytes, ...] = ()) -> None:
        self.sent: list[tuple[int, list[tuple[str, str]], bytes]] = []
        self.stream: FakeStream | None = None
        self.stream_status: int | None = None
        self._body = body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        assert isinstance(body, bytes)
        self.sent.append((status, headers, body))

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> FakeStream:
        self.stream_status = status
        self.stream = FakeStream()
        return self.stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for c in self._body:
                yield c

        return gen()


class TestApp:
    async def test_ops_endpoints(self, env: Env) -> None:
        app = VerifierApp(env.gate)
        for path, status, body in (
            ("/healthz", 200, b'{"status":"ok"}'),
            ("/readyz", 200, b'{"status":"ready"}'),
        ):
            proto = FakeProtocol()
            await app.__rsgi__(FakeScope(path), proto)
            assert proto.sent[0][0] == status and proto.sent[0][2] == body
        env.gate.ready = False
        proto = FakeProtocol()
        await app.__rsgi__(FakeScope("/readyz"), proto)
        status, hdrs, body = proto.sent[0]
        assert status == 503 and body == b"not ready" and ("retry-after", "5") in hdrs
        proto = FakeProtocol()
        await app.__rsgi__(FakeScope("/metrics"), proto)
        assert proto.sent[0][0] == 200 and b"obol_x402_verifier" in proto.sent[0][2]
        proto = FakeProtocol()
        await app.__rsgi__(FakeScope("/unknown"), proto)
        assert proto.sent[0][0] == 404

    async def test_verify_responses_are_whole_byte_bodies(self, env: Env) -> None:
        app = VerifierApp(env.gate)
        proto = FakeProtocol()
        await app.__rsgi__(FakeScope("/verify", headers={"x-forwarded-uri": "/free"}), proto)
        assert proto.sent == [
            (200, [], b"")
        ]  # an empty bytes body: the server frames it as Content-Length: 0
        proto = FakeProtocol()
        await app.__rsgi__(
            FakeScope("/verify", method="POST", headers={"x-forwarded-uri": "/services/qwen/a"}), proto
        )
        status, hdrs, body = proto.sent[0]
        assert status == 402 and body and any(k == "PAYMENT-REQUIRED" for k, _ in hdrs)
        proto = FakeProtocol()
        await app.__rsgi__(
            FakeScope(
                "/verify",
                headers={"x-forwarded-uri": "/services/qwen/a", "payment-signature": b64(env.factory.v2())},
            ),
            proto,
        )
        assert proto.sent[0][0] == 200

    async def test_proxy_app_streams_and_keeps_query(self, env: Env) -> None:
        upstream = Upstream()
        pg = proxy_gate(env, upstream)
        app = ProxyApp(pg)
        proto = FakeProtocol(body=(b"abc",))
        scope = FakeScope(
            "/services/qwen/v1",
            method="POST",
            query="a=1",
            headers={"Payment-Signature": b64(env.factory.v2()), "Content-Type": "text/plain"},
        )
        await app.__rsgi__(scope, proto)
        assert proto.stream_status == 200 and proto.stream is not None
        assert b"".join(proto.stream.chunks) == b'{"ok":true}'
        assert str(upstream.requests[0].url).endswith("/v1?a=1")
        assert upstream.bodies == [b"abc"]
        await pg.aclose()

    async def test_single_port_mode_routes_other_paths_to_proxy(self, env: Env) -> None:
        upstream = Upstream()
        pg = proxy_gate(env, upstream)
        app = VerifierApp(env.gate, proxy=pg)
        proto = FakeProtocol()
        await app.__rsgi__(FakeScope("/nothing"), proto)
        assert proto.sent[0][0] == 404 and b"route_not_found" in proto.sent[0][2]
        await pg.aclose()


def test_metrics_forget_routes() -> None:
    m = Metrics()
    a, b = ("/a/*", "ns", "a"), ("/b/*", "ns", "b")
    m.requests.inc(a)
    m.requests.inc(b)
    m.failures.inc((*a, "requirements_mismatch"))
    m.forget_routes([a])
    assert m.requests.value(*a) == 0 and m.requests.value(*b) == 1
    assert m.failures.values == {}
    text = m.render().decode()
    assert 'obol_x402_verifier_requests_total{offer_name="b",offer_namespace="ns",route="/b/*"} 1.0' in text
    assert 'route="/a/*"' not in text


def test_metrics_histograms_render() -> None:
    m = Metrics()
    m.duration.observe(("forwardAuth", "402"), 0.0003)
    m.duration.observe(("forwardAuth", "402"), 100.0)
    assert m.duration.count("forwardAuth", "402") == 2
    text = m.render().decode()
    assert (
        'obol_x402_verifier_request_duration_seconds_bucket{code="402",le="+Inf",mode="forwardAuth"} 2.0'
        in text
    )
