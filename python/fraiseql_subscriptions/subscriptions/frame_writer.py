"""Writing one session's frames to its socket from the engine's batched hand-off.

The engine calls :meth:`FrameWriter.deliver` on the loop's thread with the frames of one
connection; the calls for every connection of the loop run in one wake-up of the loop
(``Session.start_writing``). Each call writes at once when the server's ``send``
completes without waiting (uvicorn's does while the socket takes data): no task, no turn
of the loop per connection and event. A ``send`` that has to wait (a full socket buffer)
goes on in a task, and the engine sends that connection nothing more until it finished.

Before Python 3.12 that first step runs outside any task, which only adapters that say so
(``WebSocketAdapter.sends_outside_task``) accept; the others' frames are written in a task.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fraiseql_subscriptions import _native as _rs
    from fraiseql_subscriptions.subscriptions.websocket import WebSocketAdapter

logger = logging.getLogger("fraiseql_subscriptions")

#: A frame from the engine: a text frame, or the close frame's ``(code, reason)``.
Frame = str | tuple[int, str]

#: Python 3.12 runs a new task's first step at once (``eager_start``), with the task
#: current: ``asyncio.current_task()`` and ``asyncio.timeout()`` work inside ``send``.
_EAGER_TASKS = sys.version_info >= (3, 12)


class FrameWriter:
    """Writes the frames of one :class:`~fraiseql_subscriptions._native.Session` to one
    :class:`WebSocketAdapter`. :attr:`done` completes when the session has ended or a
    close frame was sent (with the exception when writing failed)."""

    def __init__(self, session: _rs.Session, websocket: WebSocketAdapter) -> None:
        self._session = session
        self._websocket = websocket
        self._loop = asyncio.get_running_loop()
        #: Completes when nothing more will be written.
        self.done: asyncio.Future[None] = self._loop.create_future()

    def deliver(self, frames: list[Frame] | None) -> bool:
        """The engine's callback: writes ``frames`` (``None``: the session ended). Returns
        ``True`` when they are written (or dropped: the writer has ended), ``False`` when
        the write goes on in a task that calls ``session.written()`` when it finished."""
        if self.done.done():
            return True
        if frames is None:
            self.done.set_result(None)
            return True
        write = self._write(frames)
        if _EAGER_TASKS:
            task = asyncio.Task(write, loop=self._loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            if task.done():
                self._finished(task)
                return True
        elif not self._websocket.sends_outside_task:
            task = asyncio.ensure_future(write, loop=self._loop)
        else:
            try:
                waiting_on = write.send(None)
            except StopIteration:
                return True
            except Exception as err:
                self._fail(err)
                return True
            task = asyncio.ensure_future(_resume(write, waiting_on), loop=self._loop)
        task.add_done_callback(self._finished_later)
        return False

    async def _write(self, frames: list[Frame]) -> None:
        closed = await write_frames(self._websocket, frames)
        if closed and not self.done.done():
            self.done.set_result(None)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._fail(asyncio.CancelledError())
            return
        err = task.exception()
        if err is not None:
            self._fail(err)

    def _finished_later(self, task: asyncio.Task[None]) -> None:
        self._finished(task)
        self._session.written()

    def _fail(self, err: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(err)


async def write_frames(websocket: WebSocketAdapter, frames: list[Frame]) -> bool:
    """Writes ``frames`` in order: the texts in runs through ``send_texts``, a close frame
    through ``close``, after which nothing more is written. Returns whether it closed."""
    texts: list[str] = []
    for frame in frames:
        if isinstance(frame, str):
            texts.append(frame)
            continue
        if texts:
            await websocket.send_texts(texts)
            texts = []
        code, reason = frame
        await websocket.close(code, reason)
        return True
    if texts:
        await websocket.send_texts(texts)
    return False


def _resume(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> asyncio.Future[None]:
    """The rest of ``coroutine``, stepped once by hand and now ``waiting_on`` a future, run
    as a task."""

    async def rest() -> None:
        await _Resumed(coroutine, waiting_on)

    return asyncio.ensure_future(rest())


class _Resumed:
    """Awaits what a hand-stepped coroutine waits on, then steps it on, until it returns."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, waiting_on = self._coroutine, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as err:  # cancelled: the coroutine decides
                try:
                    waiting_on = coroutine.throw(err)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = coroutine.send(sent)
                except StopIteration:
                    return
