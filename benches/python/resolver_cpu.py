"""What a Python resolver costs per event per group, in CPU time: one client session (the
one the ASGI adapters drive, no sockets) subscribed to a Rust-only field, or to the same
field with an identity Python resolver (sync, async); events published from Python, frames
read as the adapters read them (in batches). The process's CPU time (every thread: the
event loop, tokio's workers) per delivered event is measured, and the difference to the
Rust-only field is what the resolver costs: the event handed to the loop, converted to a
dict, the call, the result read back, and the wake-ups in between.

Wall-clock round trips are not measured here: on a shared 2-core machine they mostly
measure the scheduler (`resolver_cost.py` shows that).

    .venv/bin/python benches/python/resolver_cpu.py [EVENTS]

Two regimes: **burst** (events published as fast as the loop can, frames read
concurrently: what a busy server pays) and **paced** (one event per millisecond: every event
wakes the loop and tokio on its own, what a quiet server pays per event).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from fraiseql_subscriptions import SubscriptionConfig, SubscriptionManager

KINDS = ("rust", "sync", "async")


def tick_manager(kind: str, events: int) -> SubscriptionManager:
    """A manager whose `tick` field (channel `t`) is Rust-only (`rust`) or has an identity
    resolver (`sync`, `async`), with outboxes holding `events` frames."""
    config = SubscriptionConfig.high_performance(
        subscribe_rate=0, outbox_capacity=max(events, 4096)
    )
    manager = SubscriptionManager(config=config)
    register = manager.subscription("tick", channel="t")
    if kind == "sync":

        @register
        def tick(event: Any, variables: Any, ctx: Any) -> Any:
            return event

    elif kind == "async":

        @register
        async def tick_async(event: Any, variables: Any, ctx: Any) -> Any:
            return event

    return manager


async def _read(session: Any, events: int) -> None:
    """Reads frames until `events` `next` frames arrived (as the adapters do: take what is
    queued, await only when nothing is)."""
    seen = 0
    while seen < events:
        frames = session.try_recv()
        if frames is None:
            raise RuntimeError("the session ended early")
        if not frames:
            frames = await session.recv()
            if frames is None:
                raise RuntimeError("the session ended early")
        for frame in frames:
            if not isinstance(frame, str):
                raise RuntimeError(f"the session closed: {frame}")
            if '"type":"next"' in frame:
                seen += 1
            elif '"type":"error"' in frame:
                raise RuntimeError(f"the subscription failed: {frame}")


async def run(kind: str, events: int, paced: bool) -> float:
    """CPU µs per delivered event (every thread of the process)."""
    manager = tick_manager(kind, events)
    await manager.start()
    session = manager.executor.open_session("graphql-transport-ws")
    session.feed(json.dumps({"type": "connection_init"}))
    ack = await session.recv()
    assert ack is not None, "the session ended before the ack"
    assert "connection_ack" in ack[0], ack
    query = "subscription { tick { n } }"
    session.feed(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
    await asyncio.sleep(0.05)  # the subscribe is registered
    data = {"n": 1, "text": "hello"}
    # Bursts go in as one JSON body of 64 events per awaited publish (in order, parsed in
    # Rust); the same for every kind, so it cancels out of the differences.
    chunk = json.dumps([{"channel": "t", "data": data}] * 64).encode()
    reader = asyncio.ensure_future(_read(session, events))
    cpu_start = time.process_time()
    if paced:
        start = time.perf_counter()
        for i in range(events):
            await manager.publish("t", data)
            delay = start + (i + 1) / 1000 - time.perf_counter()
            await asyncio.sleep(max(delay, 0))
    else:
        for _ in range(events // 64):
            await manager.publish_json(chunk)
        for _ in range(events % 64):
            await manager.publish("t", data)
    await asyncio.wait_for(reader, timeout=60)
    cpu = time.process_time() - cpu_start
    session.client_gone()
    await manager.shutdown()
    return cpu / events * 1e6


async def main(events: int) -> None:
    for paced in (False, True):
        n = events if not paced else min(events, 3000)
        cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(5):
            for kind in KINDS:
                cpu[kind].append(await run(kind, n, paced))
        how = "paced, 1 000 events/s" if paced else "burst"
        print(f"{how}, {n} events, 1 subscriber; median of 5 runs, CPU µs per event:")
        base = statistics.median(cpu["rust"])
        for kind in KINDS:
            median = statistics.median(cpu[kind])
            spread = f"{min(cpu[kind]):.1f} to {max(cpu[kind]):.1f}"
            added = "" if kind == "rust" else f"  (the resolver adds {median - base:.1f} µs)"
            print(f"  {kind:>5}: {median:.1f} (runs {spread}){added}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
