"""The subscription endpoint as the adapters mount it: per-endpoint ``auth_handler``, the
original plan's path beside the canonical one, the FastAPI router forms, the answer to a
plain HTTP request, and a server that cannot speak WebSocket. Real uvicorn and native
servers, real WebSocket clients."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import build_app, client, http_get, serve, serve_app, wait_for

from fraiseql_subscriptions import AuthenticationError, Principal, SubscriptionManager
from fraiseql_subscriptions.subscriptions import upgrade

QUERY = 'subscription { message(room: "r") { text } }'


def chat_manager(auth: Any = None) -> SubscriptionManager:
    manager = SubscriptionManager(auth=auth)
    manager.subscription("message", channel="room:{room}")
    return manager


def refuse_all(payload: dict[str, Any] | None) -> Principal:
    raise AuthenticationError("Forbidden: endpoint auth refused")


def only_alice(payload: dict[str, Any] | None) -> Principal:
    if (payload or {}).get("user") != "alice":
        raise AuthenticationError("Forbidden: not alice")
    return Principal(user_id="alice")


def app_with_endpoint_auth(kind: str, manager: SubscriptionManager, auth_handler: Any) -> Any:
    """An app of `kind` whose subscription endpoint has its own `auth_handler`."""
    if kind == "fastapi":
        from fastapi import FastAPI

        from fraiseql_subscriptions.integrations.fastapi import SubscriptionRouterFactory

        app = FastAPI(lifespan=manager.lifespan)
        app.include_router(SubscriptionRouterFactory.create(manager, auth_handler=auth_handler))
        return app
    if kind == "fastapi-router":
        from fastapi import FastAPI

        app = FastAPI(lifespan=manager.lifespan)
        app.include_router(manager.router(auth_handler=auth_handler))
        return app
    if kind == "starlette":
        from starlette.applications import Starlette

        from fraiseql_subscriptions.integrations.starlette import create_subscription_app

        app = Starlette(lifespan=manager.lifespan)
        create_subscription_app(app, manager, auth_handler=auth_handler)
        return app
    if kind == "asgi":
        from fraiseql_subscriptions.integrations.asgi import SubscriptionASGIApp

        return SubscriptionASGIApp(manager, auth_handler=auth_handler)
    if kind == "handle_connection":
        # The original plan's form: a handler without a manager, both given per call.
        from starlette.applications import Starlette
        from starlette.routing import WebSocketRoute
        from starlette.websockets import WebSocket

        from fraiseql_subscriptions.integrations.starlette import StarletteWebSocketAdapter
        from fraiseql_subscriptions.subscriptions.http_adapter import GraphQLTransportWSHandler

        handler = GraphQLTransportWSHandler()

        async def endpoint(websocket: WebSocket) -> None:
            adapter = StarletteWebSocketAdapter(websocket)
            await handler.handle_connection(adapter, manager, auth_handler)

        return Starlette(routes=[WebSocketRoute("/graphql", endpoint)], lifespan=manager.lifespan)
    raise ValueError(kind)


ENDPOINT_KINDS = ["fastapi", "fastapi-router", "starlette", "asgi", "handle_connection"]


@pytest.mark.parametrize("kind", ENDPOINT_KINDS)
async def test_an_endpoint_auth_handler_overrides_the_managers_auth(kind: str) -> None:
    # The manager accepts everyone; the endpoint's auth_handler decides.
    manager = chat_manager(auth=lambda payload: Principal(user_id="anyone"))
    connected: list[Any] = []
    manager.on_connect(lambda payload, principal: connected.append(principal["user_id"]))
    async with serve_app(app_with_endpoint_auth(kind, manager, only_alice), manager) as running:
        async with client(running.url) as c:
            await c.send({"type": "connection_init", "payload": {"user": "mallory"}})
            assert await c.closed() == (4403, "Forbidden: not alice")
        async with client(running.url) as c:
            assert (await c.init({"user": "alice"}))["type"] == "connection_ack"
            await c.subscribe("1", QUERY)
            await wait_for(lambda: manager.get_metrics()["active_subscriptions"] == 1)
            await manager.publish("room:r", {"text": "hi"})
            assert (await c.recv())["payload"] == {"data": {"message": {"text": "hi"}}}
    # The manager's on_connect hooks still run after the endpoint's auth accepted.
    assert connected == ["alice"]


async def test_a_refusing_auth_handler_closes_4403_on_every_transport_form() -> None:
    manager = chat_manager()
    app = app_with_endpoint_auth("fastapi", manager, refuse_all)
    async with serve_app(app, manager) as running:
        for protocol in ("graphql-transport-ws", "graphql-ws"):
            async with client(running.url, [protocol]) as c:
                await c.send({"type": "connection_init"})
                assert await c.closed() == (4403, "Forbidden: endpoint auth refused")


@pytest.mark.parametrize("transport", ["fastapi", "starlette", "asgi", "native"])
async def test_the_original_plans_path_is_served_beside_the_canonical_one(
    transport: str,
) -> None:
    manager = chat_manager()
    async with serve(transport, manager) as running:
        base = running.url.rsplit("/", 1)[0]
        for path in ("/graphql", "/graphql/subscriptions"):
            async with client(base + path) as c:
                assert (await c.init())["type"] == "connection_ack", path


async def test_legacy_path_none_serves_only_the_canonical_path() -> None:
    from fastapi import FastAPI

    from fraiseql_subscriptions import SubscriptionConfig

    manager = SubscriptionManager(config=SubscriptionConfig(legacy_path=None))
    manager.subscription("message", channel="room:{room}")
    app = FastAPI(lifespan=manager.lifespan)
    app.include_router(manager.router())
    async with serve_app(app, manager) as running:
        http = running.url.replace("ws://", "http://")
        assert (await http_get(http))[0] == 426
        assert (await http_get(http + "/subscriptions"))[0] == 404


async def test_a_router_with_a_prefix_and_an_explicit_path() -> None:
    from fastapi import FastAPI

    manager = chat_manager()
    app = FastAPI(lifespan=manager.lifespan)
    app.include_router(manager.router("/subs", prefix="/api"))
    async with serve_app(app, manager) as running:
        base = running.url.rsplit("/", 1)[0]
        async with client(base + "/api/subs") as c:
            assert (await c.init())["type"] == "connection_ack"


@contextlib.asynccontextmanager
async def captured(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    with caplog.at_level(logging.ERROR, logger="fraiseql_subscriptions"):
        yield


@pytest.mark.parametrize("kind", ["fastapi", "starlette", "asgi"])
async def test_a_plain_http_request_gets_426_with_a_hint(kind: str) -> None:
    manager = chat_manager()
    async with serve(kind, manager) as running:
        url = running.url.replace("ws://", "http://")
        status, text = await http_get(url)
        assert status == 426
        assert "graphql-transport-ws" in text


@pytest.mark.parametrize("kind", ["fastapi", "starlette", "asgi"])
async def test_a_server_without_websocket_support_is_named_not_a_silent_404(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn with ws="none" answers the upgrade as plain HTTP, as it does when neither
    # websockets nor wsproto is installed.
    manager = chat_manager()
    async with (
        captured(caplog),
        serve_app(build_app(kind, manager), manager, ws="none") as running,
    ):
        url = running.url.replace("ws://", "http://")
        headers = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "graphql-transport-ws",
        }
        status, text = await http_get(url, headers)
    assert status == 426
    assert "websockets" in text
    assert "the ASGI server did not upgrade it" in caplog.text


def test_the_startup_check_names_the_package_when_uvicorn_has_no_websocket_library(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(upgrade, "_installed", lambda module: False)
    with caplog.at_level(logging.ERROR, logger="fraiseql_subscriptions"):
        assert upgrade.check_websocket_support() is False
    assert 'pip install "fraiseql-subscriptions[fastapi]"' in caplog.text
    monkeypatch.setattr(upgrade, "_installed", lambda module: module == "wsproto")
    assert upgrade.check_websocket_support() is True
