"""A Strawberry schema answers queries and mutations on the subscription socket of a FastAPI
app; the Rust engine serves the subscriptions.

Keep your Strawberry types and resolvers; hand the schema's ``execute`` to the manager.
Clients send ``{ messages(room: "lobby") { text } }`` and
``mutation { post(room: "lobby", text: "hi") { text } }`` over the same graphql-transport-ws
connection as ``subscription { message(room: "lobby") { text author } }``.

    uvicorn examples.python.strawberry_operations:app   # ws://127.0.0.1:8000/graphql
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import strawberry
from fastapi import FastAPI
from fraiseql_subscriptions import OperationContext, Principal, SubscriptionManager

#: The rooms' messages (a real app reads and writes its database here).
HISTORY: dict[str, list[Message]] = defaultdict(list)


@strawberry.type
class Message:
    room: str
    text: str
    author: str | None


@strawberry.type
class Query:
    @strawberry.field
    def messages(self, room: str) -> list[Message]:
        return HISTORY[room]


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def post(self, info: strawberry.Info, room: str, text: str) -> Message:
        ctx: OperationContext = info.context  # who sent it
        message = Message(room=room, text=text, author=ctx.principal.user_id)
        HISTORY[room].append(message)
        await manager.publish(f"room:{room}", strawberry.asdict(message))
        return message


schema = strawberry.Schema(query=Query, mutation=Mutation)


async def execute(
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    ctx: OperationContext,
) -> Any:
    """Strawberry's ExecutionResult goes back as the `next` message."""
    return await schema.execute(
        query, variable_values=variables, operation_name=operation_name, context_value=ctx
    )


async def auth(payload: dict[str, Any] | None) -> Principal:
    """Accepts everyone, named by the payload's "user" (a real app verifies a token)."""
    return Principal(user_id=(payload or {}).get("user", "anonymous"))


manager = SubscriptionManager(auth=auth, execute=execute)
manager.subscription("message", channel="room:{room}")

app = FastAPI(lifespan=manager.lifespan)
app.include_router(manager.router())
