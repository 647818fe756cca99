"""Every transport (FastAPI, Starlette, plain ASGI under uvicorn, and the native server)
through real WebSocket clients: the protocol rules, auth, resolvers, projection, filters,
tenant isolation, many connections, disconnect cleanup and shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import client, hs256_token, serve, wait_for

from fraiseql_subscriptions import (
    AuthenticationError,
    Complete,
    JwtAuth,
    Principal,
    SubscriptionConfig,
    SubscriptionManager,
)

QUERY = 'subscription { message(room: "lobby") { id text } }'


def chat_manager(**kwargs: Any) -> SubscriptionManager:
    manager = SubscriptionManager(config=SubscriptionConfig.development(), **kwargs)
    manager.subscription("message", channel="room:{room}")
    return manager


async def test_subscribe_receive_complete(transport: str) -> None:
    manager = chat_manager()
    async with serve(transport, manager) as running, client(running.url) as c:
        assert await c.init() == {"type": "connection_ack"}
        await c.subscribe("sub-1", QUERY)
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
        await manager.publish("room:lobby", {"id": "1", "text": "hi", "secret": "x"})
        assert await c.recv() == {
            "id": "sub-1",
            "type": "next",
            "payload": {"data": {"message": {"id": "1", "text": "hi"}}},
        }
        await c.send({"type": "ping"})
        assert await c.recv() == {"type": "pong"}
        await c.send({"id": "sub-1", "type": "complete"})
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 0)
        await manager.publish("room:lobby", {"id": "2", "text": "gone"})
        await c.nothing_for()


async def test_protocol_errors_close_with_the_named_codes(transport: str) -> None:
    manager = chat_manager()
    async with serve(transport, manager) as running:
        async with client(running.url) as c:
            await c.subscribe("1", QUERY)  # before connection_init
            assert (await c.closed())[0] == 4401
        async with client(running.url) as c:
            await c.init()
            await c.send({"type": "nonsense"})
            assert (await c.closed())[0] == 4400
        async with client(running.url) as c:
            await c.init()
            await c.subscribe("same", QUERY)
            await c.subscribe("same", QUERY)
            code, reason = await c.closed()
            assert code == 4409
            assert "same" in reason
        async with client(running.url, subprotocols=["mqtt"]) as c:
            assert (await c.closed())[0] == 4406


async def test_invalid_subscription_gets_an_error_and_others_are_untouched(
    transport: str,
) -> None:
    manager = chat_manager()
    async with serve(transport, manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("bad", "subscription { nope }")
        error = await c.recv()
        assert error["type"] == "error"
        assert error["id"] == "bad"
        assert "nope" in error["payload"][0]["message"]
        await c.subscribe("good", QUERY)
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
        await manager.publish("room:lobby", {"id": "1", "text": "still here"})
        assert (await c.recv())["id"] == "good"


SCHEMA = """
type Author { name: String! email: String }
type Message { id: ID! text: String! author: Author }
type Query { ok: Boolean }
type Subscription { message(room: String!): Message }
"""


async def test_projection_aliases_nesting_typename(transport: str) -> None:
    manager = chat_manager(schema=SCHEMA)
    query = """subscription Chat($room: String!) {
        msg: message(room: $room) { __typename id author { name } body: text }
    }"""
    async with serve(transport, manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("p", query, {"room": "lobby"})
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
        await manager.publish(
            "room:lobby",
            {"id": "7", "text": "hello", "author": {"name": "ada", "email": "a@x"}, "n": 1},
        )
        payload = (await c.recv())["payload"]
        assert payload == {
            "data": {
                "msg": {
                    "__typename": "Message",  # from the schema
                    "id": "7",
                    "author": {"name": "ada"},
                    "body": "hello",
                }
            }
        }
        await c.subscribe("bad", 'subscription { message(room: "x") { id missing } }')
        refused = await c.recv()
        assert refused["type"] == "error"
        assert "missing" in refused["payload"][0]["message"]


async def test_resolver_transforms_skips_fails_and_completes(transport: str) -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development())
    calls: list[tuple[str, dict[str, Any]]] = []

    @manager.subscription("price", channel="prices:{symbol}")
    async def price(event: dict[str, Any], variables: dict[str, Any], ctx: Any) -> Any:
        calls.append((ctx.channel, variables))
        if event.get("skip"):
            return None
        if event.get("boom"):
            raise RuntimeError("the feed is broken")
        value = {"symbol": variables["symbol"], "cents": event["cents"], "up": event["cents"] > 100}
        if event.get("last"):
            return Complete(value)
        return value

    query = 'subscription { price(symbol: "ACME") { symbol cents up } }'
    async with serve(transport, manager) as running:
        async with client(running.url) as a, client(running.url) as b:
            for c in (a, b):
                await c.init()
                await c.subscribe("p", query)
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 2)
            await manager.publish("prices:ACME", {"cents": 150})
            for c in (a, b):
                assert (await c.recv())["payload"] == {
                    "data": {"price": {"symbol": "ACME", "cents": 150, "up": True}}
                }
            # One resolver call per group (field + variables), not per subscriber.
            assert calls == [("prices:ACME", {"symbol": "ACME"})]
            await manager.publish("prices:ACME", {"cents": 1, "skip": True})
            await manager.publish("prices:ACME", {"cents": 99, "last": True})
            for c in (a, b):
                assert (await c.recv())["payload"]["data"]["price"]["up"] is False
                assert await c.recv() == {"id": "p", "type": "complete"}
        async with client(running.url) as c, client(running.url) as other:
            await c.init()
            await other.init()
            await c.subscribe("p", query)
            await other.subscribe("q", 'subscription { price(symbol: "OTHER") { cents } }')
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 2)
            await manager.publish("prices:ACME", {"cents": 5, "boom": True})
            error = await c.recv()
            assert error["type"] == "error"
            assert error["payload"][0]["message"] == "the feed is broken"
            await manager.publish("prices:OTHER", {"cents": 5})
            assert (await other.recv())["payload"] == {"data": {"price": {"cents": 5}}}
            assert manager.get_metrics()["resolver_errors"] == 1


async def test_sync_resolver_and_filter(transport: str) -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development())

    @manager.subscription(
        "task",
        channel="tasks",
        filter={"path": "status", "op": "eq", "arg": "status"},
    )
    def task(event: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
        return {**event, "title": event["title"].upper()}

    async with serve(transport, manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("t", 'subscription { task(status: "done") { title status } }')
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
        await manager.publish("tasks", {"title": "draft", "status": "open"})
        await manager.publish("tasks", {"title": "ship", "status": "done"})
        assert (await c.recv())["payload"] == {
            "data": {"task": {"title": "SHIP", "status": "done"}}
        }


async def test_auth_accepts_refuses_and_isolates_tenants(transport: str) -> None:
    tokens = {
        "alice": Principal(user_id="alice", tenant_id="acme", roles=["admin"]),
        "bob": Principal(user_id="bob", tenant_id="globex"),
    }
    connected: list[str | None] = []

    async def auth(payload: dict[str, Any] | None) -> Principal:
        token = (payload or {}).get("token")
        if token not in tokens:
            raise AuthenticationError("Forbidden: unknown token")
        return tokens[token]

    manager = chat_manager(auth=auth)
    manager.subscription("audit", channel="audit", roles=["admin"])

    @manager.on_connect
    def remember(payload: dict[str, Any] | None, principal: dict[str, Any]) -> None:
        connected.append(principal["user_id"])

    async with serve(transport, manager) as running:
        async with client(running.url) as c:
            await c.send({"type": "connection_init", "payload": {"token": "mallory"}})
            assert await c.closed() == (4403, "Forbidden: unknown token")
        async with client(running.url) as alice, client(running.url) as bob:
            assert (await alice.init({"token": "alice"}))["type"] == "connection_ack"
            assert (await bob.init({"token": "bob"}))["type"] == "connection_ack"
            assert sorted(c or "" for c in connected) == ["alice", "bob"]
            await bob.subscribe("a", "subscription { audit }")
            refused = await bob.recv()
            assert refused["type"] == "error"
            assert "Not authorized" in refused["payload"][0]["message"]
            await alice.subscribe("a", "subscription { audit }")
            for c in (alice, bob):
                await c.subscribe("m", QUERY)
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 3)
            await manager.publish(
                "room:lobby", {"id": "g", "text": "globex only"}, tenant_id="globex"
            )
            assert (await bob.recv())["payload"]["data"]["message"]["id"] == "g"
            await manager.publish("audit", "entry", tenant_id="acme")
            assert (await alice.recv())["payload"] == {"data": {"audit": "entry"}}
            await manager.publish(
                "room:lobby", {"id": "u", "text": "for alice"}, audience=["alice"]
            )
            assert (await alice.recv())["payload"]["data"]["message"]["id"] == "u"
            await bob.nothing_for()


async def test_jwt_auth_verified_in_rust(transport: str) -> None:
    import time

    secret = "s3cret-for-tests-only"

    def token(claims: dict[str, Any]) -> str:
        return hs256_token(secret, claims)

    manager = chat_manager(auth=JwtAuth(secret=secret))
    good = token({"sub": "ada", "exp": int(time.time()) + 600})
    forged = token({"sub": "ada", "exp": int(time.time()) + 600})[:-4] + "AAAA"
    async with serve(transport, manager) as running:
        async with client(running.url) as c:
            assert (await c.init({"token": good}))["type"] == "connection_ack"
        async with client(running.url) as c:
            await c.send({"type": "connection_init", "payload": {"token": forged}})
            assert (await c.closed())[0] == 4403


async def test_many_connections_and_disconnect_frees_everything(transport: str) -> None:
    manager = chat_manager()
    n = 100
    async with serve(transport, manager) as running:
        clients = [client(running.url) for _ in range(n)]
        opened = [await cm.__aenter__() for cm in clients]
        try:
            for i, c in enumerate(opened):
                await c.init()
                await c.subscribe(f"s{i}", QUERY)
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == n)
            await manager.publish("room:lobby", {"id": "all", "text": "everyone"})
            for i, c in enumerate(opened):
                message = await c.recv()
                assert message["id"] == f"s{i}"
        finally:
            for cm in clients:
                await cm.__aexit__(None, None, None)
        # The server's open-connection gauge falls when each connection's task has ended,
        # just after the engine forgot the connection: wait for both.
        await wait_for(
            lambda: manager.get_metrics()["active_subscriptions"] == 0
            and manager.get_metrics()["connections"] == 0
            and manager.get_metrics()["open_connections"] == 0
        )


async def test_client_vanishing_mid_stream_harms_nobody(transport: str) -> None:
    manager = chat_manager()
    async with serve(transport, manager) as running, client(running.url) as stays:
        await stays.init()
        await stays.subscribe("s", QUERY)
        async with client(running.url) as leaves:
            await leaves.init()
            await leaves.subscribe("s", QUERY)
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 2)
            for i in range(20):
                await manager.publish("room:lobby", {"id": str(i), "text": "x"})
            transport_ = leaves.ws.transport
            transport_.abort()
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
        await manager.publish("room:lobby", {"id": "after", "text": "x"})
        ids = [(await stays.recv())["payload"]["data"]["message"]["id"] for _ in range(21)]
        assert ids == [str(i) for i in range(20)] + ["after"]


async def test_shutdown_closes_clients_and_frees_the_engine(transport: str) -> None:
    manager = chat_manager()
    async with serve(transport, manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("s", QUERY)
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
        if transport == "native":
            assert await manager.shutdown(grace=5.0)
            assert (await c.closed())[0] == 1001
        else:
            running.stop()  # uvicorn's shutdown runs the app's lifespan shutdown
            code, _ = await c.closed()
            assert code in (1001, 1012)
        await wait_for(lambda: not manager.started)


@pytest.mark.parametrize("kind", ["fastapi", "native"])
async def test_gql_client_both_protocols(kind: str) -> None:
    from gql import Client as GqlClient
    from gql import gql
    from gql.transport.websockets import WebsocketsTransport

    manager = chat_manager()
    async with serve(kind, manager) as running:
        for subprotocol in (
            WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
            WebsocketsTransport.APOLLO_SUBPROTOCOL,
        ):
            transport = WebsocketsTransport(url=running.url, subprotocols=[subprotocol])
            async with GqlClient(transport=transport) as session:
                received: list[Any] = []

                async def consume(session: Any = session, received: list[Any] = received) -> None:
                    async for result in session.subscribe(gql(QUERY)):
                        received.append(result)
                        if len(received) == 2:
                            return

                task = asyncio.ensure_future(consume())
                await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
                await manager.publish("room:lobby", {"id": "1", "text": "one"})
                await manager.publish("room:lobby", {"id": "2", "text": "two"})
                await asyncio.wait_for(task, 10)
                assert [r["message"]["id"] for r in received] == ["1", "2"]
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 0)


async def test_async_generator_subscriptions(transport: str) -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development())
    closed: list[int] = []

    @manager.subscription("countdown")
    async def countdown(variables: dict[str, Any], ctx: dict[str, Any]) -> Any:
        for n in range(variables["start"], 0, -1):
            yield {"n": n, "secret": "not selected", "field": ctx["field"]}
            await asyncio.sleep(0)

    @manager.subscription("forever")
    async def forever(variables: dict[str, Any]) -> Any:
        try:
            n = 0
            while True:
                n += 1
                yield n
                await asyncio.sleep(0.01)
        finally:
            closed.append(n)

    @manager.subscription("broken")
    async def broken(variables: dict[str, Any]) -> Any:
        yield 1
        raise RuntimeError("the stream broke")

    async with serve(transport, manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("c", "subscription { countdown(start: 3) { n field } }")
        for n in (3, 2, 1):
            assert await c.recv() == {
                "id": "c",
                "type": "next",
                "payload": {"data": {"countdown": {"n": n, "field": "countdown"}}},
            }
        assert await c.recv() == {"id": "c", "type": "complete"}
        await c.subscribe("b", "subscription { broken }")
        assert (await c.recv())["payload"] == {"data": {"broken": 1}}
        error = await c.recv()
        assert error["type"] == "error"
        assert error["payload"][0]["message"] == "the stream broke"
        await c.subscribe("f", "subscription { forever }")
        assert (await c.recv())["payload"] == {"data": {"forever": 1}}
        await c.send({"id": "f", "type": "complete"})
        await wait_for(lambda: bool(closed))  # the client's complete closed the generator
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 0)


async def test_lifecycle_hooks(transport: str) -> None:
    seen: list[tuple[Any, ...]] = []

    async def auth(payload: dict[str, Any] | None) -> Principal:
        return Principal(user_id=(payload or {}).get("user"))

    manager = chat_manager(auth=auth)

    @manager.on_subscribe
    def subscribed(principal: dict[str, Any], id: str, request: dict[str, Any]) -> None:
        seen.append(("subscribe", principal["user_id"], id, request["variables"]))

    @manager.on_complete
    async def completed(principal: dict[str, Any], id: str, how: str) -> None:
        seen.append(("complete", principal["user_id"], id, how))

    @manager.on_disconnect
    def disconnected(principal: dict[str, Any]) -> None:
        seen.append(("disconnect", principal["user_id"]))

    query = "subscription ($room: String!) { message(room: $room) { id } }"
    async with serve(transport, manager) as running:
        async with client(running.url) as c:
            await c.init({"user": "ada"})
            await c.subscribe("one", query, {"room": "a"})
            await c.subscribe("two", query, {"room": "b"})
            await c.subscribe("bad", "subscription { nope }")
            assert (await c.recv())["type"] == "error"
            await wait_for(lambda: len(seen) == 2)
            await c.send({"id": "one", "type": "complete"})
            await wait_for(lambda: len(seen) == 3)
            await manager.publish("room:b", {"id": "last"}, final=True)
            assert (await c.recv())["type"] == "next"
            assert await c.recv() == {"id": "two", "type": "complete"}
            await wait_for(lambda: len(seen) == 4)
        await wait_for(lambda: len(seen) == 5)
    assert seen == [
        ("subscribe", "ada", "one", {"room": "a"}),
        ("subscribe", "ada", "two", {"room": "b"}),
        ("complete", "ada", "one", "client"),
        ("complete", "ada", "two", "completed"),
        ("disconnect", "ada"),
    ]
