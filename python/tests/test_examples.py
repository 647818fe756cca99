"""Every example under examples/python runs and serves subscriptions to a real client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from conftest import _free_port, client, hs256_token, reachable

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


def post(port: int, body: dict[str, str], headers: dict[str, str] | None = None) -> int:
    return post_with_headers(port, body, headers)[0]


def post_with_headers(
    port: int, body: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    """POST /messages: the status and the response headers."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/messages",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status), {k.lower(): v for k, v in response.headers.items()}


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


async def test_feed_example_delivers_one_symbol_in_feed_order() -> None:
    args = (str(EXAMPLES / "feed_fastapi.py"), "--port", "{port}", "--interval", "0.005")
    async with running(*args) as port, client(f"ws://127.0.0.1:{port}/graphql") as c:
        await c.init()
        await c.subscribe("p", 'subscription { price(symbol: "GLOBEX") { symbol seq } }')
        prices = [(await c.recv())["payload"]["data"]["price"] for _ in range(50)]
    assert {p["symbol"] for p in prices} == {"GLOBEX"}
    seqs = [p["seq"] for p in prices]
    # One item per feed step, none skipped, none repeated, in order.
    assert seqs == list(range(seqs[0], seqs[0] + 50))


async def test_fastapi_jwt_example_verifies_tokens_roles_and_tenants() -> None:
    import os
    import time

    secret = "example-secret"
    args = ("-m", "uvicorn", "examples.python.fastapi_jwt:app", "--port", "{port}")
    os.environ["FRAISEQL_JWT_SECRET"] = secret
    try:
        async with running(*args, "--log-level", "warning") as port:
            url = f"ws://127.0.0.1:{port}/graphql"
            exp = int(time.time()) + 600

            def token(**claims: object) -> str:
                return hs256_token(secret, {"iss": "fraiseql-example", "exp": exp, **claims})

            # No token, a forged one, the wrong issuer: 4403.
            for payload in (
                None,
                {"token": token(sub="ada")[:-3] + "AAA"},
                {"token": hs256_token(secret, {"iss": "other", "exp": exp, "sub": "ada"})},
            ):
                async with client(url) as c:
                    await c.send({"type": "connection_init", "payload": payload})
                    assert (await c.closed())[0] == 4403, payload
            ada_token = token(sub="ada", tenant_id="acme")
            mod_token = token(sub="mo", tenant_id="acme", roles=["moderator"])
            async with client(url) as ada, client(url) as other, client(url) as mod:
                assert (await ada.init({"token": ada_token}))["type"] == "connection_ack"
                globex = {"Authorization": "Bearer " + token(sub="gus", tenant_id="globex")}
                assert (await other.init(globex))["type"] == "connection_ack"
                assert (await mod.init({"token": mod_token}))["type"] == "connection_ack"
                # The moderation field needs the role.
                await ada.subscribe("f", "subscription { flagged { text } }")
                refused = await ada.recv()
                assert refused["type"] == "error"
                assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"
                await mod.subscribe("f", "subscription { flagged { text } }")
                await mod.send({"type": "ping"})
                assert await mod.recv() == {"type": "pong"}
                room = 'subscription { message(room: "lobby") { text } }'
                await ada.subscribe("m", room)
                await other.subscribe("m", room)
                for c in (ada, other):
                    await c.send({"type": "ping"})
                    assert await c.recv() == {"type": "pong"}
                body = {"room": "lobby", "text": "acme only", "tenant": "acme"}
                assert await asyncio.to_thread(post, port, body, {"x-api-key": "dev-key"}) == 202
                frame = await ada.recv()
                assert frame["payload"] == {"data": {"message": {"text": "acme only"}}}
                await other.nothing_for()
    finally:
        del os.environ["FRAISEQL_JWT_SECRET"]


async def test_starlette_middleware_example() -> None:
    args = ("-m", "uvicorn", "examples.python.starlette_middleware:app", "--port", "{port}")
    async with running(*args, "--log-level", "warning") as port:
        url = f"ws://127.0.0.1:{port}/graphql"
        async with client(url) as c:
            await c.send({"type": "connection_init", "payload": {"apiKey": "nope"}})
            assert await c.closed() == (4403, "Forbidden: unknown API key")
        async with client(url) as c:
            assert (await c.init({"apiKey": "key-ada"}))["type"] == "connection_ack"
            await c.subscribe("m", 'subscription { message(room: "lobby") { text } }')
            await c.send({"type": "ping"})
            assert await c.recv() == {"type": "pong"}
            body = {"room": "lobby", "text": "through the middleware"}
            origin = {"origin": "http://localhost:3000"}
            status, headers = await asyncio.to_thread(post_with_headers, port, body, origin)
            assert status == 202
            assert headers["x-request-id"]
            assert headers["access-control-allow-origin"] == "http://localhost:3000"
            frame = await c.recv()
            assert frame["payload"] == {"data": {"message": {"text": "through the middleware"}}}


async def post_and_read_back(url: str) -> None:
    """Over one socket: a subscription to the room, a mutation that posts to it (its
    result, and the event it publishes), then a query of the room's history."""
    async with client(url) as c:
        assert (await c.init({"user": "ada"}))["type"] == "connection_ack"
        await c.subscribe("sub", 'subscription { message(room: "lobby") { text author } }')
        await c.subscribe("post", 'mutation { post(room: "lobby", text: "hi") { text author } }')
        frames = [await c.recv() for _ in range(3)]
        by_id: dict[str, list[dict[str, object]]] = {}
        for frame in frames:
            by_id.setdefault(str(frame["id"]), []).append(frame)
        assert [f["type"] for f in by_id["post"]] == ["next", "complete"], frames
        assert by_id["post"][0]["payload"] == {"data": {"post": {"text": "hi", "author": "ada"}}}
        assert by_id["sub"] == [
            {
                "id": "sub",
                "type": "next",
                "payload": {"data": {"message": {"text": "hi", "author": "ada"}}},
            }
        ]
        await c.subscribe("history", '{ messages(room: "lobby") { text } }')
        assert await c.recv() == {
            "id": "history",
            "type": "next",
            "payload": {"data": {"messages": [{"text": "hi"}]}},
        }
        assert await c.recv() == {"id": "history", "type": "complete"}


async def test_graphql_core_operations_example_on_the_native_server() -> None:
    async with running(str(EXAMPLES / "graphql_operations.py"), "{port}") as port:
        await post_and_read_back(f"ws://127.0.0.1:{port}/graphql")


async def test_strawberry_operations_example_under_uvicorn() -> None:
    module = "examples.python.strawberry_operations:app"
    args = ("-m", "uvicorn", module, "--port", "{port}", "--log-level", "warning")
    async with running(*args) as port:
        await post_and_read_back(f"ws://127.0.0.1:{port}/graphql")
