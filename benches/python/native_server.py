"""Benchmark server: `manager.listen` — the native Rust server started from Python, with the
same manager (and, with --resolver, a Python resolver); `POST /publish` is the native one."""

from __future__ import annotations

import asyncio
from typing import Any

from fraiseql_subscriptions import SubscriptionConfig, SubscriptionManager

from _common import announce, parse_args


async def serve() -> None:
    args = parse_args(__doc__.splitlines()[0])
    manager = SubscriptionManager(
        config=SubscriptionConfig.production(subscribe_rate=0, publish_token=args.publish_token)
    )
    register = manager.subscription("tick", channel="bench:{topic}")
    if args.resolver:

        @register
        def tick(event: Any, variables: Any, ctx: Any) -> Any:
            return event

    host, _, port = args.bind.rpartition(":")
    server = await manager.listen(host, int(port))
    announce("fraiseql-native-py", server.host, server.port)
    await server.wait()


if __name__ == "__main__":
    asyncio.run(serve())
