"""The informer (SPEC 5.1; STYLE lightkube section): list → watch → relist on 410 → back off on failures.

A scripted fake API server sits behind ``httpx2.MockTransport``: each list request takes the next scripted
list, each watch request the next scripted watch (a newline-delimited JSON event stream, an HTTP error or a
transport error); once the script runs out, watches hang until the test cancels the informer. The
informer's backoff sleeps are recorded instead of slept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.kube.informer import Event, Informer

REAL_SLEEP = asyncio.sleep

Reply = httpx2.Response | Callable[[httpx2.Request], Any]


def so(name: str, rv: str, ns: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
        "spec": spec,
    }


def list_reply(rv: str, *items: dict[str, Any]) -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "kind": "ServiceOfferList",
            "metadata": {"resourceVersion": rv},
            "items": [json.loads(json.dumps(i)) for i in items],
        },
    )


def event(etype: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": etype, "object": obj}


def bookmark(rv: str) -> dict[str, Any]:
    return {"type": "BOOKMARK", "object": {"kind": "ServiceOffer", "metadata": {"resourceVersion": rv}}}


def expired() -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": "too old resource version: 20 (25)",
            "reason": "Expired",
            "code": 410,
        },
    }


def stream(*events: dict[str, Any]) -> httpx2.Response:
    return httpx2.Response(200, content=b"".join(json.dumps(e).encode() + b"\n" for e in events))


def http_gone() -> httpx2.Response:
    return httpx2.Response(
        410, json={"kind": "Status", "reason": "Expired", "message": "too old", "code": 410}
    )


def transport_error(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=request)


class FakeApiServer:
    def __init__(self, *, lists: list[Reply], watches: list[Reply]) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.requests: list[httpx2.Request] = []
        self.hanging = asyncio.Event()
        """Set once the script is exhausted and a watch is hanging."""

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        watching = request.url.params.get("watch") == "true"
        script = self.watches if watching else self.lists
        if not script:
            assert watching, "unexpected extra list request"
            return httpx2.Response(200, content=self._hang())
        reply = script.pop(0)
        if callable(reply):
            reply = reply(request)
            if asyncio.iscoroutine(reply):
                reply = await reply
        return reply

    async def _hang(self) -> AsyncIterator[bytes]:
        self.hanging.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    def watch_versions(self) -> list[str]:
        return [r.url.params["resourceVersion"] for r in self.requests if r.url.params.get("watch") == "true"]

    def list_count(self) -> int:
        return sum(1 for r in self.requests if r.url.params.get("watch") != "true")


class Run:
    """An informer running against a fake API server, with its events and backoff sleeps recorded."""

    def __init__(self, server: FakeApiServer, **kw: Any) -> None:
        http = httpx2.AsyncClient(base_url="http://kube.test", transport=httpx2.MockTransport(server))
        self.server = server
        self.informer = Informer(Kube(http), resources.SERVICE_OFFER, **kw)
        self.events: list[Event] = []
        self.informer.add_handler(self.events.append)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.informer.run())

    async def until_idle(self, timeout: float = 1.0) -> None:
        await asyncio.wait_for(self.server.hanging.wait(), timeout)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def seen(self) -> list[tuple[str, str]]:
        return [(e.type.value, e.key[1]) for e in self.events]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        recorded.append(delay)
        await REAL_SLEEP(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return recorded


async def run_script(server: FakeApiServer, **kw: Any) -> Run:
    run = Run(server, **kw)
    run.start()
    try:
        await run.until_idle()
    finally:
        await run.stop()
    return run


class TestListThenWatch:
    async def test_synced_is_set_only_after_the_first_list(self) -> None:
        release = asyncio.Event()

        async def slow_list(request: httpx2.Request) -> httpx2.Response:
            await release.wait()
            return list_reply("10", so("a", "5"))

        run = Run(FakeApiServer(lists=[slow_list], watches=[]))
        run.start()
        try:
            await REAL_SLEEP(0.01)
            assert not run.informer.synced.is_set()
            assert len(run.informer.store) == 0
            release.set()
            await asyncio.wait_for(run.informer.synced.wait(), 1)
            assert run.informer.store.get(("shop", "a")) is not None
        finally:
            await run.stop()

    async def test_the_initial_list_is_announced_as_added_and_the_watch_starts_at_its_version(self) -> None:
        server = FakeApiServer(lists=[list_reply("10", so("a", "5"), so("b", "6"))], watches=[])
        run = await run_script(server)
        assert run.seen() == [("ADDED", "a"), ("ADDED", "b")]
        assert all(e.old is None for e in run.events)
        assert server.watch_versions() == ["10"]
        assert run.informer.relists == 1

    async def test_watch_events_update_the_cache(self) -> None:
        server = FakeApiServer(
            lists=[list_reply("10", so("a", "5"), so("b", "6"))],
            watches=[
                stream(
                    event("ADDED", so("c", "11")),
                    event("MODIFIED", so("a", "12", price="2")),
                    event("DELETED", so("b", "13")),
                )
            ],
        )
        run = await run_script(server)
        assert run.seen()[2:] == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b")]
        modified = run.events[3]
        assert modified.old is not None and modified.old["metadata"]["resourceVersion"] == "5"
        assert modified.obj["spec"] == {"price": "2"}
        assert run.events[4].old is not None and run.events[4].old["metadata"]["resourceVersion"] == "6"
        assert sorted(run.informer.store.keys()) == [("shop", "a"), ("shop", "c")]
        assert server.watch_versions() == ["10", "13"]  # a closed stream resumes from the last event

    async def test_a_bookmark_moves_the_resource_version_and_emits_nothing(self) -> None:
        server = FakeApiServer(
            lists=[list_reply("10", so("a", "5"))], watches=[stream(bookmark("20")), stream(bookmark("31"))]
        )
        run = await run_script(server)
        assert run.seen() == [("ADDED", "a")]
        assert len(run.informer.store) == 1
        assert server.watch_versions() == ["10", "20", "31"]
        assert run.informer.relists == 1

    async def test_on_sync_runs_after_every_full_list(self) -> None:
        server = FakeApiServer(lists=[list_reply("10"), list_reply("30")], watches=[stream(expired())])
        run = Run(server)
        synced_sizes: list[int] = []
        run.informer.on_sync(lambda: synced_sizes.append(run.informer.relists))
        run.start()
        try:
            await run.until_idle()
        finally:
            await run.stop()
        assert synced_sizes == [1, 2]

    async def test_a_failing_handler_does_not_stop_the_informer_or_other_handlers(self) -> None:
        server = FakeApiServer(
            lists=[list_reply("10", so("a", "5"))], watches=[stream(event("ADDED", so("b", "11")))]
        )
        run = Run(server)

        def explode(e: Event) -> None:
            raise RuntimeError("handler bug")

        run.informer._handlers.insert(0, explode)
        run.start()
        try:
            await run.until_idle()
        finally:
            await run.stop()
        assert run.seen() == [("ADDED", "a"), ("ADDED", "b")]


class TestGone:
    @pytest.mark.parametrize(
        "gone",
        [
            pytest.param(lambda: stream(expired()), id="ERROR event 410"),
            pytest.param(http_gone, id="HTTP 410"),
        ],
    )
    async def test_deletes_are_never_lost_across_410(self, gone: Callable[[], httpx2.Response]) -> None:
        server = FakeApiServer(
            lists=[
                list_reply("10", so("a", "5"), so("b", "6")),
                list_reply("30", so("a", "5")),
            ],  # b was deleted while the watch was expired
            watches=[gone()],
        )
        run = await run_script(server)
        assert run.seen() == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "b")]
        deleted = run.events[-1]
        assert deleted.obj["metadata"]["resourceVersion"] == "6"  # its last known state
        assert run.informer.store.keys() == [("shop", "a")]
        assert run.informer.relists == 2
        assert server.watch_versions() == ["10", "30"]

    async def test_the_whole_story(self) -> None:
        server = FakeApiServer(
            lists=[
                list_reply("10", so("a", "5"), so("b", "6")),
                list_reply("30", so("a", "12"), so("c", "25"), so("d", "26")),
                list_reply("40", so("a", "12"), so("c", "25")),
            ],
            watches=[
                stream(event("ADDED", so("c", "11")), event("MODIFIED", so("a", "12")), bookmark("20")),
                stream(expired()),
                http_gone(),
            ],
        )
        run = await run_script(server)
        assert run.seen() == [
            ("ADDED", "a"),
            ("ADDED", "b"),  # first list
            ("ADDED", "c"),
            ("MODIFIED", "a"),  # watch
            ("MODIFIED", "c"),
            ("ADDED", "d"),
            ("DELETED", "b"),  # relist after the ERROR 410 (a unchanged)
            ("DELETED", "d"),  # relist after the HTTP 410
        ]
        assert server.watch_versions() == ["10", "20", "30", "40"]
        assert run.informer.relists == 3
        assert sorted(run.informer.store.keys()) == [("shop", "a"), ("shop", "c")]

    async def test_a_relist_with_nothing_new_emits_nothing(self) -> None:
        server = FakeApiServer(
            lists=[list_reply("10", so("a", "5")), list_reply("11", so("a", "5"))], watches=[http_gone()]
        )
        run = await run_script(server)
        assert run.seen() == [("ADDED", "a")]
        assert run.informer.relists == 2

    async def test_a_410_does_not_back_off(self, sleeps: list[float]) -> None:
        server = FakeApiServer(lists=[list_reply("10"), list_reply("20")], watches=[http_gone()])
        await run_script(server)
        assert sleeps == []


class TestFailuresBackOffAndResume:
    async def test_transport_errors_back_off_doubling_and_resume_where_they_left_off(
        self, sleeps: list[float]
    ) -> None:
        server = FakeApiServer(
            lists=[list_reply("10", so("a", "5"))],
            watches=[
                transport_error,
                httpx2.Response(500, json={"reason": "InternalError", "message": "etcd down"}),
                stream(event("ADDED", so("b", "11"))),  # success resets the backoff
                transport_error,
            ],
        )
        run = await run_script(server)
        assert sleeps == [0.5, 1.0, 0.5]
        assert run.informer.relists == 1  # no relist: the resourceVersion is still valid
        assert server.watch_versions() == ["10", "10", "10", "11", "11"]
        assert run.seen() == [("ADDED", "a"), ("ADDED", "b")]

    async def test_the_backoff_is_capped(self, sleeps: list[float]) -> None:
        server = FakeApiServer(lists=[list_reply("10")], watches=[transport_error] * 5)
        await run_script(server, max_backoff=2.0)
        assert sleeps == [0.5, 1.0, 2.0, 2.0, 2.0]

    async def test_a_failed_first_list_is_retried_and_the_cache_is_not_synced_meanwhile(
        self, sleeps: list[float]
    ) -> None:
        seen_synced: list[bool] = []
        run: Run

        def failing_list(request: httpx2.Request) -> httpx2.Response:
            seen_synced.append(run.informer.synced.is_set())
            return httpx2.Response(503, text="apiserver starting")

        server = FakeApiServer(lists=[failing_list, failing_list, list_reply("10", so("a", "5"))], watches=[])
        run = Run(server)
        run.start()
        try:
            await run.until_idle()
        finally:
            await run.stop()
        assert seen_synced == [False, False]
        assert sleeps == [0.5, 1.0]
        assert run.informer.synced.is_set()
        assert run.informer.relists == 1
        assert run.seen() == [("ADDED", "a")]

    async def test_a_garbled_watch_line_is_a_retryable_failure(self, sleeps: list[float]) -> None:
        garbled = httpx2.Response(200, content=b'{"type": "ADDED", "object": {"metadata": {"name": "x"\n')
        server = FakeApiServer(
            lists=[list_reply("10")], watches=[garbled, stream(event("ADDED", so("b", "11")))]
        )
        run = await run_script(server)
        assert sleeps == [0.5]
        assert run.seen() == [("ADDED", "b")]

    async def test_an_unexpected_crash_is_logged_and_the_informer_restarts_with_a_relist(
        self, sleeps: list[float], caplog: pytest.LogCaptureFixture
    ) -> None:
        # A watch event whose object is not a JSON object breaks the cache update itself (not a handler).
        junk = stream({"type": "ADDED", "object": ["not", "an", "object"]})
        server = FakeApiServer(
            lists=[list_reply("10"), list_reply("12", so("b", "12"))],
            watches=[junk, stream(event("ADDED", so("c", "13")))],
        )
        run = await run_script(server)
        assert run.task is not None and run.task.cancelled(), "the informer kept running"
        assert any("crashed" in r.getMessage() and r.exc_info for r in caplog.records), (
            "logged with traceback"
        )
        assert server.list_count() == 2, "restarted from a fresh list"
        assert sleeps == [0.5], "backed off once"
        assert run.seen() == [("ADDED", "b"), ("ADDED", "c")]
