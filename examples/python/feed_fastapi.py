"""A FastAPI app forwarding a feed to its subscribers: one background task reads the feed
and publishes each item in order with `await manager.publish(...)` (the common shape of an
app relaying prices, telemetry or a change stream). Every subscriber gets the items of its
symbol in the feed's order; the publisher runs at the pace the connections are written.

    .venv/bin/python examples/python/feed_fastapi.py --port 8000
    # subscribe on ws://127.0.0.1:8000/graphql:
    #   subscription { price(symbol: "ACME") { symbol seq cents } }
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from fraiseql_subscriptions import SubscriptionConfig, SubscriptionManager
from fraiseql_subscriptions.integrations.fastapi import SubscriptionRouterFactory

SYMBOLS = ("ACME", "GLOBEX", "INITECH")


async def price_feed(interval: float) -> AsyncIterator[dict[str, object]]:
    """A made-up market feed: one price per symbol every `interval` seconds."""
    cents = dict.fromkeys(SYMBOLS, 10_000)
    for seq in itertools.count(1):
        for symbol in SYMBOLS:
            cents[symbol] = max(1, cents[symbol] + random.randint(-50, 50))
            yield {"symbol": symbol, "seq": seq, "cents": cents[symbol]}
        await asyncio.sleep(interval)


def build(interval: float = 0.01) -> FastAPI:
    """The app: `price(symbol)` subscriptions fed by one forwarding task."""
    manager = SubscriptionManager(config=SubscriptionConfig.development())
    # No resolver: subscribers get the published item, projected to what they selected.
    manager.subscription("price", channel="prices:{symbol}")

    async def forward() -> None:
        async for item in price_feed(interval):
            # Returns once the bus took the item (after one turn of the loop, in which the
            # frames of earlier items are written): publish order is delivery order.
            await manager.publish(f"prices:{item['symbol']}", item)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with manager.lifespan():
            forwarder = asyncio.ensure_future(forward())
            try:
                yield
            finally:
                forwarder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarder

    app = FastAPI(lifespan=lifespan)
    app.include_router(SubscriptionRouterFactory.create(manager))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between prices")
    args = parser.parse_args()
    uvicorn.run(build(args.interval), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
