"""A custom server: the `websockets` library's own server (no ASGI), through the adapter the
package ships in `fraiseql_subscriptions.contrib` (see `contrib/custom_server.py` for the
template that fits any server giving you a WebSocket object).

    python examples/python/websockets_server.py [PORT]   # ws://127.0.0.1:8765
"""

from __future__ import annotations

import asyncio
import sys

from fraiseql_subscriptions import SubscriptionManager
from fraiseql_subscriptions.contrib.websockets_server import serve_websockets

manager = SubscriptionManager()
manager.subscription("message", channel="room:{room}")


async def main(port: int = 8765) -> None:
    async with manager, serve_websockets(manager, "127.0.0.1", port):
        print(f"websockets server on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8765))
