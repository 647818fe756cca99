"""When the ASGI server cannot speak WebSocket: say so, instead of a silent 404.

uvicorn serves WebSockets only when ``websockets`` or ``wsproto`` is installed; without one
it answers the upgrade request as plain HTTP, the app sees an ``http`` request at the
subscription path, and the client only sees "connect failed". Two checks name the package
to install: :func:`check_websocket_support` at startup (the lifespans call it), and
:func:`upgrade_required` as the HTTP answer at every subscription path.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterable, Mapping

logger = logging.getLogger("fraiseql_subscriptions")

#: What to install for WebSocket support under uvicorn.
INSTALL_HINT = (
    'pip install "fraiseql-subscriptions[fastapi]" (or "uvicorn[standard]", or "websockets")'
)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_websocket_library() -> str | None:
    """Why the running ASGI server cannot serve WebSockets, or ``None`` when it can (or we
    cannot tell: only uvicorn needs a separate library)."""
    if "uvicorn" not in sys.modules:
        return None
    if _installed("websockets") or _installed("wsproto"):
        return None
    return (
        "uvicorn is serving this app without a WebSocket library (websockets or wsproto), so "
        "GraphQL subscription clients cannot connect: their upgrade requests reach the app "
        f"as plain HTTP. Install one: {INSTALL_HINT}"
    )


def check_websocket_support() -> bool:
    """Logs an error naming the package to install when the ASGI server cannot serve
    WebSockets; returns whether it can (as far as we can tell)."""
    problem = missing_websocket_library()
    if problem is not None:
        logger.error(problem)
        return False
    return True


def upgrade_required(headers: Iterable[tuple[bytes, bytes]] | Mapping[str, str]) -> tuple[int, str]:
    """The HTTP answer (status, text) for a plain HTTP request at a subscription path.

    A request carrying ``Upgrade: websocket`` that still arrived as HTTP means the server
    did not upgrade it: that is logged as an error with the package to install.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    upgrade = ""
    for name, value in items:
        key = name.decode("latin-1") if isinstance(name, bytes) else name
        if key.lower() == "upgrade":
            upgrade = value.decode("latin-1") if isinstance(value, bytes) else value
    if upgrade.lower() == "websocket":
        problem = missing_websocket_library() or (
            "a WebSocket upgrade request reached the subscription endpoint as plain HTTP: the "
            f"ASGI server did not upgrade it. Under uvicorn: {INSTALL_HINT}"
        )
        logger.error(problem)
        return 426, f"WebSocket upgrade not supported by this server. {problem}\n"
    return 426, (
        "This is a GraphQL subscription endpoint: connect with a WebSocket client speaking "
        "graphql-transport-ws (or the legacy graphql-ws).\n"
    )
