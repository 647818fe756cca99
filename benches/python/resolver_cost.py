"""What a Python resolver adds per event per group: the same events delivered to one
subscription of a Rust-only field and to one of a field with an identity Python resolver
(sync and async), through the direct API; the difference per event is the resolver's cost
(the call scheduled on the event loop from tokio, the arguments built, the result read).

    .venv/bin/python benches/python/resolver_cost.py [EVENTS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from resolver_cpu import tick_manager


async def run(
    events: int, kind: str, groups: int = 1, pipelined: bool = False
) -> tuple[float, float]:
    # An outbox that holds every frame: the pipelined run publishes them all before reading.
    manager = tick_manager(kind, events)
    # Each subscription names a different `g`: one resolver group each.
    for g in range(groups):
        await manager.create_subscription(f"s{g}", "c", f"subscription {{ tick(g: {g}) {{ n }} }}")
    data = {"n": 1, "text": "hello"}
    start = time.perf_counter()
    cpu_start = time.process_time()
    if pipelined:
        # Publish everything, then read: the engine overlaps the resolver calls.
        for _ in range(events):
            await manager.publish("t", data)
        for _ in range(events):
            for g in range(groups):
                frame = await manager.get_next_event(f"s{g}", timeout=10)
                assert frame is not None
    else:
        for _ in range(events):
            await manager.publish("t", data)
            for g in range(groups):
                frame = await manager.get_next_event(f"s{g}", timeout=10)
                assert frame is not None
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    await manager.shutdown()
    return elapsed / events * 1e6, cpu / events * 1e6


async def main(events: int) -> None:
    for groups, pipelined in ((1, False), (1, True), (100, False)):
        kinds = ("rust", "sync", "async")
        wall: dict[str, list[float]] = {kind: [] for kind in kinds}
        cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
        n = events if groups == 1 else max(events // 50, 20)
        for _ in range(5):
            for kind in kinds:
                elapsed, used = await run(n, kind, groups, pipelined)
                wall[kind].append(elapsed / groups)
                cpu[kind].append(used / groups)
        how = (
            "publish all, then read every frame" if pipelined else "publish then await every frame"
        )
        print(
            f"{groups} group(s), {n} events, {how}; median of 5 runs, µs per event per group"
            " (wall clock | CPU of the whole process, every thread):"
        )
        wall_base = statistics.median(wall["rust"])
        cpu_base = statistics.median(cpu["rust"])
        for kind in kinds:
            w, c = statistics.median(wall[kind]), statistics.median(cpu[kind])
            added = (
                ""
                if kind == "rust"
                else f"  (the resolver adds {w - wall_base:.1f} | {c - cpu_base:.1f} µs)"
            )
            print(f"  {kind:>5}: {w:.1f} | {c:.1f}{added}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
