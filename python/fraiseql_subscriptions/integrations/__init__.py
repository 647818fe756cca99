"""Mount a :class:`~fraiseql_subscriptions.SubscriptionManager` in a server you already run.

- FastAPI: :class:`fraiseql_subscriptions.integrations.fastapi.GraphQLSubscriptionRouter`
  (``app.include_router(manager.router())``; ``SubscriptionRouterFactory.create`` too)
- Starlette: :func:`fraiseql_subscriptions.integrations.starlette.create_subscription_app`
- any ASGI server: :class:`fraiseql_subscriptions.integrations.asgi.SubscriptionASGIApp`

Each imports its framework only when used. Servers that are not ASGI:
:mod:`fraiseql_subscriptions.contrib`.
"""
