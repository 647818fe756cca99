"""FraiseQL: GraphQL subscriptions with a Rust engine under a Python API.

Start with :mod:`fraiseql.subscriptions` (``SubscriptionManager``) and mount it with
:mod:`fraiseql.integrations` (FastAPI, Starlette, plain ASGI), or serve it natively with
``await manager.serve(host, port)``.
"""

from fraiseql._fraiseql_rs import __version__

__all__ = ["__version__"]
