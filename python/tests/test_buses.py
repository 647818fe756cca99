"""The Redis and PostgreSQL buses from Python, against real servers: two managers (two
engines) sharing one bus, clear errors for unreachable servers, and a Redis that goes away
under a running server and comes back.

Outside CI a test whose server is unreachable is skipped with how to start it; with
CI=true it fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _free_port, backend_unavailable, client, reachable

from fraiseql_subscriptions import (
    ConfigurationError,
    EventBusConfig,
    EventBusError,
    PublishError,
    SubscriptionConfig,
    SubscriptionManager,
)

REDIS_HOW = 'redis-server --daemonize yes --port 6379 --save ""'
PG_HOW = "pg_ctlcluster $(ls /etc/postgresql) main start"
PG_DSN = "postgres://postgres@127.0.0.1:5432/test"


def manager_on(bus: Any) -> SubscriptionManager:
    manager = SubscriptionManager(bus=bus, config=SubscriptionConfig.development())
    manager.subscription("message", channel="room:{room}")
    return manager


async def exchange(a: SubscriptionManager, b: SubscriptionManager, room: str) -> None:
    """Publishes 50 events on `a`; `b`'s subscriber gets them all, in order, with every
    field intact; `a`'s own subscriber gets each once."""
    query = f'subscription {{ message(room: "{room}") {{ n flag nested {{ x }} }} }}'
    await b.create_subscription("sub-b", "cb", query)
    await a.create_subscription("sub-a", "ca", query)
    for n in range(50):
        await a.publish(f"room:{room}", {"n": n, "flag": n % 2 == 0, "nested": {"x": [n]}})
    for sub, manager in (("sub-b", b), ("sub-a", a)):
        got = []
        for _ in range(50):
            frame = await manager.get_next_event(sub, timeout=10)
            assert frame is not None, f"{sub}: only {len(got)} of 50 arrived"
            got.append(json.loads(frame)["payload"]["data"]["message"])
        assert got == [{"n": n, "flag": n % 2 == 0, "nested": {"x": [n]}} for n in range(50)]
        with pytest.raises(TimeoutError):  # no duplicates
            await manager.get_next_event(sub, timeout=0.2)


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
async def test_redis_two_managers_share_events(mode: str) -> None:
    if not await reachable(6379):
        backend_unavailable("Redis", REDIS_HOW)
    prefix = f"pytest-{uuid.uuid4().hex[:8]}:"
    url = "redis://127.0.0.1:6379"
    a = manager_on(EventBusConfig.redis(url, mode=mode, prefix=prefix))
    b = manager_on(EventBusConfig.redis(url, mode=mode, prefix=prefix))
    try:
        await exchange(a, b, "lobby")
        assert a.get_metrics()["bus"] == f"redis/{mode}"
    finally:
        await a.shutdown()
        await b.shutdown()


CLUSTER_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "redis-cluster.sh"


def _free_cluster_base() -> int:
    """A base port whose six ports and their cluster-bus ports (+10000) are all free."""
    for _ in range(200):
        base = random.randrange(20_000, 39_000)
        ports = [p for port in range(base, base + 6) for p in (port, port + 10_000)]
        try:
            with contextlib.ExitStack() as stack:
                for port in ports:
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise AssertionError("no free ports for a Redis Cluster")


