"""Queries and mutations on the socket (`SubscriptionManager(execute=...)`): one `next`
then `complete` per operation on every transport and both protocols, with real clients
(raw graphql-transport-ws, legacy graphql-ws, gql) and a graphql-core schema."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from conftest import client, serve, wait_for
from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLInt,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    graphql,
)

from fraiseql_subscriptions import (
    EventBusConfig,
    OperationContext,
    SubscriptionConfig,
    SubscriptionManager,
)

SUBSCRIPTION = 'subscription { message(room: "lobby") { text } }'


def _hello(_root: Any, info: Any, name: str = "world") -> str:
    return f"hello {name}"


def _whoami(_root: Any, info: Any) -> str | None:
    ctx: OperationContext = info.context
    return ctx.principal.user_id


def _boom(_root: Any, info: Any) -> str:
    raise ValueError("boom failed")


def _add(_root: Any, info: Any, a: int, b: int) -> int:
    return a + b


SCHEMA = GraphQLSchema(
    query=GraphQLObjectType(
        "Query",
        {
            "hello": GraphQLField(
                GraphQLString, args={"name": GraphQLArgument(GraphQLString)}, resolve=_hello
            ),
            "whoami": GraphQLField(GraphQLString, resolve=_whoami),
            "boom": GraphQLField(GraphQLString, resolve=_boom),
        },
    ),
    mutation=GraphQLObjectType(
        "Mutation",
        {
            "add": GraphQLField(
                GraphQLInt,
                args={
                    "a": GraphQLArgument(GraphQLNonNull(GraphQLInt)),
                    "b": GraphQLArgument(GraphQLNonNull(GraphQLInt)),
                },
                resolve=_add,
            )
        },
    ),
)


async def execute(
    query: str, variables: dict[str, Any] | None, operation_name: str | None, ctx: OperationContext
) -> Any:
    return await graphql(
        SCHEMA,
        query,
        variable_values=variables,
        operation_name=operation_name,
        context_value=ctx,
    )


def manager_with(execute: Any = execute, **kwargs: Any) -> SubscriptionManager:
    async def auth(payload: dict[str, Any] | None) -> dict[str, Any]:
        return {"user_id": (payload or {}).get("user", "anon")}

    manager = SubscriptionManager(
        bus=EventBusConfig.memory(),
        config=SubscriptionConfig.development(),
        auth=auth,
        execute=execute,
        **kwargs,
    )
    manager.subscription("message", channel="room:{room}")
    return manager


async def test_queries_and_mutations_answer_next_then_complete(transport: str) -> None:
    manager = manager_with()
    async with serve(transport, manager) as running, client(running.url) as c:
        assert (await c.init({"user": "ann"}))["type"] == "connection_ack"
        await c.subscribe("q1", 'query Hi { hello(name: "ann") whoami }')
        assert await c.recv() == {
            "id": "q1",
            "type": "next",
            "payload": {"data": {"hello": "hello ann", "whoami": "ann"}},
        }
        assert await c.recv() == {"id": "q1", "type": "complete"}
        await c.subscribe(
            "m1", "mutation Add($a: Int!, $b: Int!) { add(a: $a, b: $b) }", {"a": 2, "b": 3}
        )
        assert await c.recv() == {"id": "m1", "type": "next", "payload": {"data": {"add": 5}}}
        assert await c.recv() == {"id": "m1", "type": "complete"}
        # The id may be used again once the operation completed.
        await c.subscribe("q1", "{ hello }")
        assert (await c.recv())["payload"] == {"data": {"hello": "hello world"}}
        assert (await c.recv())["type"] == "complete"


async def test_execute_sees_the_payload_extensions(transport: str) -> None:
    seen: list[dict[str, Any] | None] = []

    async def recording(
        query: str, variables: Any, operation_name: str | None, ctx: OperationContext
    ) -> Any:
        seen.append(ctx.extensions)
        return {"data": {"hello": "hi"}}

    manager = manager_with(recording)
    async with serve(transport, manager) as running, client(running.url) as c:
        await c.init()
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}
        payload = {"query": "{ hello }", "extensions": extensions}
        await c.send({"id": "q1", "type": "subscribe", "payload": payload})
        assert (await c.recv())["payload"] == {"data": {"hello": "hi"}}
        assert (await c.recv())["type"] == "complete"
        await c.subscribe("q2", "{ hello }")
        assert (await c.recv())["type"] == "next"
        assert (await c.recv())["type"] == "complete"
    assert seen == [extensions, None]


async def test_request_errors_are_an_error_and_field_errors_ride_in_next(transport: str) -> None:
    manager = manager_with()
    async with serve(transport, manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("bad", "{ nope }")
        refused = await c.recv()
        assert refused["id"] == "bad", refused
        assert refused["type"] == "error", refused
        assert "Cannot query field 'nope'" in refused["payload"][0]["message"]
        await c.subscribe("partial", "{ hello boom }")
        partial = await c.recv()
        assert partial["type"] == "next", partial
        assert partial["payload"]["data"] == {"hello": "hello world", "boom": None}
        assert partial["payload"]["errors"][0]["message"] == "boom failed"
        assert partial["payload"]["errors"][0]["path"] == ["boom"]
        assert await c.recv() == {"id": "partial", "type": "complete"}


async def test_subscriptions_and_operations_share_a_connection() -> None:
    release = asyncio.Event()

    async def slow(query: str, variables: Any, operation_name: Any, ctx: Any) -> Any:
        await release.wait()
        return {"data": {"slow": True}}

    manager = manager_with(execute=slow)
    async with serve("native", manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("op", "{ slow }")
        await c.subscribe("sub", SUBSCRIPTION)
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
        await manager.publish("room:lobby", {"text": "while the query runs"})
        assert await c.recv() == {
            "id": "sub",
            "type": "next",
            "payload": {"data": {"message": {"text": "while the query runs"}}},
        }
        release.set()
        assert await c.recv() == {"id": "op", "type": "next", "payload": {"data": {"slow": True}}}
        assert await c.recv() == {"id": "op", "type": "complete"}


async def test_complete_from_the_client_cancels_the_result() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(query: str, variables: Any, operation_name: Any, ctx: Any) -> Any:
        if "slow" in query:
            started.set()
            await release.wait()
        return {"data": {"q": query}}

    manager = manager_with(execute=slow)
    async with serve("native", manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("op", "{ slow }")
        await asyncio.wait_for(started.wait(), 10)
        await c.send({"id": "op", "type": "complete"})
        # The server handles a connection's messages in order: its pong means the complete
        # was handled, so the result the operation is released to make now is not sent.
        await c.send({"type": "ping"})
        assert await c.recv() == {"type": "pong"}
        release.set()
        # The next operation's answer is the next frame: nothing came for the cancelled one.
        await c.subscribe("after", "{ fast }")
        after = await c.recv()
        assert after == {"id": "after", "type": "next", "payload": {"data": {"q": "{ fast }"}}}


async def test_an_executor_that_raises_gives_an_internal_error_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(query: str, variables: Any, operation_name: Any, ctx: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    manager = manager_with(execute=broken)
    with caplog.at_level(logging.ERROR, logger="fraiseql_subscriptions"):
        async with serve("native", manager) as running, client(running.url) as c:
            await c.init()
            await c.subscribe("op", "query Q { x }")
            error = await c.recv()
            assert error["type"] == "error"
            internal = {"message": "Internal server error"}
            internal["extensions"] = {"code": "INTERNAL_SERVER_ERROR"}
            assert error["payload"] == [internal]
            # The connection goes on.
            await c.subscribe("sub", SUBSCRIPTION)
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
    assert "execute failed on query query Q { x }" in caplog.text
    assert "hunter2" in caplog.text  # in the log, never sent to the client


async def test_a_result_that_is_not_a_response_is_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = manager_with(execute=lambda *args: 42)
    with caplog.at_level(logging.ERROR, logger="fraiseql_subscriptions"):
        async with serve("native", manager) as running, client(running.url) as c:
            await c.init()
            await c.subscribe("op", "{ x }")
            assert (await c.recv())["payload"][0]["message"] == "Internal server error"
    assert "execute must return a GraphQL response" in caplog.text


async def test_without_execute_a_query_is_refused_with_how_to_serve_it() -> None:
    manager = manager_with(execute=None)
    async with serve("native", manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("op", "{ hello }")
        error = await c.recv()
        assert error["type"] == "error"
        assert "only subscriptions are served" in error["payload"][0]["message"]


def test_execute_must_be_callable() -> None:
    with pytest.raises(TypeError, match="execute must be a callable"):
        SubscriptionManager(execute="graphql")  # type: ignore[arg-type]


async def recv_skipping_keepalive(c: Any) -> dict[str, Any]:
    """The next legacy graphql-ws frame other than the server's keep-alive (`ka`)."""
    while True:
        message: dict[str, Any] = await c.recv()
        if message["type"] != "ka":
            return message


