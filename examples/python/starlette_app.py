"""Starlette: the subscription endpoint added to an existing app.

uvicorn examples.python.starlette_app:app        # ws://127.0.0.1:8000/graphql
"""

from __future__ import annotations

from fraiseql_subscriptions import SubscriptionManager
from fraiseql_subscriptions.integrations.starlette import create_subscription_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

manager = SubscriptionManager()
manager.subscription("message", channel="room:{room}")


async def post_message(request: Request) -> JSONResponse:
    body = await request.json()
    await manager.publish(f"room:{body['room']}", body)
    return JSONResponse({"ok": True}, status_code=202)


app = Starlette(
    routes=[Route("/messages", post_message, methods=["POST"])], lifespan=manager.lifespan
)
create_subscription_app(app, manager)
