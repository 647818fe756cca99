"""The transport seam: :class:`WebSocketAdapter` (what any server's socket must offer) and
:class:`GraphQLTransportWSHandler` (which pumps frames between one and the Rust engine).

The handler decides nothing about the protocol: every frame goes to the Rust state
machine (graphql-transport-ws or the legacy graphql-ws, negotiated by subprotocol), and
every frame Rust produces is written as a text frame, in order, by a :class:`FrameWriter`
the engine calls with the frames of every connection in one wake-up of the loop. There is
no polling loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from fraiseql_subscriptions import _native as _rs
from fraiseql_subscriptions.subscriptions.frame_writer import FrameWriter, write_frames

if TYPE_CHECKING:
    from fraiseql_subscriptions.subscriptions.manager import SubscriptionManager

logger = logging.getLogger("fraiseql_subscriptions")

#: Close code for a client that floods the connection faster than the engine reads.
POLICY_VIOLATION = 1008
#: Close code when the server is at capacity or shutting down before the upgrade.
TRY_AGAIN_LATER = 1013


class WebSocketAdapter(ABC):
    """One server-side WebSocket, whatever the server (Starlette, a raw ASGI scope, the
    ``websockets`` library...).

    Implement ``accept`` and ``close``, and one of two ways of moving messages:

    - the text interface (fastest): ``receive`` (the raw frame, ``None`` once the client
      left) and ``send_text``, plus ``subprotocols`` (what the client offered);
    - the original plan's JSON interface: ``receive_json`` (raise when the client left) and
      ``send_json`` (or ``send_bytes``, which must send a *text* frame: both protocols use
      text frames), plus ``is_connected``.

    A subclass that implements neither way fails when it is instantiated, with a
    ``TypeError`` naming the methods to write.
    """

    #: Classes already checked by ``__new__``.
    _checked: frozenset[type] = frozenset()

    #: Whether ``send_text``/``send_texts``/``close`` work outside an asyncio task (they
    #: use neither ``asyncio.current_task()`` nor ``asyncio.timeout()``, nor anything built
    #: on them such as anyio). On Python 3.10 and 3.11 such an adapter's frames are written
    #: within the engine's hand-off, without a task or a turn of the loop; the others' in a
    #: task each time. (From 3.12 every adapter's first step runs in an eagerly started task.)
    #: The Starlette/FastAPI and ASGI adapters set it.
    sends_outside_task: ClassVar[bool] = False

    def __new__(cls, *args: Any, **kwargs: Any) -> WebSocketAdapter:
        if cls not in WebSocketAdapter._checked:
            _check_adapter_class(cls)
            WebSocketAdapter._checked = WebSocketAdapter._checked | {cls}
        return super().__new__(cls)

    @property
    def subprotocols(self) -> Sequence[str]:
        """The subprotocols the client offered (``Sec-WebSocket-Protocol``). The default,
        for adapters that cannot tell, assumes ``graphql-transport-ws``."""
        return ("graphql-transport-ws",)

    @abstractmethod
    async def accept(self, subprotocol: str | None = None) -> None:
        """Completes the upgrade, selecting ``subprotocol``."""

    async def receive(self) -> str | bytes | None:
        """The next message from the client; ``None`` once it disconnected. The default
        reads ``receive_json`` (an exception from it means the client left)."""
        if not self.is_connected:
            return None
        try:
            message = await self.receive_json()
        except Exception:
            logger.debug("receive_json ended the connection", exc_info=True)
            return None
        return json.dumps(message)

    async def send_text(self, text: str) -> None:
        """Sends one text frame (raise when the client is gone). The default goes through
        ``send_json`` or ``send_bytes``, whichever the subclass implements."""
        if _overrides(type(self), "send_json"):
            await self.send_json(json.loads(text))
        else:
            await self.send_bytes(text.encode())

    @abstractmethod
    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Sends the close frame (before ``accept``: refuses the upgrade)."""

    async def send_texts(self, texts: Sequence[str]) -> None:
        """Sends several text frames in order; override to batch writes."""
        for text in texts:
            await self.send_text(text)

    # ---- the original plan's JSON interface (implement these, or the text interface) ----

    async def receive_json(self) -> dict[str, Any]:
        """The next message, parsed (the original plan's interface)."""
        raise TypeError(f"{type(self).__name__} implements neither receive nor receive_json")

    async def send_json(self, data: dict[str, Any]) -> None:
        """Sends one message as a JSON text frame (the original plan's interface)."""
        raise TypeError(f"{type(self).__name__} implements neither send_text nor send_json")

    async def send_bytes(self, data: bytes) -> None:
        """Sends one UTF-8 message; it must go out as a text frame (the original plan's
        interface)."""
        raise TypeError(f"{type(self).__name__} implements neither send_text nor send_bytes")

    @property
    def is_connected(self) -> bool:
        """Whether the client is still there (the original plan's interface); the text
        interface signals the end by ``receive`` returning ``None`` instead."""
        return True


