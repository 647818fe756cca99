"""The apps ``test_hosting.py`` serves on uvicorn and on the native server (``listen(...,
app=...)``): a FastAPI app using most of what an ASGI server must get right, one serving
GraphQL queries and mutations over HTTP beside the native subscription socket, one whose
lifespan fails, and ``python hosting_app.py MODE``: a process that leaves the interpreter
with requests in flight (``python hosting_app.py client PORT`` makes them).

Each app records what it saw in a :class:`Probe`, whose flags a test awaits (bounded)
instead of sleeping: a stream closed by the client's disconnect, a task cancelled at the
response timeout, a background task run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import (
    BackgroundTasks,
    FastAPI,
    File,
    Form,
    Request,
    Response,
    UploadFile,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

#: Bytes of each chunk of ``/stream-out``: the middle one is past the native server's
#: 64 KiB response high-water mark, so the app's ``send`` waits for the client once.
STREAM_CHUNKS = [b"first chunk\n", b"x" * 200_000 + b"\n", b"", b"last chunk\n"]


class Probe:
    """What an app saw, as named flags a test can await (created on the test's loop)."""

    def __init__(self) -> None:
        self._flags: dict[str, asyncio.Event] = {}
        self.values: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def flag(self, name: str) -> asyncio.Event:
        return self._flags.setdefault(name, asyncio.Event())

    def set(self, name: str, value: Any = True) -> None:
        self.values[name] = value
        self.flag(name).set()

    def seen(self, name: str) -> bool:
        return self.flag(name).is_set()

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    async def wait(self, name: str, timeout: float = 20.0) -> Any:
        """The value of flag `name` once set (bounded only so that a bug fails, not hangs)."""
        await asyncio.wait_for(self.flag(name).wait(), timeout)
        return self.values[name]


class Item(BaseModel):
    name: str
    count: int


def create_app(probe: Probe) -> ASGIApp:
    """The FastAPI app of the differential and robustness tests, behind a raw ASGI layer
    whose ``/raw/...`` routes fail the ways FastAPI never does (it always answers)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        probe.count("lifespan-startup")
        yield {"key": "from the lifespan"}
        probe.count("lifespan-shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/json")
    async def get_json(request: Request, x: int = 0) -> dict[str, Any]:
        probe.count("json")
        probe.set("json")
        return {
            "x": x,
            "double": x * 2,
            "query": sorted(request.query_params.multi_items()),
            "unicode": "fraise \u00e0 la cr\u00e8me \U0001f353",
        }

    @app.post("/json")
    async def post_json(item: Item) -> dict[str, Any]:
        return {"name": item.name, "count": item.count, "double": item.count * 2}

    @app.api_route("/scope/{rest:path}", methods=["GET", "POST"])
    async def scope(request: Request, rest: str) -> dict[str, Any]:
        # What the server put in the scope, but for what legitimately differs between two
        # servers on two ports: the Host header, the peer's and the server's ports.
        s = request.scope
        return {
            "type": s["type"],
            "asgi_version": s["asgi"]["version"],
            "http_version": s["http_version"],
            "scheme": s["scheme"],
            "method": s["method"],
            "path": s["path"],
            "rest": rest,
            "raw_path": s["raw_path"].decode("latin-1"),
            "query_string": s["query_string"].decode("latin-1"),
            "root_path": s["root_path"],
            "headers": [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in s["headers"] if k != b"host"
            ],
            "client_host": s["client"][0],
            "server_host": s["server"][0],
            "state_key": s["state"]["key"],
        }

    @app.post("/form")
    async def form(
        name: Annotated[str, Form()], tags: Annotated[list[str], Form()]
    ) -> dict[str, Any]:
        return {"name": name, "tags": tags}

    @app.post("/upload")
    async def upload(
        note: Annotated[str, Form()], file: Annotated[UploadFile, File()]
    ) -> dict[str, Any]:
        data = await file.read()
        return {
            "note": note,
            "filename": file.filename,
            "content_type": file.content_type,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    @app.post("/stream-in")
    async def stream_in(request: Request, id: str = "") -> Response:
        probe.set(f"stream-in-entered:{id}")
        digest = hashlib.sha256()
        length = 0
        try:
            async for chunk in request.stream():
                length += len(chunk)
                digest.update(chunk)
                probe.values[f"stream-in-bytes:{id}"] = length
                if length:
                    probe.set(f"stream-in-reading:{id}")
        except ClientDisconnect:
            probe.set(f"stream-in-disconnected:{id}", length)
            raise
        return JSONResponse({"length": length, "sha256": digest.hexdigest()})

    @app.get("/stream-out")
    async def stream_out() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in STREAM_CHUNKS:
                yield chunk
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @app.get("/ticks")
    async def ticks(id: str = "") -> StreamingResponse:
        # Streams until the client goes away; records how the stream ended.
        async def forever() -> AsyncIterator[bytes]:
            n = 0
            try:
                while True:
                    yield f"tick {n}\n".encode()
                    n += 1
                    await asyncio.sleep(0.01)
            except BaseException as exc:
                probe.set(f"ticks-ended:{id}", type(exc).__name__)
                raise

        return StreamingResponse(forever(), media_type="text/plain")

    @app.get("/sse", response_class=EventSourceResponse)
    async def sse() -> AsyncIterator[ServerSentEvent]:
        for n in range(3):
            yield ServerSentEvent(data={"n": n}, event="tick", id=str(n))
        yield ServerSentEvent(data="bye", event="end")

    @app.get("/cookies/set")
    async def set_cookies() -> Response:
        response = JSONResponse({"set": True})
        response.set_cookie("session", "s3cr3t", httponly=True, samesite="strict")
        response.set_cookie("theme", "dark", path="/cookies")
        return response

    @app.get("/cookies")
    async def read_cookies(request: Request) -> dict[str, str]:
        return dict(request.cookies)

    @app.get("/headers")
    async def headers(request: Request) -> Response:
        response = Response(b"headers", media_type="text/plain")
        response.headers["X-Custom"] = "custom value"
        response.headers["Cache-Control"] = "no-store"
        response.headers.append("X-Multi", "one")
        response.headers.append("X-Multi", "two")
        response.headers["X-Echo"] = request.headers.get("x-echo", "")
        response.headers["X-Echo-Count"] = str(len(request.headers.getlist("x-repeat")))
        return response

    @app.get("/redirect/{status}")
    async def redirect(status: int) -> RedirectResponse:
        return RedirectResponse("/json?x=7", status_code=status)

    @app.get("/empty", status_code=204)
    async def empty() -> Response:
        return Response(status_code=204)

    @app.api_route("/head", methods=["GET", "HEAD"])
    async def head() -> Response:
        return Response(b"a body HEAD must not carry", media_type="text/plain")

    @app.post("/only-post")
    async def only_post() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom (raised on purpose by the test app)")

    @app.post("/background/{key}")
    async def background(key: str, tasks: BackgroundTasks) -> dict[str, bool]:
        async def run() -> None:
            await asyncio.sleep(0)
            probe.set(f"background:{key}")

        tasks.add_task(run)
        return {"queued": True}

    @app.get("/background/{key}")
    async def background_ran(key: str) -> dict[str, bool]:
        return {"ran": probe.seen(f"background:{key}")}

    @app.get("/state")
    async def state(request: Request) -> dict[str, str]:
        return {"key": request.state.key}

    @app.get("/sleep")
    async def sleep(id: str = "") -> dict[str, str]:
        # Never answers: for the response timeout and for requests in flight at exit.
        probe.count("sleeping")
        probe.set(f"sleep-entered:{id}")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            probe.set(f"sleep-cancelled:{id}")
            raise
        return {"slept": id}

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol=_pick(websocket.scope["subprotocols"]))
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    text = message["text"]
                    if text == "close":
                        await websocket.close(code=4000, reason="asked to close")
                        return
                    await websocket.send_text(f"echo: {text}")
                else:
                    await websocket.send_bytes(bytes(reversed(message["bytes"])))
        except WebSocketDisconnect:
            return

    @app.websocket("/ws/refuse")
    async def refuse(websocket: WebSocket) -> None:
        await websocket.close(code=1008)

    return RawRoutes(app)


def _pick(offered: list[str]) -> str | None:
    return "echo.v1" if "echo.v1" in offered else None


class RawRoutes:
    """Plain ASGI routes in front of `app`: an app that raises before it answers, and one
    that raises mid-response (FastAPI's own routes always answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http" and scope["path"] == "/raw/raise-before-start":
            raise RuntimeError("raised before the response started (on purpose)")
        if scope["type"] == "http" and scope["path"] == "/raw/raise-mid-body":
            start = {"type": "http.response.start", "status": 200, "headers": []}
            await send(start)
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("raised mid-response (on purpose)")
        await self.app(scope, receive, send)


def create_failing_app() -> FastAPI:
    """An app whose lifespan startup fails."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("database unreachable (on purpose)")
        yield

    return FastAPI(lifespan=lifespan)


def create_graphql_app(manager: Any) -> FastAPI:
    """GraphQL queries and mutations over HTTP (``POST /graphql``, graphql-core), the mutation
    publishing to `manager`'s subscribers: served beside the native subscription socket."""
    from graphql import (
        GraphQLArgument,
        GraphQLField,
        GraphQLNonNull,
        GraphQLObjectType,
        GraphQLSchema,
        GraphQLString,
        graphql,
    )

    async def post(_root: Any, _info: Any, room: str, text: str) -> str:
        await manager.publish(f"room:{room}", {"text": text})
        return text

    schema = GraphQLSchema(
        query=GraphQLObjectType(
            "Query",
            {
                "hello": GraphQLField(
                    GraphQLString,
                    args={"name": GraphQLArgument(GraphQLString)},
                    resolve=lambda _root, _info, name="world": f"hello {name}",
                )
            },
        ),
        mutation=GraphQLObjectType(
            "Mutation",
            {
                "post": GraphQLField(
                    GraphQLString,
                    args={
                        "room": GraphQLArgument(GraphQLNonNull(GraphQLString)),
                        "text": GraphQLArgument(GraphQLNonNull(GraphQLString)),
                    },
                    resolve=post,
                )
            },
        ),
    )
    app = FastAPI()

    @app.post("/graphql")
    async def execute(request: Request) -> dict[str, Any]:
        body = await request.json()
        result = await graphql(
            schema,
            body["query"],
            variable_values=body.get("variables"),
            operation_name=body.get("operationName"),
        )
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [error.formatted for error in result.errors]
        return answer

    return app


# ---- a process that leaves with requests in flight -------------------------------------

#: Requests held in flight (the app sleeps on each) when the server's process leaves.
SLEEPERS = 6
#: Requests served before it leaves (more keep coming).
FLOODED = 50


def hold_and_flood(port: int) -> None:
    """The client process: holds `SLEEPERS` requests in flight and floods the server with
    others from four threads, until the server is gone."""
    import socket
    import threading

    def hold(n: int) -> None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"GET /sleep?id={n} HTTP/1.1\r\nHost: exit\r\n\r\n".encode())
            while s.recv(65536):
                pass

    def flood() -> None:
        with contextlib.suppress(OSError):
            while True:
                with socket.create_connection(("127.0.0.1", port)) as s:
                    for _ in range(100):
                        s.sendall(b"GET /json?x=1 HTTP/1.1\r\nHost: exit\r\n\r\n")
                        if not s.recv(65536):
                            return

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(SLEEPERS)]
    threads += [threading.Thread(target=flood) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def serve_until_in_flight() -> tuple[Any, Any]:
    """The server process: hosts the app on a free port (printed), returns once the
    client's `SLEEPERS` requests are in flight and `FLOODED` others were served."""
    from fraiseql_subscriptions import SubscriptionManager

    # -X dev's asyncio debug mode, but for its slow-callback reports: on a loaded machine
    # any step may take 0.1 s.
    asyncio.get_running_loop().slow_callback_duration = 3600
    probe = Probe()
    manager = SubscriptionManager()
    server = await manager.listen("127.0.0.1", 0, app=create_app(probe))
    print(server.port, flush=True)
    for n in range(SLEEPERS):
        await probe.wait(f"sleep-entered:{n}", 60)
    while probe.counts.get("json", 0) < FLOODED:
        await probe.wait("json", 60)
        probe.flag("json").clear()
    print("requests in flight", flush=True)
    return manager, server


def leave(mode: str) -> None:
    """Leaves the interpreter with requests in flight, the way `mode` says:

    - ``return``: returns from ``asyncio.run``'s coroutine (which cancels the app's tasks);
    - ``sys-exit``: ``sys.exit(3)`` from inside the coroutine;
    - ``abandon-loop``: stops running the loop with the app's tasks pending (never
      cancelled; the loop never closed) and exits, the server still referenced.
    """
    if mode == "return":

        async def main() -> None:
            await serve_until_in_flight()

        asyncio.run(main())
    elif mode == "sys-exit":

        async def main() -> None:
            await serve_until_in_flight()
            sys.exit(3)

        asyncio.run(main())
    elif mode == "abandon-loop":
        loop = asyncio.new_event_loop()
        _kept = loop.run_until_complete(serve_until_in_flight())
        sys.exit(0)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    if sys.argv[1] == "client":
        hold_and_flood(int(sys.argv[2]))
    else:
        leave(sys.argv[1])
