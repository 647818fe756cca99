"""Every example under examples/python runs and serves subscriptions to a real client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from conftest import _free_port, client, reachable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python"
QUERY = 'subscription { message(room: "lobby") { id author text } }'


@contextlib.asynccontextmanager
async def running(*args: str) -> AsyncIterator[int]:
    port = _free_port()
    argv = [a.replace("{port}", str(port)) for a in args]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(300):
            if await reachable(port):
                break
            if process.returncode is not None:
                raise AssertionError(f"{argv} exited with {process.returncode}")
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{argv} never listened on {port}")
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await asyncio.wait_for(process.wait(), 15)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def post(port: int, body: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/messages",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


async def test_the_python_demo_delivers_posted_messages() -> None:
    async with running(str(EXAMPLES / "chat_fastapi.py"), "--port", "{port}") as port:
        async with client(f"ws://127.0.0.1:{port}/graphql") as c:
            await c.init()
            await c.subscribe("m", QUERY)
            message = {"room": "lobby", "author": "ada", "text": "  hello  "}
            for _ in range(100):  # until the subscription is live
                assert await asyncio.to_thread(post, port, message) == 202
                with contextlib.suppress(TimeoutError):
                    frame = await c.recv(timeout=0.2)
                    while frame["payload"]["data"]["message"]["author"] == "bot":
                        frame = await c.recv()
                    assert frame["payload"]["data"]["message"]["text"] == "hello"
                    break
            else:
                raise AssertionError("no message arrived")
        page = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/")
        assert b"graphql-transport-ws" in page


async def ack_and_pong(url: str) -> None:
    async with client(url) as c:
        assert await c.init() == {"type": "connection_ack"}
        await c.subscribe("m", QUERY)
        await c.send({"type": "ping"})
        assert await c.recv() == {"type": "pong"}  # the subscribe was accepted silently


async def test_native_server_example() -> None:
    async with running(str(EXAMPLES / "native_server.py"), "{port}") as port:
        url = f"ws://127.0.0.1:{port}/graphql"
        await ack_and_pong(url)
        async with client(url) as c:
            await c.init({"user": "ada"})
            await c.subscribe("t", "subscription { tick }")
            assert isinstance((await c.recv(timeout=5))["payload"]["data"]["tick"], int)


async def test_asgi_and_starlette_examples_under_uvicorn() -> None:
    for module in ("examples.python.asgi_app:app", "examples.python.starlette_app:app"):
        args = ("-m", "uvicorn", module, "--port", "{port}", "--log-level", "warning")
        async with running(*args) as port:
            await ack_and_pong(f"ws://127.0.0.1:{port}/graphql")


async def test_websockets_library_example() -> None:
    async with running(str(EXAMPLES / "websockets_server.py"), "{port}") as port:
        await ack_and_pong(f"ws://127.0.0.1:{port}")
