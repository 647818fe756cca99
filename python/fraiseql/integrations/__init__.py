"""Mount a :class:`~fraiseql.subscriptions.SubscriptionManager` in a server you already run.

- FastAPI: :class:`fraiseql.integrations.fastapi.SubscriptionRouterFactory`
- Starlette: :func:`fraiseql.integrations.starlette.create_subscription_app`
- any ASGI server: :class:`fraiseql.integrations.asgi.SubscriptionASGIApp`

Each imports its framework only when used.
"""
