"""The interpreter's exit: with the manager shut down, or left running with live
connections, streams and resolvers, a process exits 0 without warnings (`-X dev` shows
ResourceWarnings, unawaited coroutines and destroyed pending tasks)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import textwrap
from typing import Any

import pytest

from fraiseql_subscriptions import SubscriptionManager

PROGRAM = textwrap.dedent(
    """
    import asyncio, json
    from websockets.asyncio.client import connect
    from fraiseql_subscriptions import SubscriptionManager

    async def main(shutdown):
        manager = SubscriptionManager()

        @manager.subscription("tick", channel="t")
        def tick(event, variables, ctx):
            return event

        @manager.subscription("gen")
        async def gen(variables, ctx):
            while True:
                yield 1
                await asyncio.sleep(0.01)

        server = await manager.listen("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.port}/graphql"
        # max_queue=None: the client reads (and sees the close) although nobody consumes
        # the stream frames.
        async with connect(url, subprotocols=["graphql-transport-ws"], max_queue=None) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            await ws.recv()
            for id, query in (("1", "subscription { tick }"), ("2", "subscription { gen }")):
                message = {"id": id, "type": "subscribe", "payload": {"query": query}}
                await ws.send(json.dumps(message))
            await ws.recv()
            for i in range(50):
                await manager.publish("t", i)
            if shutdown:
                await manager.shutdown(grace=2.0)
        print("done")

    asyncio.run(main(SHUTDOWN))
    """
)


async def run_program(program: str, *args: str) -> tuple[int | None, str, str]:
    """Runs `program` in a fresh interpreter under `-X dev`: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-c",
        program,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("shutdown", [True, False])
async def test_the_process_exits_cleanly(shutdown: bool) -> None:
    code, out, err = await run_program(PROGRAM.replace("SHUTDOWN", str(shutdown)))
    assert code == 0, err
    assert out.strip() == "done"
    assert err == ""


# The engine's threads are not Python threads: nothing stops them at exit. One that enters
# the interpreter once it finalizes kills the process (SIGABRT "PyGILState_Release: thread
# state must be current", or SIGSEGV). Here events keep arriving from another process
# (POST /publish) for a resolver, a stream yields without pause, and the program returns
# from asyncio.run mid-flow, with or without shutting the manager down.
UNDER_LOAD = textwrap.dedent(
    """
    import asyncio, dataclasses, subprocess, sys
    from fraiseql_subscriptions import SubscriptionConfig, SubscriptionManager

    CLIENT = '''
    import asyncio, json, sys, threading, urllib.request
    from websockets.asyncio.client import connect
    port = int(sys.argv[1])
    def flood():
        body = json.dumps([{"channel": "t", "data": {"n": i}} for i in range(50)]).encode()
        headers = {"authorization": "Bearer s3cret", "content-type": "application/json"}
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/publish", data=body, headers=headers)
                urllib.request.urlopen(request).read()
            except Exception:
                return
    async def main():
        url = f"ws://127.0.0.1:{port}/graphql"
        async with connect(url, subprotocols=["graphql-transport-ws"], max_queue=None) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            await ws.recv()
            for id, query in (("1", "subscription { tick }"), ("2", "subscription { gen }")):
                message = {"id": id, "type": "subscribe", "payload": {"query": query}}
                await ws.send(json.dumps(message))
            await ws.recv()
            threading.Thread(target=flood, daemon=True).start()
            try:
                async for _ in ws:
                    pass
            except Exception:
                pass
    asyncio.run(main())
    '''

    async def main(shutdown):
        config = dataclasses.replace(SubscriptionConfig.development(), publish_token="s3cret")
        manager = SubscriptionManager(config=config)

        @manager.subscription("tick", channel="t")
        async def tick(event, variables, ctx):
            return event

        @manager.subscription("gen")
        async def gen(variables, ctx):
            while True:
                yield 1
                await asyncio.sleep(0)

        server = await manager.listen("127.0.0.1", 0)
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(server.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(500):
            if manager.get_metrics()["events_published"] > 200:
                break
            await asyncio.sleep(0.01)
        if shutdown:
            await manager.shutdown(grace=1.0)
        print("done", flush=True)

    # The client ends when its connection does: at the shutdown, or at this process's exit.
    asyncio.run(main(sys.argv[1] == "shutdown"))
    """
)


@pytest.mark.parametrize("shutdown", ["shutdown", "no-shutdown"])
async def test_exit_mid_flow_never_crashes(shutdown: str) -> None:
    # Several times at once: the race this guards against is a matter of timing.
    runs = await asyncio.gather(*(run_program(UNDER_LOAD, shutdown) for _ in range(8)))
    for code, out, err in runs:
        assert code == 0, f"exit code {code}:\n{err}"
        assert out.strip() == "done"


# An awaitable whose Rust side finishes after the interpreter began to exit: the atexit
# hook registered before fraiseql's import runs after fraiseql's own (atexit is last in,
# first out), and stops the native server there, so `wait()` completes on an engine thread
# while the interpreter finalizes. Its completion must be dropped, not delivered.
LATE_COMPLETION = textwrap.dedent(
    """
    import asyncio, atexit
    state = {}
    atexit.register(lambda: state["server"].stop())
    from fraiseql_subscriptions import SubscriptionManager

    async def main():
        manager = SubscriptionManager()

        @manager.subscription("tick", channel="t")
        def tick(event, variables, ctx):
            return event

        state["server"] = await manager.listen("127.0.0.1", 0)
        state["waiting"] = state["server"].wait()  # never awaited
        print("done")

    asyncio.run(main())
    """
)


async def test_an_awaitable_finishing_after_exit_began_is_dropped() -> None:
    runs = await asyncio.gather(*(run_program(LATE_COMPLETION) for _ in range(8)))
    for code, out, err in runs:
        assert code == 0, f"exit code {code}:\n{err}"
        assert out.strip() == "done"


# At exit the engine's runtime is stopped and its threads joined: an atexit hook that runs
# after fraiseql's (registered before the import) sees the process down to one thread.
THREADS_JOINED = textwrap.dedent(
    """
    import asyncio, atexit, os
    atexit.register(lambda: print("threads", len(os.listdir("/proc/self/task"))))
    from fraiseql_subscriptions import SubscriptionManager

    async def main(shutdown):
        manager = SubscriptionManager()

        @manager.subscription("tick", channel="t")
        def tick(event, variables, ctx):
            return event

        await manager.listen("127.0.0.1", 0)
        for i in range(10):
            await manager.publish("t", i)
        print("running", len(os.listdir("/proc/self/task")) > 1)
        if shutdown:
            await manager.shutdown()

    asyncio.run(main(SHUTDOWN))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/task")
@pytest.mark.parametrize("shutdown", [True, False])
async def test_the_engine_threads_are_joined_at_exit(shutdown: bool) -> None:
    code, out, err = await run_program(THREADS_JOINED.replace("SHUTDOWN", str(shutdown)))
    assert code == 0, err
    assert out.split("\n")[:2] == ["running True", "threads 1"], out
    assert err == ""


async def cycle(n: int) -> int:
    """Starts a manager, serves one event through a Python resolver, shuts it down;
    returns how many descriptors the loop watched while it ran."""
    manager = SubscriptionManager()

    @manager.subscription("tick", channel="t")
    def tick(event: Any, variables: Any, ctx: Any) -> Any:
        return {"n": event["n"] * 2}

    await manager.start()
    await manager.create_subscription("s", "c", "subscription { tick { n } }")
    await manager.publish("t", {"n": n})
    frame = await manager.get_next_event("s", timeout=10)
    assert frame is not None
    assert json.loads(frame)["payload"]["data"]["tick"] == {"n": 2 * n}
    watched = len(asyncio.get_running_loop()._selector.get_map())  # type: ignore[attr-defined]
    await manager.shutdown()
    return watched  # type: ignore[no-any-return]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if sys.platform.startswith("linux") else 0


async def test_started_and_stopped_managers_leave_no_wake_up_lines() -> None:
    # Each started manager gives the loop a wake-up line (a socket pair it watches); the
    # line goes when the manager's engine does, so nothing accumulates. (The first cycle
    # starts the engine's runtime, whose own descriptors stay.)
    loop = asyncio.get_running_loop()
    selector = loop._selector  # type: ignore[attr-defined]

    async def settled(watched: int) -> int:
        for _ in range(500):
            gc.collect()
            if len(selector.get_map()) <= watched:
                break
            await asyncio.sleep(0.01)
        return len(selector.get_map())

    watched = len(selector.get_map())
    assert await cycle(0) == watched + 1
    assert await settled(watched) == watched
    fds = open_fds()
    for n in range(1, 21):
        await cycle(n)
    assert await settled(watched) == watched
    assert open_fds() <= fds


# A manager whose loop closed without a shutdown: its resolver calls can no longer run, and
# they fail (an `error` for the subscription) instead of waiting forever.
LOOP_GONE = textwrap.dedent(
    """
    import asyncio, json
    from fraiseql_subscriptions import SubscriptionManager

    manager = SubscriptionManager()

    @manager.subscription("tick", channel="t")
    def tick(event, variables, ctx):
        return event

    async def first():
        await manager.start()
        await manager.create_subscription("s", "c", "subscription { tick }")
        await manager.publish("t", 1)
        print(json.loads(await manager.get_next_event("s", timeout=10))["type"])

    async def second():
        await manager.publish("t", 2)
        frame = await manager.get_next_event("s", timeout=10)
        print(json.loads(frame)["type"] if frame else None)

    asyncio.run(first())
    asyncio.run(second())
    """
)


async def test_a_closed_loop_fails_resolver_calls_instead_of_hanging() -> None:
    code, out, err = await run_program(LOOP_GONE)
    assert code == 0, err
    assert out.split() == ["next", "error"], out
