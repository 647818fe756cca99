"""The FastAPI app of the hosted-app benchmarks: a small JSON endpoint and a 1 MB streamed
download, with the benchmark's `tick` subscription on its manager. The same module is
served by the native server (`python -m fraiseql_subscriptions serve hosted_app:app`), by
uvicorn and by granian."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fraiseql_subscriptions import SubscriptionConfig, SubscriptionManager

manager = SubscriptionManager(
    config=SubscriptionConfig.production(
        subscribe_rate=0, publish_token=os.environ.get("BENCH_PUBLISH_TOKEN")
    )
)
manager.subscription("tick", channel="bench:{topic}")

app = FastAPI(lifespan=manager.lifespan)

CHUNK = b"x" * 65536
CHUNKS = 16  # 1 MiB


@app.get("/json")
async def small_json() -> dict[str, object]:
    return {"hello": "world", "items": [1, 2, 3]}


@app.get("/download")
async def download() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(CHUNKS):
            yield CHUNK

    return StreamingResponse(chunks(), media_type="application/octet-stream")
