"""The same manager, resolvers and auth on the native Rust server (no ASGI server at all):
WebSocket on /graphql, /healthz and /metrics on one port. The GIL is never taken on the
event path unless a Python resolver is registered.

    python examples/python/native_server.py [PORT]   # ws://127.0.0.1:8000/graphql
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from fraiseql_subscriptions import Principal, SubscriptionManager


async def auth(payload: dict[str, Any] | None) -> Principal:
    """Accepts everyone, named by the payload's "user" (a real app verifies a token)."""
    return Principal(user_id=(payload or {}).get("user", "anonymous"))


manager = SubscriptionManager(auth=auth)

# A field served entirely in Rust: the event data is the value.
manager.subscription("tick", channel="ticks")


@manager.subscription("message", channel="room:{room}")
def message(event: dict[str, Any], variables: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    return None if event.get("hidden") else event


@manager.on_connect
def log(payload: dict[str, Any] | None, principal: dict[str, Any]) -> None:
    print("connected:", principal["user_id"])


async def main(port: int) -> None:
    server = await manager.listen("127.0.0.1", port)
    print(f"native server on ws://{server.host}:{server.port}/graphql", flush=True)
    try:
        for n in range(1_000_000):
            await manager.publish("ticks", n)
            await asyncio.sleep(1)
    finally:
        await manager.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