@pytest.fixture(scope="module")
def redis_cluster_url() -> Iterator[str]:
    """A 3-primary, 3-replica Redis Cluster of local processes, stopped after the module."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        backend_unavailable("redis-server and redis-cli >= 7", "apt-get install redis-server")
    base = _free_cluster_base()
    started = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "start", str(base)], capture_output=True, text=True
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", str(base)], capture_output=True)


def test_redis_urls_name_their_topology() -> None:
    assert EventBusConfig.redis("redis://127.0.0.1:6379").topology == "single"
    cluster = EventBusConfig.redis("redis-cluster://:pw@10.0.0.1:7000,10.0.0.2:7001")
    assert cluster.topology == "cluster"
    assert "pw" not in repr(cluster)
    sentinel = EventBusConfig.redis("redis-sentinel://10.0.0.1:26379?service=mymaster")
    assert sentinel.topology == "sentinel"
    assert EventBusConfig.memory().topology is None
    with pytest.raises(ConfigurationError, match=r"\?service="):
        EventBusConfig.redis("redis-sentinel://10.0.0.1:26379")


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
async def test_redis_cluster_two_managers_share_events(redis_cluster_url: str, mode: str) -> None:
    prefix = f"pytest-{uuid.uuid4().hex[:8]}:"
    for room in ("lobby", "garden", "attic"):  # one room on each shard
        a = manager_on(EventBusConfig.redis(redis_cluster_url, mode=mode, prefix=prefix))
        b = manager_on(EventBusConfig.redis(redis_cluster_url, mode=mode, prefix=prefix))
        try:
            await exchange(a, b, room)
            assert a.get_metrics()["bus"] == f"redis/{mode}"
        finally:
            await a.shutdown()
            await b.shutdown()


async def test_postgres_two_managers_share_events() -> None:
    if not await reachable(5432):
        backend_unavailable("PostgreSQL", PG_HOW)
    prefix = f"py{uuid.uuid4().hex[:8]}_"
    a = manager_on(EventBusConfig.postgresql(PG_DSN, prefix=prefix))
    b = manager_on(EventBusConfig.postgresql(PG_DSN, prefix=prefix))
    try:
        await exchange(a, b, "lobby")
        big = "x" * 20_000  # beyond NOTIFY's 8000-byte payload: travels by reference
        await b.create_subscription("big", "cb", 'subscription { message(room: "big") { text } }')
        await a.publish("room:big", {"text": big})
        frame = await b.get_next_event("big", timeout=10)
        assert json.loads(frame or b"")["payload"]["data"]["message"]["text"] == big
    finally:
        await a.shutdown()
        await b.shutdown()


LEFT_RUNNING = textwrap.dedent(
    """
    import asyncio, os, sys
    import atexit

    PF_EXITING = 0x4  # the kernel's flag for a task inside exit()

    def live_threads():
        # A joined thread can still be listed: pthread_join returns when the kernel clears
        # the thread's tid, which it does before it unlists the task, so on a busy machine
        # the count can catch a thread between the two. Such a task already carries
        # PF_EXITING (set as exit begins), so only tasks without it count as running.
        live = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:
                continue  # unlisted meanwhile
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            flags = int(stat[stat.rindex(")") + 2 :].split()[6])
            if not flags & PF_EXITING:
                live.append(name)
        return live

    atexit.register(lambda: print("threads", len(live := live_threads()), live))
    from fraiseql_subscriptions import EventBusConfig, SubscriptionManager

    async def main(url, mode):
        if url.startswith("redis"):
            bus = EventBusConfig.redis(url, mode=mode, prefix=sys.argv[3])
        else:
            bus = EventBusConfig.postgresql(url, prefix=sys.argv[3])
        manager = SubscriptionManager(bus=bus)
        manager.subscription("tick", channel="t")(lambda event, variables, ctx: event)
        await manager.listen("127.0.0.1", 0)
        await manager.create_subscription("s", "c", "subscription { tick }")
        for i in range(20):
            await manager.publish("t", i)
        assert await manager.get_next_event("s", timeout=10) is not None
        print("ok")

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/task")
@pytest.mark.parametrize("bus", ["redis-pubsub", "redis-streams", "postgresql"])
async def test_exit_with_a_live_bus_is_clean(bus: str) -> None:
    # The process ends with its bus connections open and events in flight: the engine's
    # runtime is stopped at exit (dropping the Redis / PostgreSQL clients) and its threads
    # joined, with nothing on stderr under -X dev.
    kind, _, mode = bus.partition("-")
    port, how = (6379, REDIS_HOW) if kind == "redis" else (5432, PG_HOW)
    if not await reachable(port):
        backend_unavailable(kind, how)
    url = "redis://127.0.0.1:6379" if kind == "redis" else PG_DSN
    prefix = f"py{uuid.uuid4().hex[:8]}_"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-c",
        LEFT_RUNNING,
        url,
        mode,
        prefix,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().split("\n")
    assert lines[0] == "ok", out.decode()
    assert lines[1].startswith("threads 1 "), out.decode()
    assert err.decode() == ""


