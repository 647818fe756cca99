"""Adapters for servers that are not ASGI apps.

- :mod:`fraiseql_subscriptions.contrib.custom_server`: :class:`CustomServerAdapter`, the
  template for any server that hands you a WebSocket: four callables and you are served.
- :mod:`fraiseql_subscriptions.contrib.websockets_server`: the ``websockets`` library's own
  server (``serve_websockets(manager, host, port)``).
"""
