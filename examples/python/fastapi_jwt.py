"""FastAPI with JWT authentication: tokens are verified in Rust (HS256 here; RS256 with
`JwtAuth(public_key_pem=...)`), the principal's roles gate a field, and tenants never see
each other's events.

    FRAISEQL_JWT_SECRET=change-me uvicorn examples.python.fastapi_jwt:app

A client sends the token in `connection_init`: `{"type": "connection_init", "payload":
{"token": "<jwt>"}}` (or `{"Authorization": "Bearer <jwt>"}`). The token needs `exp`, and
`sub` (the user); `tenant_id` and `roles` are read when present. A missing, forged or
expired token closes the connection with 4403.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Header, HTTPException
from fraiseql_subscriptions import (
    JwtAuth,
    SubscriptionConfig,
    SubscriptionManager,
)
from pydantic import BaseModel

SECRET = os.environ.get("FRAISEQL_JWT_SECRET", "change-me-in-production")

manager = SubscriptionManager(
    auth=JwtAuth(secret=SECRET, issuer=["fraiseql-example"]),
    config=SubscriptionConfig(multi_tenant=True),
)

# Everyone signed in: the messages of a room, within the principal's own tenant.
manager.subscription("message", channel="room:{room}")
# Only the "moderator" role may watch the moderation queue.
manager.subscription("flagged", channel="moderation", roles=["moderator"])

app = FastAPI(lifespan=manager.lifespan)
app.include_router(manager.router())


class Message(BaseModel):
    room: str
    text: str
    tenant: str


@app.post("/messages", status_code=202)
async def post_message(message: Message, x_api_key: str = Header()) -> dict[str, bool]:
    """Publishes to the room's subscribers of `tenant` (your own API's auth goes here)."""
    if x_api_key != os.environ.get("FRAISEQL_API_KEY", "dev-key"):
        raise HTTPException(status_code=401, detail="bad API key")
    await manager.publish(f"room:{message.room}", {"text": message.text}, tenant_id=message.tenant)
    return {"ok": True}
