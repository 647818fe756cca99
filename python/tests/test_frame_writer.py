"""The frame writer: frames the engine hands over in one wake-up of the loop are written at
once when the socket's ``send`` completes without waiting, in a task otherwise (the engine
then waits for ``written()``), in order either way; and end to end, a sequential publisher
(``while ...: await manager.publish(...)``) reaches every client of every ASGI transport,
in order, with nothing lost."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any

import pytest
from conftest import client, serve, wait_for

from fraiseql_subscriptions import ExecutorStateError, SubscriptionConfig, SubscriptionManager
from fraiseql_subscriptions.subscriptions.frame_writer import FrameWriter
from fraiseql_subscriptions.subscriptions.websocket import (
    GraphQLTransportWSHandler,
    WebSocketAdapter,
)


class FakeSession:
    """Counts the ``written()`` acknowledgements a writer sends the engine."""

    def __init__(self) -> None:
        self.acks = 0

    def written(self) -> None:
        self.acks += 1


class RecordingSocket(WebSocketAdapter):
    """Records what is sent; ``gate`` (when set) makes every send wait for it."""

    sends_outside_task = True

    def __init__(self, gate: asyncio.Event | None = None, fail_on: str | None = None) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.gate = gate
        self.fail_on = fail_on

    async def accept(self, subprotocol: str | None = None) -> None:
        pass

    async def receive(self) -> str | bytes | None:
        return None

    async def send_text(self, text: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if text == self.fail_on:
            raise ConnectionResetError("the socket broke")
        self.sent.append(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


def writer_for(socket: RecordingSocket) -> tuple[FrameWriter, FakeSession]:
    session = FakeSession()
    return FrameWriter(session, socket), session  # type: ignore[arg-type]


async def test_frames_are_written_within_the_call_when_send_completes_at_once() -> None:
    socket = RecordingSocket()
    writer, session = writer_for(socket)
    assert writer.deliver(["a", "b"]) is True
    assert writer.deliver(["c"]) is True
    # Written inside deliver: no turn of the loop, no acknowledgement needed.
    assert socket.sent == ["a", "b", "c"]
    assert session.acks == 0
    assert not writer.done.done()
    assert writer.deliver(None) is True
    assert writer.done.done()
    assert writer.done.result() is None


class TaskBoundSocket(RecordingSocket):
    """An adapter whose sends need the current task (as anyio's or ``asyncio.timeout``'s)."""

    sends_outside_task = False

    async def send_text(self, text: str) -> None:
        assert asyncio.current_task() is not None, "send_text ran outside a task"
        await super().send_text(text)


async def test_an_adapter_that_needs_a_task_gets_one() -> None:
    socket = TaskBoundSocket()
    writer, session = writer_for(socket)
    # From 3.12 in an eagerly started task (written at once); before, in a task of its own
    # that acknowledges when done.
    eager = sys.version_info >= (3, 12)
    assert writer.deliver(["a", "b"]) is eager
    await wait_for(lambda: session.acks == (0 if eager else 1))
    assert writer.deliver(["c"]) is eager
    await wait_for(lambda: session.acks == (0 if eager else 2))
    assert socket.sent == ["a", "b", "c"]
    assert not writer.done.done()


async def test_a_send_that_waits_goes_on_in_a_task_and_acknowledges_when_done() -> None:
    gate = asyncio.Event()
    socket = RecordingSocket(gate)
    writer, session = writer_for(socket)
    assert writer.deliver(["a", "b", "c"]) is False
    await asyncio.sleep(0)
    assert socket.sent == []
    assert session.acks == 0
    gate.set()
    await wait_for(lambda: session.acks == 1)
    assert socket.sent == ["a", "b", "c"]
    assert not writer.done.done()


async def test_a_close_frame_ends_the_writer_and_drops_what_follows() -> None:
    socket = RecordingSocket()
    writer, _ = writer_for(socket)
    assert writer.deliver(["a", (4400, "bad"), "after"]) is True
    assert socket.sent == ["a"]
    assert socket.closed == (4400, "bad")
    assert writer.done.done()
    assert writer.deliver(["later"]) is True
    assert socket.sent == ["a"]


async def test_a_close_frame_after_a_waiting_send_ends_the_writer_when_sent() -> None:
    gate = asyncio.Event()
    socket = RecordingSocket(gate)
    writer, session = writer_for(socket)
    assert writer.deliver(["a", (1000, "")]) is False
    assert not writer.done.done()
    gate.set()
    await asyncio.wait_for(writer.done, 10)
    assert socket.sent == ["a"]
    assert socket.closed == (1000, "")
    await wait_for(lambda: session.acks == 1)


@pytest.mark.parametrize("waits", [False, True])
async def test_a_failed_send_ends_the_writer_with_its_error(waits: bool) -> None:
    gate = asyncio.Event()
    if not waits:
        gate.set()
    socket = RecordingSocket(gate, fail_on="boom")
    writer, session = writer_for(socket)
    assert writer.deliver(["a", "boom", "c"]) is (not waits)
    gate.set()
    with pytest.raises(ConnectionResetError, match="the socket broke"):
        await asyncio.wait_for(asyncio.shield(writer.done), 10)
    assert socket.sent == ["a"]
    # The engine is never left waiting, and later frames are dropped.
    await wait_for(lambda: session.acks == (1 if waits else 0))
    assert writer.deliver(["d"]) is True
    assert socket.sent == ["a"]


async def test_a_waiting_send_is_cancelled_with_its_task() -> None:
    socket = RecordingSocket(asyncio.Event())
    writer, session = writer_for(socket)
    before = asyncio.all_tasks()
    assert writer.deliver(["a"]) is False
    for task in asyncio.all_tasks() - before:  # the write's own task
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(writer.done), 10)
    await wait_for(lambda: session.acks == 1)
    assert socket.sent == []


@pytest.mark.parametrize("transport", ["fastapi", "starlette", "asgi"])
async def test_a_sequential_publisher_reaches_every_client_in_order(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_fallback(*args: Any) -> None:
        raise AssertionError("frames went through the awaiting fallback, not the hand-off")

    monkeypatch.setattr(GraphQLTransportWSHandler, "_write", staticmethod(no_fallback))
    manager = SubscriptionManager(config=SubscriptionConfig.production(subscribe_rate=0))
    manager.subscription("tick", channel="bench:{topic}")
    clients, events = 40, 400
    query = "subscription($topic: String!) { tick(topic: $topic) { n } }"
    async with serve(transport, manager) as running:
        opened: list[Any] = []
        contexts = [client(running.url) for _ in range(clients)]
        try:
            for i, cm in enumerate(contexts):
                c = await cm.__aenter__()
                opened.append(c)
                await c.init()
                await c.subscribe(f"s{i}", query, {"topic": "t"})
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == clients)

            async def publisher() -> None:
                for n in range(events):
                    await manager.publish("bench:t", {"n": n})

            async def received(c: Any) -> list[int]:
                return [(await c.recv())["payload"]["data"]["tick"]["n"] for _ in range(events)]

            publishing = asyncio.ensure_future(publisher())
            got = await asyncio.gather(*(received(c) for c in opened))
            await publishing
            metrics = manager.get_metrics()
        finally:
            for cm in contexts:
                await cm.__aexit__(None, None, None)
    assert all(g == list(range(events)) for g in got)
    assert metrics["outbox_overflows"] == 0
    assert metrics["events_dropped"] == 0
    assert metrics["events_delivered"] == clients * events


class ScriptedSocket(RecordingSocket):
    """A client that sends ``script``, then stays until ``leave`` is set (thread-safe)."""

    def __init__(self, script: list[str]) -> None:
        super().__init__()
        self.script = list(script)
        self.leave = threading.Event()

    async def receive(self) -> str | bytes | None:
        if self.script:
            return self.script.pop(0)
        await asyncio.to_thread(self.leave.wait)
        return None


async def test_a_connection_served_on_another_threads_loop_gets_its_frames() -> None:
    # The executor started on this loop; a connection served on another thread's loop gets
    # its frames through a wake-up line of that loop.
    manager = SubscriptionManager(config=SubscriptionConfig.production(subscribe_rate=0))
    manager.subscription("tick", channel="bench:{topic}")
    await manager.start()
    subscribe = {
        "id": "s",
        "type": "subscribe",
        "payload": {"query": 'subscription { tick(topic: "t") { n } }'},
    }
    socket = ScriptedSocket([json.dumps({"type": "connection_init"}), json.dumps(subscribe)])
    handler = GraphQLTransportWSHandler(manager)
    served = threading.Thread(target=lambda: asyncio.run(handler.handle(socket)))
    served.start()
    try:
        await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
        for n in range(50):
            await manager.publish("bench:t", {"n": n})
        await wait_for(lambda: len(socket.sent) == 51)
    finally:
        socket.leave.set()
        await asyncio.to_thread(served.join, 10)
        await manager.shutdown()
    assert json.loads(socket.sent[0]) == {"type": "connection_ack"}
    ns = [json.loads(frame)["payload"]["data"]["tick"]["n"] for frame in socket.sent[1:]]
    assert ns == list(range(50))
    assert not served.is_alive()


async def test_start_writing_refuses_a_non_callable_and_a_second_writer() -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.production(subscribe_rate=0))
    await manager.start()
    try:
        session = manager.executor.open_session("graphql-transport-ws", None)
        with pytest.raises(TypeError, match="deliver must be a callable"):
            session.start_writing(42)  # type: ignore[arg-type]
        assert session.start_writing(lambda frames: True) is True
        with pytest.raises(ExecutorStateError, match="called already"):
            session.start_writing(lambda frames: True)
        session.client_gone()
    finally:
        await manager.shutdown()


async def test_a_session_without_a_writer_gives_its_frames_to_recv() -> None:
    # The awaiting interface (loops that cannot watch a file descriptor use it).
    manager = SubscriptionManager(config=SubscriptionConfig.production(subscribe_rate=0))
    await manager.start()
    try:
        session = manager.executor.open_session("graphql-transport-ws", None)
        session.feed(json.dumps({"type": "connection_init"}))
        frames = await asyncio.wait_for(session.recv(), 10)
        assert frames is not None
        assert [json.loads(f) for f in frames if isinstance(f, str)] == [{"type": "connection_ack"}]
        session.client_gone()
        while frames is not None:
            frames = await asyncio.wait_for(session.recv(), 10)
    finally:
        await manager.shutdown()
