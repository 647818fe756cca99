"""Starlette with middleware around the subscription endpoint: CORS for the HTTP routes, a
pure-ASGI middleware that tags every request and WebSocket with an id (BaseHTTPMiddleware
only sees HTTP; WebSocket endpoints need ASGI middleware), and the endpoint's own
`auth_handler` reading an API key from `connection_init`.

    uvicorn examples.python.starlette_middleware:app      # ws://127.0.0.1:8000/graphql
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from fraiseql_subscriptions import AuthenticationError, Principal, SubscriptionManager
from fraiseql_subscriptions.integrations.starlette import subscription_routes
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("example")
API_KEYS = {"key-ada": "ada", "key-bob": "bob"}

manager = SubscriptionManager()
manager.subscription("message", channel="room:{room}")


def api_key_auth(payload: dict[str, Any] | None) -> Principal:
    """The endpoint's auth: `{"type": "connection_init", "payload": {"apiKey": "..."}}`.
    Raising refuses the connection with close 4403 and this message."""
    user = API_KEYS.get(str((payload or {}).get("apiKey")))
    if user is None:
        raise AuthenticationError("Forbidden: unknown API key")
    return Principal(user_id=user)


class RequestIdMiddleware:
    """Gives every HTTP request and WebSocket connection an id: in the scope's `state` for
    the app, and as an `x-request-id` header on HTTP responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = str(next(self.ids))
        scope.setdefault("state", {})["request_id"] = request_id
        logger.info("%s %s (request %s)", scope["type"], scope["path"], request_id)

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, tagged)


async def post_message(request: Request) -> JSONResponse:
    body = await request.json()
    await manager.publish(f"room:{body['room']}", {"text": body["text"]})
    return JSONResponse({"ok": True}, status_code=202)


app = Starlette(
    routes=[
        Route("/messages", post_message, methods=["POST"]),
        *subscription_routes(manager, auth_handler=api_key_auth),
    ],
    middleware=[
        Middleware(CORSMiddleware, allow_origins=["http://localhost:3000"], allow_methods=["*"]),
        Middleware(RequestIdMiddleware),
    ],
    lifespan=manager.lifespan,
)