async def test_legacy_graphql_ws_gets_data_then_complete() -> None:
    manager = manager_with()
    async with serve("native", manager) as running, client(running.url, ["graphql-ws"]) as c:
        await c.send({"type": "connection_init"})
        assert (await c.recv())["type"] == "connection_ack"
        await c.send({"id": "1", "type": "start", "payload": {"query": "{ hello }"}})
        assert await recv_skipping_keepalive(c) == {
            "id": "1",
            "type": "data",
            "payload": {"data": {"hello": "hello world"}},
        }
        assert await recv_skipping_keepalive(c) == {"id": "1", "type": "complete"}


@pytest.mark.parametrize("kind", ["fastapi", "native"])
async def test_gql_executes_queries_and_mutations_over_both_protocols(kind: str) -> None:
    from gql import Client as GqlClient
    from gql import gql
    from gql.transport.websockets import WebsocketsTransport

    manager = manager_with()
    async with serve(kind, manager) as running:
        for subprotocol in (
            WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
            WebsocketsTransport.APOLLO_SUBPROTOCOL,
        ):
            transport = WebsocketsTransport(
                url=running.url, subprotocols=[subprotocol], init_payload={"user": "gql"}
            )
            async with GqlClient(transport=transport) as session:
                result = await session.execute(gql('{ hello(name: "gql") whoami }'))
                assert result == {"hello": "hello gql", "whoami": "gql"}
                mutation = gql("mutation ($a: Int!) { add(a: $a, b: 40) }")
                mutation.variable_values = {"a": 2}
                added = await session.execute(mutation)
                assert added == {"add": 42}


async def test_max_id_bytes_reaches_every_transport(transport: str) -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development(max_id_bytes=8))
    manager.subscription("message", channel="room:{room}")
    async with serve(transport, manager) as running, client(running.url) as c:
        await c.init()
        await c.subscribe("12345678", SUBSCRIPTION)
        await c.subscribe("123456789", SUBSCRIPTION)
        code, reason = await c.closed()
        assert code == 4400
        assert reason == "Invalid message: subscription id is 9 bytes, the limit is 8"