async def test_unreachable_servers_give_clear_errors() -> None:
    port = _free_port()
    for bus, says in (
        (EventBusConfig.redis(f"redis://127.0.0.1:{port}", connect_timeout=2), "Redis"),
        (
            EventBusConfig.postgresql(
                f"postgres://postgres@127.0.0.1:{port}/test", connect_timeout=2
            ),
            "PostgreSQL",
        ),
    ):
        manager = manager_on(bus)
        with pytest.raises(EventBusError, match=says) as caught:
            await manager.start()
        assert isinstance(caught.value, ConnectionError)
        # Nothing started, so a retry tries the bus again (it may be back by then).
        with pytest.raises(EventBusError, match=says):
            await manager.start()


async def start_redis(port: int) -> asyncio.subprocess.Process:
    """A private redis-server on `port` (so the test may kill it without harming others)."""
    binary = shutil.which("redis-server")
    if binary is None:
        backend_unavailable("redis-server (the binary)", "apt-get install redis-server")
        raise AssertionError("unreachable")
    process = await asyncio.create_subprocess_exec(
        *[binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(200):
        if await reachable(port):
            return process
        await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError("the private redis-server did not start")


async def redis_subscribers(port: int, channel: str) -> int:
    """`PUBSUB NUMSUB channel` on the Redis at `port`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"PUBSUB NUMSUB {channel}\r\n".encode())
        await writer.drain()
        reply = b""
        while reply.count(b"\r\n") < 4:
            chunk = await reader.read(1024)
            if not chunk:
                break
            reply += chunk
        return int(reply.split(b"\r\n")[3].lstrip(b":"))
    finally:
        writer.close()


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


async def test_redis_going_away_keeps_the_server_serving() -> None:
    """Redis dies under a running native server: connections stay open and answer, a
    publish fails with a clear error, /healthz turns 503; once Redis is back on the same
    port, /healthz is 200 again and events reach the same subscriber."""
    redis_port = _free_port()
    redis = await start_redis(redis_port)
    processes = [redis]
    manager = manager_on(EventBusConfig.redis(f"redis://127.0.0.1:{redis_port}", command_timeout=2))
    try:
        server = await manager.listen("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.port}/graphql"
        async with client(url) as c:
            await c.init()
            await c.subscribe("s", 'subscription { message(room: "r") { n } }')
            # The engine registers a subscription before the bus has subscribed in Redis,
            # and pubsub is at-most-once: wait until Redis counts the subscriber.
            for _ in range(500):
                if await redis_subscribers(redis_port, "fraiseql:room:r") == 1:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the bus never subscribed in Redis")
            await manager.publish("room:r", {"n": 1})
            assert (await c.recv())["payload"] == {"data": {"message": {"n": 1}}}
            assert await asyncio.to_thread(healthz, server.port) == 200

            redis.kill()
            await redis.wait()
            with pytest.raises(PublishError, match="Redis"):
                await manager.publish("room:r", {"n": 2})
            assert await asyncio.to_thread(healthz, server.port) == 503
            await c.send({"type": "ping"})
            assert await c.recv() == {"type": "pong"}

            processes.append(await start_redis(redis_port))
            for _ in range(100):
                if await asyncio.to_thread(healthz, server.port) == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("/healthz never recovered")
            # pubsub is at-most-once: publish until the re-subscribed node delivers.
            for _ in range(100):
                await manager.publish("room:r", {"n": 3})
                with contextlib.suppress(TimeoutError):
                    message = await c.recv(timeout=0.2)
                    assert message["payload"] == {"data": {"message": {"n": 3}}}
                    break
            else:
                raise AssertionError("events never flowed again after Redis came back")
        server.stop()
    finally:
        await manager.shutdown(grace=2.0)
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
