"""A plain ASGI app (no framework): any ASGI server (uvicorn, hypercorn, daphne) serves it.

uvicorn examples.python.asgi_app:app             # ws://127.0.0.1:8000/graphql
"""

from __future__ import annotations

from fraiseql_subscriptions import SubscriptionManager
from fraiseql_subscriptions.integrations.asgi import SubscriptionASGIApp

manager = SubscriptionManager()
manager.subscription("message", channel="room:{room}")

# WebSocket connections on /graphql are subscriptions; pass fallback=other_asgi_app to
# serve everything else from your own application.
app = SubscriptionASGIApp(manager)
