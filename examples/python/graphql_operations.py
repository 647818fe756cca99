"""Queries, mutations and subscriptions on one socket: graphql-core executes the queries and
mutations (``execute=``), the Rust engine serves the subscriptions, on the native server.

A client (Apollo Client or urql told to use the socket for everything, graphql-ws's
``createClient``, ``gql``) sends ``{ messages(room: "lobby") { text } }`` or
``mutation { post(room: "lobby", text: "hi") { text } }`` over the same graphql-transport-ws
connection as ``subscription { message(room: "lobby") { text author } }``; each query or
mutation gets one ``next`` with its result, then ``complete``. The mutation publishes, so
subscribers of the room see the message.

    python examples/python/graphql_operations.py [PORT]   # ws://127.0.0.1:8000/graphql
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import defaultdict
from typing import Any

from fraiseql_subscriptions import OperationContext, Principal, SubscriptionManager
from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    graphql,
)

#: The rooms' messages (a real app reads and writes its database here).
HISTORY: dict[str, list[dict[str, Any]]] = defaultdict(list)


async def auth(payload: dict[str, Any] | None) -> Principal:
    """Accepts everyone, named by the payload's "user" (a real app verifies a token)."""
    return Principal(user_id=(payload or {}).get("user", "anonymous"))


async def execute(
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    ctx: OperationContext,
) -> Any:
    """Runs a query or mutation with graphql-core; `ctx` (who sent it) is the context value
    the resolvers see as `info.context`."""
    return await graphql(
        SCHEMA,
        query,
        variable_values=variables,
        operation_name=operation_name,
        context_value=ctx,
    )


manager = SubscriptionManager(auth=auth, execute=execute)
# The subscription field, served by the engine: the event is the value.
manager.subscription("message", channel="room:{room}")


def resolve_messages(_root: Any, _info: Any, room: str) -> list[dict[str, Any]]:
    return HISTORY[room]


async def resolve_post(_root: Any, info: Any, room: str, text: str) -> dict[str, Any]:
    ctx: OperationContext = info.context
    message = {"room": room, "text": text, "author": ctx.principal.user_id}
    HISTORY[room].append(message)
    await manager.publish(f"room:{room}", message)
    return message


MESSAGE = GraphQLObjectType(
    "Message",
    {
        "room": GraphQLField(GraphQLNonNull(GraphQLString)),
        "text": GraphQLField(GraphQLNonNull(GraphQLString)),
        "author": GraphQLField(GraphQLString),
    },
)
ROOM = {"room": GraphQLArgument(GraphQLNonNull(GraphQLString))}
SCHEMA = GraphQLSchema(
    query=GraphQLObjectType(
        "Query",
        {
            "messages": GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(MESSAGE))),
                args=ROOM,
                resolve=resolve_messages,
            )
        },
    ),
    mutation=GraphQLObjectType(
        "Mutation",
        {
            "post": GraphQLField(
                GraphQLNonNull(MESSAGE),
                args={**ROOM, "text": GraphQLArgument(GraphQLNonNull(GraphQLString))},
                resolve=resolve_post,
            )
        },
    ),
)


async def main(port: int) -> None:
    server = await manager.listen("127.0.0.1", port)
    print(f"graphql_operations listening on http://{server.host}:{server.port}", flush=True)
    try:
        await asyncio.Event().wait()  # until Ctrl-C
    finally:
        await manager.shutdown()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