def _overrides(cls: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(WebSocketAdapter, name)


def _check_adapter_class(cls: type) -> None:
    if not (_overrides(cls, "receive") or _overrides(cls, "receive_json")):
        raise TypeError(
            f"{cls.__name__} must implement receive() (text interface) or receive_json() "
            "(the original plan's interface)"
        )
    if not any(_overrides(cls, n) for n in ("send_text", "send_json", "send_bytes")):
        raise TypeError(
            f"{cls.__name__} must implement send_text() (text interface), or send_json() / "
            "send_bytes() (the original plan's interface)"
        )


class SubscriptionProtocolHandler(ABC):
    """Serves one WebSocket for a manager (the original plan's protocol-handler seam)."""

    @abstractmethod
    async def handle_connection(
        self,
        websocket: WebSocketAdapter,
        manager: SubscriptionManager | None = None,
        auth_handler: Any = None,
    ) -> None:
        """Serves ``websocket`` until either side closes it."""


class GraphQLTransportWSHandler(SubscriptionProtocolHandler):
    """Serves one WebSocket for a :class:`SubscriptionManager` through its Rust engine:
    graphql-transport-ws or the legacy graphql-ws, negotiated by subprotocol.

    ``auth_handler`` (``None``, a :class:`JwtAuth`, or a callable like the manager's
    ``auth``) decides ``connection_init`` for the connections this handler serves,
    instead of the manager's ``auth``; the manager's ``on_connect`` hooks still run.
    """

    def __init__(
        self, manager: SubscriptionManager | None = None, auth_handler: Any = None
    ) -> None:
        self.manager = manager
        self.auth_handler = auth_handler

    async def handle(self, websocket: WebSocketAdapter, auth_handler: Any = None) -> None:
        """Serves ``websocket`` until either side closes it; ``auth_handler`` overrides the
        handler's and the manager's for this connection."""
        await self.handle_connection(websocket, None, auth_handler)

    async def handle_connection(
        self,
        websocket: WebSocketAdapter,
        manager: SubscriptionManager | None = None,
        auth_handler: Any = None,
    ) -> None:
        """Serves ``websocket`` for ``manager`` (default: the handler's) until either side
        closes it. ``auth_handler`` overrides the handler's and the manager's auth."""
        manager = manager if manager is not None else self.manager
        if manager is None:
            raise TypeError(
                "GraphQLTransportWSHandler needs a manager: GraphQLTransportWSHandler(manager) "
                "or handle_connection(websocket, manager)"
            )
        auth = auth_handler if auth_handler is not None else self.auth_handler
        await manager.start()
        authenticator = manager.authenticator_for(auth) if auth is not None else None
        executor = manager.executor
        subprotocol = executor.negotiate(list(websocket.subprotocols))
        try:
            session = executor.open_session(subprotocol, authenticator)
        except _rs.SubscriptionError as err:
            await websocket.close(TRY_AGAIN_LATER, str(err))
            return
        await websocket.accept(subprotocol)
        frame_writer = FrameWriter(session, websocket)
        writer: asyncio.Future[None]
        if session.start_writing(frame_writer.deliver):
            writer = frame_writer.done
        else:
            # A loop the executor does not run on: await the frames instead.
            writer = asyncio.ensure_future(self._write(session, websocket))
        try:
            await self._read(session, websocket, writer)
        finally:
            session.client_gone()
            try:
                await writer
            except Exception:  # the socket broke while writing: nothing left to tell it
                logger.debug("writing to a closed WebSocket failed", exc_info=True)

    @staticmethod
    async def _read(
        session: _rs.Session, websocket: WebSocketAdapter, writer: asyncio.Future[None]
    ) -> None:
        receiving: asyncio.Future[str | bytes | None] | None = None
        try:
            while True:
                receiving = asyncio.ensure_future(websocket.receive())
                waiters: list[asyncio.Future[Any]] = [receiving, writer]
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    # The engine closed the connection: stop reading.
                    return
                message = receiving.result()
                receiving = None
                if message is None:
                    return
                try:
                    if isinstance(message, str):
                        session.feed(message)
                    else:
                        session.feed_bytes(bytes(message))
                except _rs.SubscriptionError as err:
                    await websocket.close(POLICY_VIOLATION, str(err))
                    return
        finally:
            if receiving is not None and not receiving.done():
                receiving.cancel()
                with contextlib.suppress(BaseException):
                    await receiving

    @staticmethod
    async def _write(session: _rs.Session, websocket: WebSocketAdapter) -> None:
        while True:
            frames = session.try_recv()
            if frames is None:
                return
            if not frames:
                frames = await session.recv()
                if frames is None:
                    return
            if await write_frames(websocket, frames):
                return
