"""Benchmark server: `manager.listen` — the native Rust server started from Python, with the
same manager (and, with --resolver, a Python resolver); `POST /publish` is the native one.
With --app it hosts the FastAPI app of hosted_app.py on the same port, and with
--http-load PATH it keeps `httpload` (16 keep-alive connections) busy on that route while
the subscriptions are measured."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
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
    if not args.app:
        server = await manager.listen(host, int(port))
        announce("fraiseql-native-py", server.host, server.port)
        await server.wait()
        return
    os.environ["BENCH_PUBLISH_TOKEN"] = args.publish_token
    import hosted_app

    server = await hosted_app.manager.listen(host, int(port), app=hosted_app.app)
    load = None
    if args.http_load:
        httpload = Path(__file__).resolve().parents[2] / "target" / "release" / "httpload"
        load = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited)
            [
                str(httpload),
                "--url",
                f"http://{server.host}:{server.port}{args.http_load}",
                "--connections",
                "16",
                "--duration-secs",
                "3600",
                "--warmup-secs",
                "0",
            ],
            stdout=subprocess.DEVNULL,
        )
    announce("fraiseql-native-py-app", server.host, server.port)
    try:
        await server.wait()
    finally:
        if load is not None:
            load.kill()


if __name__ == "__main__":
    asyncio.run(serve())
