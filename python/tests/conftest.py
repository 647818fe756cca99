"""Fixtures: real servers (uvicorn serving FastAPI, Starlette and plain ASGI apps, and the
native Rust server) on free ports, and a small graphql-transport-ws client on the
``websockets`` library."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from fraiseql_subscriptions import SubscriptionManager

TRANSPORTS = ["fastapi", "starlette", "asgi", "native"]


@dataclass
class Running:
    """A server serving a manager."""

    url: str
    manager: SubscriptionManager
    stop: Callable[[], Any]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_app(kind: str, manager: SubscriptionManager) -> Any:
    """The ASGI app of `kind` serving `manager` at /graphql."""
    if kind == "fastapi":
        from fastapi import FastAPI

        from fraiseql_subscriptions.integrations.fastapi import SubscriptionRouterFactory

        app = FastAPI(lifespan=manager.lifespan)
        app.include_router(SubscriptionRouterFactory.create(manager))
        return app
    if kind == "starlette":
        from starlette.applications import Starlette

        from fraiseql_subscriptions.integrations.starlette import create_subscription_app

        app = Starlette(lifespan=manager.lifespan)
        create_subscription_app(app, manager)
        return app
    if kind == "asgi":
        from fraiseql_subscriptions.integrations.asgi import SubscriptionASGIApp

        return SubscriptionASGIApp(manager)
    raise ValueError(kind)


@contextlib.asynccontextmanager
async def serve(kind: str, manager: SubscriptionManager) -> AsyncIterator[Running]:
    """Serves `manager` with the transport `kind` on a free port until the block ends."""
    if kind == "native":
        server = await manager.listen("127.0.0.1", 0)
        try:
            yield Running(f"ws://127.0.0.1:{server.port}/graphql", manager, server.stop)
        finally:
            server.stop()
            await manager.shutdown(grace=2.0)
        return
    async with serve_app(build_app(kind, manager), manager) as running:
        yield running


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, manager: SubscriptionManager, ws: str = "websockets-sansio"
) -> AsyncIterator[Running]:
    """Serves the ASGI `app` with uvicorn on a free port until the block ends (`ws="none"`:
    a uvicorn that cannot speak WebSocket)."""
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws=ws,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    assert server.started, "uvicorn did not start"

    def stop() -> None:
        server.should_exit = True

    try:
        yield Running(f"ws://127.0.0.1:{port}/graphql", manager, stop)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Client:
    """A graphql-transport-ws client on one real WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), "graphql-transport-ws frames are text"
        message: dict[str, Any] = json.loads(raw)
        return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        return await self.recv()

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.send({"id": id, "type": "subscribe", "payload": payload})

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Waits for the server's close; its code and reason."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as closed:
            frame = closed.rcvd
            return (frame.code if frame else None, frame.reason if frame else "")

    async def nothing_for(self, seconds: float = 0.3) -> None:
        """Asserts no frame arrives within `seconds` (for 'not delivered' checks; a late
        frame fails the test, an early one is never missed)."""
        with contextlib.suppress(TimeoutError):
            raw = await asyncio.wait_for(self.ws.recv(), seconds)
            raise AssertionError(f"unexpected frame: {raw}")


@contextlib.asynccontextmanager
async def client(url: str, subprotocols: list[str] | None = None) -> AsyncIterator[Client]:
    protocols = ["graphql-transport-ws"] if subprotocols is None else subprotocols
    async with connect(url, subprotocols=protocols, open_timeout=10) as ws:  # type: ignore[arg-type]
        yield Client(ws)


def backend_unavailable(name: str, how: str) -> None:
    """Skips (outside CI) or fails (CI=true) a test whose backend is unreachable."""
    message = f"{name} is not reachable on 127.0.0.1; start it with: {how}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def reachable(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Waits until `predicate()` holds (state that settles asynchronously)."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One HTTP/1.1 GET on a fresh connection: the status and the body."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 10)
    lines = [f"GET /{path} HTTP/1.1", f"Host: {hostport}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        chunks, data = [], body
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            chunks.append(data[:size])
            data = data[size + 2 :]
        body = b"".join(chunks)
    return status, body.decode()


def hs256_token(secret: str, claims: dict[str, Any]) -> str:
    """A JWT signed with HS256 (what a client's identity provider would hand it)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256)
    return f"{header}.{body}.{b64(signature.digest())}"
