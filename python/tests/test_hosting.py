"""An ASGI app hosted on the native server (``manager.listen(..., app=app)``).

- The differential tests serve one FastAPI app (``hosting_app.create_app``) with uvicorn and
  on the native server at once, drive both with the same raw HTTP/1.1 and WebSocket client
  code, and require the same status, headers and body from both.
- The robustness tests hold the native server to what a server owes the app and its
  clients: disconnects reported to the app, 413 / 504 / 500 answered for it, keep-alive
  kept after a failure, a thousand clients at once, a failing lifespan refusing to start,
  GraphQL over HTTP and subscriptions on one port.
- The exit tests leave the interpreter with requests in flight: no crash.

Nothing here waits on time: each test awaits an answer or a flag the app sets (``Probe``),
bounded only so that a bug fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import _free_port, client, serve_app, wait_for
from hosting_app import STREAM_CHUNKS, Probe, create_app, create_failing_app, create_graphql_app
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fraiseql_subscriptions import SubscriptionManager
from fraiseql_subscriptions.subscriptions.hosting import LifespanError

#: Bound on every single wait (an answer, a flag): generous, for a loaded machine.
TIMEOUT = 30.0


# ---- a raw HTTP/1.1 client ---------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP response as it came off the wire."""

    status: int
    #: (lower-cased name, value) in the order received.
    headers: list[tuple[str, str]]
    body: bytes
    #: How the body was delimited: "chunked", "length", "close" or "none" (no body).
    framing: str

    def header(self, name: str) -> str | None:
        values = self.values(name)
        return values[0] if values else None

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection: requests written as given (a body in one piece,
    or chunked), responses parsed strictly (length, chunked, or up to the close)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, limit=1 << 20), TIMEOUT
        )
        return cls(reader, writer)

    def write_head(self, method: str, path: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def send(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        chunks: Iterable[bytes] | None = None,
    ) -> None:
        """Writes a request: `body` with a Content-Length, or `chunks` chunk-encoded."""
        headers = list(headers)
        if body is not None:
            headers.append(("Content-Length", str(len(body))))
        if chunks is not None:
            headers.append(("Transfer-Encoding", "chunked"))
        self.write_head(method, path, headers)
        if body is not None:
            self.writer.write(body)
        if chunks is not None:
            for chunk in chunks:
                if chunk:
                    self.writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await asyncio.wait_for(self.writer.drain(), TIMEOUT)
            self.writer.write(b"0\r\n\r\n")
        await asyncio.wait_for(self.writer.drain(), TIMEOUT)

    async def _line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n"), TIMEOUT)

    async def head(self) -> tuple[int, list[tuple[str, str]]]:
        """Reads a response's status line and headers."""
        status_line = await self._line()
        version, status, _ = status_line.decode("latin-1").split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = []
        while (line := await self._line()) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return int(status), headers

    async def answer(self, method: str = "GET") -> Answer:
        """Reads one whole response (to a request of `method`)."""
        status, headers = await self.head()
        return await self.rest(method, status, headers)

    async def rest(self, method: str, status: int, headers: list[tuple[str, str]]) -> Answer:
        """Reads the body of a response whose head was read."""
        names = {k: v for k, v in headers}
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Answer(status, headers, b"", "none")
        if names.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await self._line()).split(b";")[0], 16)
                if size == 0:
                    while await self._line() != b"\r\n":
                        pass  # trailers
                    break
                body += await asyncio.wait_for(self.reader.readexactly(size + 2), TIMEOUT)
                del body[-2:]
            return Answer(status, headers, bytes(body), "chunked")
        if "content-length" in names:
            length = int(names["content-length"])
            body = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
            return Answer(status, headers, body, "length")
        body = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        return Answer(status, headers, body, "close")

    async def request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        chunks: Iterable[bytes] | None = None,
    ) -> Answer:
        await self.send(method, path, headers, body, chunks)
        return await self.answer(method)

    async def closed_by_server(self) -> bool:
        """Whether the server closed (or reset) this connection: reads to the end."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        except ConnectionResetError:
            return True
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[Connection]:
    conn = await Connection.open(port)
    try:
        yield conn
    finally:
        await conn.close()


async def request(port: int, method: str, path: str, **kwargs: Any) -> Answer:
    """One request on a connection of its own."""
    async with connection(port) as conn:
        return await conn.request(method, path, **kwargs)


# ---- servers -----------------------------------------------------------------------------


@dataclass
class Hosted:
    """The native server hosting an app."""

    port: int
    probe: Probe
    manager: SubscriptionManager


@contextlib.asynccontextmanager
async def native(
    app: Any = None,
    probe: Probe | None = None,
    manager: SubscriptionManager | None = None,
    **options: Any,
) -> AsyncIterator[Hosted]:
    """The native server hosting `app` (default: the test app) on a free port."""
    probe = probe or Probe()
    manager = manager or SubscriptionManager()
    server = await manager.listen("127.0.0.1", 0, app=app or create_app(probe), **options)
    try:
        yield Hosted(server.port, probe, manager)
    finally:
        await manager.shutdown(grace=5.0)


@dataclass
class Both:
    """One app served by uvicorn and by the native server at once."""

    probe: Probe
    ports: dict[str, int]


@pytest.fixture
async def both() -> AsyncIterator[Both]:
    probe = Probe()
    app = create_app(probe)  # one app object for both servers
    async with (
        serve_app(app, SubscriptionManager()) as uvicorn_server,
        native(app, probe) as hosted,
    ):
        uvicorn_port = int(uvicorn_server.url.split(":")[2].split("/")[0])
        yield Both(probe, {"uvicorn": uvicorn_port, "native": hosted.port})


# ---- differential: uvicorn and the native server answer alike ---------------------------

# Headers the server adds on its own, not the app's, left out of the comparison:
# - `date`: the time of each answer;
# - `server`: uvicorn names itself ("uvicorn"), the native server sends none.
# Framing headers (content-length, transfer-encoding) are compared: both servers frame
# each response the same way. So is `connection`, except where noted in a case.
SERVER_HEADERS = {"date", "server"}

#: A case drives one server (by port; `tag` names it, for keys that must not collide)
#: and returns what it saw, to compare with the other server's.
Case = Callable[[int, Probe, str], Awaitable[list[Any]]]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


def seen(answer: Answer, *, ignore: Iterable[str] = (), framing: bool = True) -> dict[str, Any]:
    """What is compared of an answer: its headers by name, the values of each name in
    order (hyper's HeaderMap sends the values of one name together: an app interleaving
    names gets another order across names than on uvicorn, which the client may not rely
    on anyway), and its framing unless ``framing=False``."""
    left_out = SERVER_HEADERS | set(ignore)
    headers: dict[str, list[str]] = {}
    for name, value in answer.headers:
        if name not in left_out:
            headers.setdefault(name, []).append(value)
    return {
        "status": answer.status,
        "headers": dict(sorted(headers.items())),
        "body": answer.body,
        "framing": answer.framing if framing else "(not compared)",
    }


JSON = ("Content-Type", "application/json")


@case
async def json_get_and_post(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        return [
            seen(await conn.request("GET", "/json?x=21&tag=a&tag=b&empty=")),
            seen(
                await conn.request("POST", "/json", [JSON], body=b'{"name": "fraise", "count": 3}')
            ),
        ]


@case
async def validation_errors_are_422(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        return [
            seen(await conn.request("POST", "/json", [JSON], body=b'{"name": 1}')),
            seen(await conn.request("POST", "/json", [JSON], body=b"{not json")),
            seen(await conn.request("GET", "/json?x=notanint")),
        ]


@case
async def the_scope(port: int, probe: Probe, tag: str) -> list[Any]:
    headers = [
        ("X-Mixed-Case", "Value With Spaces"),
        ("X-Repeat", "one"),
        ("X-Repeat", "two"),
        ("Accept", "*/*"),
    ]
    async with connection(port) as conn:
        return [
            seen(await conn.request("GET", "/scope/caf%C3%A9%20x/y?q=a%20b&r=&s=%2F", headers)),
            seen(await conn.request("POST", "/scope/", [JSON], body=b"{}")),
        ]


@case
async def form_and_multipart(port: int, probe: Probe, tag: str) -> list[Any]:
    form = b"name=Ann+Lee&tags=a&tags=b%26c"
    boundary = "----fraiseql-boundary-7MA4YWxk"
    payload = bytes(range(256)) * 1000
    multipart = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="note"\r\n\r\n',
            "a note \u00e9\r\n".encode(),
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="data.bin"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            payload,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    async with connection(port) as conn:
        posted = await conn.request(
            "POST", "/form", [("Content-Type", "application/x-www-form-urlencoded")], body=form
        )
        uploaded = await conn.request(
            "POST",
            "/upload",
            [("Content-Type", f"multipart/form-data; boundary={boundary}")],
            body=multipart,
        )
    assert posted.json() == {"name": "Ann Lee", "tags": ["a", "b&c"]}, posted
    assert uploaded.json()["sha256"] == hashlib.sha256(payload).hexdigest(), uploaded
    return [seen(posted), seen(uploaded)]


BIG = (bytes(range(256)) * 4096)[: 5_000_000 // 8] * 8  # 5 MB, not all alike


@case
async def large_streamed_request_bodies(port: int, probe: Probe, tag: str) -> list[Any]:
    pieces = [BIG[i : i + 65_536] for i in range(0, len(BIG), 65_536)]
    async with connection(port) as conn:
        chunked = await conn.request("POST", f"/stream-in?id={tag}", chunks=pieces)
        sized = await conn.request("POST", f"/stream-in?id={tag}", body=BIG)
    expected = {"length": len(BIG), "sha256": hashlib.sha256(BIG).hexdigest()}
    assert chunked.json() == expected, chunked
    assert sized.json() == expected, sized
    return [seen(chunked), seen(sized)]


@case
async def streamed_responses(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        stream = await conn.request("GET", "/stream-out")
        events = await conn.request("GET", "/sse")
    assert stream.body == b"".join(STREAM_CHUNKS)
    assert stream.framing == "chunked"
    assert b"event: end" in events.body, events
    return [seen(stream), seen(events)]


@case
async def cookies_set_then_sent_back(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        set_ = await conn.request("GET", "/cookies/set")
        jar = "; ".join(cookie.split(";")[0] for cookie in set_.values("set-cookie"))
        read = await conn.request("GET", "/cookies", [("Cookie", jar)])
    assert read.json() == {"session": "s3cr3t", "theme": "dark"}, read
    return [seen(set_), seen(read)]


@case
async def custom_headers(port: int, probe: Probe, tag: str) -> list[Any]:
    sent = [("X-Echo", "echoed"), ("X-Repeat", "1"), ("X-Repeat", "2")]
    return [seen(await request(port, "GET", "/headers", headers=sent))]


@case
async def redirects(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        return [
            seen(await conn.request("GET", "/redirect/307")),
            seen(await conn.request("GET", "/redirect/302")),
        ]


@case
async def not_found_and_method_not_allowed(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        return [
            seen(await conn.request("GET", "/nowhere")),
            seen(await conn.request("GET", "/only-post")),
            seen(await conn.request("DELETE", "/json")),
        ]


@case
async def no_content_and_head(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        return [
            seen(await conn.request("GET", "/empty")),
            seen(await conn.request("HEAD", "/head")),
            seen(await conn.request("GET", "/head")),
        ]


@case
async def an_endpoint_that_raises(port: int, probe: Probe, tag: str) -> list[Any]:
    # FastAPI's ServerErrorMiddleware answers 500 and re-raises to the server. uvicorn then
    # closes the connection: each request on a connection of its own.
    return [seen(await request(port, "GET", "/boom"))]


@case
async def an_app_that_raises_before_answering(port: int, probe: Probe, tag: str) -> list[Any]:
    # The server answers 500 itself. uvicorn adds `connection: close` (and closes);
    # the native server keeps the connection (checked in the robustness tests). uvicorn's
    # framing of its own 500 depends on its HTTP implementation (h11: chunked; httptools:
    # content-length); the native server sends a content-length.
    framing = {"connection", "content-length", "transfer-encoding"}
    answer = await request(port, "GET", "/raw/raise-before-start")
    return [seen(answer, ignore=framing, framing=False)]


@case
async def an_app_that_raises_mid_response(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        await conn.send("GET", "/raw/raise-mid-body")
        status, headers = await conn.head()
        try:
            await conn.rest("GET", status, headers)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            outcome = "cut short"
        else:
            outcome = "complete"
    return [status, sorted((k, v) for k, v in headers if k not in SERVER_HEADERS), outcome]


@case
async def a_background_task_runs_after_the_response(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        queued = await conn.request("POST", f"/background/{tag}")
        await probe.wait(f"background:{tag}")
        ran = await conn.request("GET", f"/background/{tag}")
    assert ran.json() == {"ran": True}
    return [seen(queued), seen(ran)]


@case
async def the_lifespan_state(port: int, probe: Probe, tag: str) -> list[Any]:
    answer = await request(port, "GET", "/state")
    assert answer.json() == {"key": "from the lifespan"}
    return [seen(answer)]


@case
async def pipelined_requests(port: int, probe: Probe, tag: str) -> list[Any]:
    async with connection(port) as conn:
        for x in range(3):
            conn.write_head("GET", f"/json?x={x}")
        conn.write_head("POST", "/json", [JSON, ("Content-Length", "28")])
        conn.writer.write(b'{"name": "pipe", "count": 9}')
        await conn.writer.drain()
        answers = [await conn.answer() for _ in range(4)]
    assert [a.json()["double"] for a in answers] == [0, 2, 4, 18]
    return [seen(a) for a in answers]


@case
async def websocket_echo(port: int, probe: Probe, tag: str) -> list[Any]:
    url = f"ws://127.0.0.1:{port}/ws"
    transcript: list[Any] = []
    async with connect(url, subprotocols=["echo.v1"], open_timeout=TIMEOUT) as ws:  # type: ignore[list-item]
        transcript.append(ws.subprotocol)
        # The last two outgrow the 1 KiB read buffer the native host starts each socket with.
        large = ["x" * 300_000 + "\u00e9", bytes(range(256)) * 400]
        for message in ["hello", b"\x01\x02\x03", "\u00e9t\u00e9 \U0001f353", b"", *large]:
            await ws.send(message)
            transcript.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
        await ws.send("close")
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        transcript.append((ws.close_code, ws.close_reason))
    async with connect(url, open_timeout=TIMEOUT) as ws:
        transcript.append(ws.subprotocol)  # none offered, none chosen
        await ws.send("still here")
        transcript.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{port}/ws/refuse", open_timeout=TIMEOUT):
            pass
    transcript.append(refused.value.response.status_code)
    return transcript


@pytest.mark.parametrize("name", list(CASES))
async def test_uvicorn_and_the_native_server_answer_alike(both: Both, name: str) -> None:
    run = CASES[name]
    on_uvicorn = await run(both.ports["uvicorn"], both.probe, "uvicorn")
    on_native = await run(both.ports["native"], both.probe, "native")
    assert on_native == on_uvicorn


# ---- robustness of the native server -----------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_client_leaving_mid_request_body_is_a_disconnect_to_the_app(
    framing: str,
) -> None:
    async with native() as hosted:
        conn = await Connection.open(hosted.port)
        if framing == "chunked":
            conn.write_head("POST", "/stream-in?id=gone", [("Transfer-Encoding", "chunked")])
            conn.writer.write(b"%x\r\n%s\r\n" % (200_000, b"x" * 200_000))
        else:
            conn.write_head("POST", "/stream-in?id=gone", [("Content-Length", "10000000")])
            conn.writer.write(b"x" * 200_000)
        await conn.writer.drain()
        await hosted.probe.wait("stream-in-reading:gone")
        await conn.close()
        # The app's receive() said http.disconnect (Starlette's ClientDisconnect).
        received = await hosted.probe.wait("stream-in-disconnected:gone")
        assert 0 < received <= 200_000
        answer = await request(hosted.port, "GET", "/json?x=1")
        assert answer.json()["double"] == 2


async def test_a_client_leaving_mid_stream_cancels_the_stream() -> None:
    async with native() as hosted:
        conn = await Connection.open(hosted.port)
        await conn.send("GET", "/ticks?id=gone")
        status, _ = await conn.head()
        assert status == 200
        assert b"tick 0" in await asyncio.wait_for(conn.reader.readuntil(b"tick 1"), TIMEOUT)
        await conn.close()
        # Starlette's StreamingResponse heard http.disconnect and cancelled the generator.
        assert await hosted.probe.wait("ticks-ended:gone") == "CancelledError"
        answer = await request(hosted.port, "GET", "/json?x=2")
        assert answer.json()["double"] == 4


async def test_a_body_over_max_body_bytes_gets_413_and_never_reaches_the_app() -> None:
    async with native(max_body_bytes=1024) as hosted:
        # Declared too large: refused before the app is called, the connection closed.
        async with connection(hosted.port) as conn:
            conn.write_head("POST", "/stream-in?id=declared", [("Content-Length", "1025")])
            answer = await conn.answer()
            assert (answer.status, answer.body) == (413, b"Request body too large")
            assert answer.header("connection") == "close"
            assert await conn.closed_by_server()
        # Chunked: refused once it passes the bound; the app saw at most the bound, then
        # http.disconnect.
        async with connection(hosted.port) as conn:
            # In one write: the server reads it all before it closes (unread bytes left in
            # its socket would make its close a reset, which may discard the 413).
            conn.write_head("POST", "/stream-in?id=chunked", [("Transfer-Encoding", "chunked")])
            conn.writer.write(b"3e8\r\n%s\r\n3e8\r\n%s\r\n0\r\n\r\n" % (b"a" * 1000, b"b" * 1000))
            answer = await conn.answer()
            assert (answer.status, answer.body) == (413, b"Request body too large")
            assert await conn.closed_by_server()
        assert await hosted.probe.wait("stream-in-disconnected:chunked") <= 1024
        # At the bound exactly: served, either way.
        exact = await request(hosted.port, "POST", "/stream-in?id=exact", body=b"c" * 1024)
        assert exact.json()["length"] == 1024
        pieces = [b"d" * 1000, b"e" * 24]
        exact = await request(hosted.port, "POST", "/stream-in?id=exact2", chunks=pieces)
        assert exact.json()["length"] == 1024
        # The app was called for every request but the one declared too large (whose 413
        # came before the requests above were even made).
        assert not hosted.probe.seen("stream-in-entered:declared")
        assert hosted.probe.seen("stream-in-entered:chunked")


async def test_an_app_too_slow_to_answer_gets_504_and_its_task_cancelled() -> None:
    # 2 s: short for the test, long for the other requests to be answered in on a loaded
    # machine.
    async with native(response_timeout=2.0) as hosted, connection(hosted.port) as conn:
        answer = await conn.request("GET", "/sleep?id=slow")
        assert answer.status == 504
        assert answer.header("content-type") == "text/plain; charset=utf-8"
        assert b"Gateway Timeout" in answer.body
        await hosted.probe.wait("sleep-cancelled:slow")
        # The connection stays usable; a streaming answer begun in time is not cut.
        assert (await conn.request("GET", "/json?x=3")).json()["double"] == 6
        stream = await conn.request("GET", "/stream-out")
        assert stream.body == b"".join(STREAM_CHUNKS)


async def test_a_failing_app_gets_500_and_the_connection_serves_on() -> None:
    async with native() as hosted:
        async with connection(hosted.port) as conn:
            # FastAPI's own 500, then the app raises to the server.
            boom = await conn.request("GET", "/boom")
            assert (boom.status, boom.body) == (500, b"Internal Server Error")
            assert (await conn.request("GET", "/json?x=4")).json()["double"] == 8
            # The app raised before answering: the server's 500.
            raw = await conn.request("GET", "/raw/raise-before-start")
            assert (raw.status, raw.body) == (500, b"Internal Server Error")
            assert raw.header("connection") is None
            assert (await conn.request("GET", "/json?x=5")).json()["double"] == 10
        # Raised mid-response: the response is cut short (the client must not take a
        # truncated body for a whole one), the server serves on.
        async with connection(hosted.port) as conn:
            await conn.send("GET", "/raw/raise-mid-body")
            status, headers = await conn.head()
            assert status == 200
            with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
                await conn.rest("GET", status, headers)
        assert (await request(hosted.port, "GET", "/json?x=6")).json()["double"] == 12


CLIENTS = 1000
REQUESTS_PER_CLIENT = 3


@pytest.mark.timeout(300)
async def test_a_thousand_concurrent_keep_alive_clients_are_all_answered() -> None:
    async with native() as hosted:
        opened = asyncio.Event()
        connected = 0

        async def one_client(n: int) -> list[int]:
            nonlocal connected
            async with connection(hosted.port) as conn:
                connected += 1
                if connected == CLIENTS:
                    opened.set()
                # All connections are open before any request: the server holds them all.
                await asyncio.wait_for(opened.wait(), 120)
                doubles = []
                for k in range(REQUESTS_PER_CLIENT):
                    answer = await conn.request("GET", f"/json?x={n * 10 + k}")
                    assert answer.status == 200, answer
                    doubles.append(answer.json()["double"])
                return doubles

        results = await asyncio.gather(*(one_client(n) for n in range(CLIENTS)))
        assert results == [
            [(n * 10 + k) * 2 for k in range(REQUESTS_PER_CLIENT)] for n in range(CLIENTS)
        ]


async def test_a_failing_lifespan_startup_refuses_to_listen() -> None:
    port = _free_port()
    manager = SubscriptionManager()
    try:
        with pytest.raises(LifespanError, match="database unreachable"):
            await manager.listen("127.0.0.1", port, app=create_failing_app())
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        # Nothing was left behind: the port takes a server that starts.
        probe = Probe()
        server = await manager.listen("127.0.0.1", port, app=create_app(probe))
        assert server.port == port
        assert (await request(port, "GET", "/state")).json() == {"key": "from the lifespan"}
    finally:
        await manager.shutdown(grace=5.0)
    assert probe.counts == {"lifespan-startup": 1, "lifespan-shutdown": 1}


async def test_graphql_over_http_and_subscriptions_share_one_port() -> None:
    manager = SubscriptionManager()
    manager.subscription("message", channel="room:{room}")
    async with native(create_graphql_app(manager), manager=manager) as hosted:
        port = hosted.port
        url = f"ws://127.0.0.1:{port}{manager.config.path}"
        async with client(url) as ws:
            assert (await ws.init())["type"] == "connection_ack"
            await ws.subscribe("s", 'subscription { message(room: "lobby") { text } }')
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)

            async def graphql(query: str, variables: dict[str, Any] | None = None) -> Any:
                body = json.dumps({"query": query, "variables": variables}).encode()
                answer = await request(port, "POST", manager.config.path, headers=[JSON], body=body)
                assert answer.status == 200, answer
                return answer.json()

            assert await graphql('{ hello(name: "http") }') == {"data": {"hello": "hello http"}}
            named = await graphql("query Hi($n: String) { hello(name: $n) }", {"n": "vars"})
            assert named == {"data": {"hello": "hello vars"}}
            posted = await graphql(
                'mutation Post($text: String!) { post(room: "lobby", text: $text) }',
                {"text": "one port"},
            )
            assert posted == {"data": {"post": "one port"}}
            assert await ws.recv() == {
                "id": "s",
                "type": "next",
                "payload": {"data": {"message": {"text": "one port"}}},
            }
            # The engine's own routes answer beside the app's.
            health = await request(port, "GET", "/healthz")
            assert health.json()["subscriptions"] == 1


# ---- leaving the interpreter with requests in flight -------------------------------------

HOSTING_APP = os.path.join(os.path.dirname(__file__), "hosting_app.py")


async def leave_with_requests_in_flight(mode: str) -> tuple[int | None, str, str]:
    """Runs ``hosting_app.py MODE`` (the server) under ``-X dev`` and ``hosting_app.py
    client PORT`` against it: the server's (exit code, stdout, stderr)."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        HOSTING_APP,
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    clients = None
    try:
        assert server.stdout is not None
        port = int(await asyncio.wait_for(server.stdout.readline(), 60))
        clients = await asyncio.create_subprocess_exec(
            sys.executable, HOSTING_APP, "client", str(port)
        )
        out, err = await asyncio.wait_for(server.communicate(), 120)
        # The clients end when the server's connections do.
        await asyncio.wait_for(clients.wait(), 60)
    finally:
        for process in (server, clients):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
    return server.returncode, out.decode(), err.decode()


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("mode", "code"), [("return", 0), ("sys-exit", 3), ("abandon-loop", 0)])
async def test_leaving_the_interpreter_with_requests_in_flight_never_crashes(
    mode: str, code: int
) -> None:
    # Several at once: what could go wrong is a matter of timing.
    runs = await asyncio.gather(*(leave_with_requests_in_flight(mode) for _ in range(4)))
    for returncode, out, err in runs:
        assert returncode == code, f"exit code {returncode}:\n{err}"
        assert out.splitlines() == ["requests in flight"], err
        if mode == "abandon-loop":
            # Abandoning a loop with tasks pending (the app's lifespan) is reported, as it
            # is for any program doing so; nothing else may be.
            err = ABANDONED_TASK.sub("", err)
        assert err == ""


ABANDONED_TASK = re.compile(r"Task was destroyed but it is pending!\n(?:.*\n)*?task: <Task .*\n")
