"""``python -m fraiseql_subscriptions serve module:app``: a whole ASGI app (FastAPI,
Starlette, ...) on the native server, in the style of ``uvicorn module:app``.

The GraphQL WebSocket path is served in Rust by the app's :class:`SubscriptionManager`
(found in the app's module, or named with ``--manager module:attr``); every other request
goes to the app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from fraiseql_subscriptions.subscriptions.hosting import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_RESPONSE_TIMEOUT,
)
from fraiseql_subscriptions.subscriptions.manager import SubscriptionManager


class CliError(Exception):
    """A usage error: printed as ``error: ...`` with exit status 2."""


def load(reference: str) -> tuple[Any, Any]:
    """The object ``module:attr`` names (``attr`` may be dotted) and its module."""
    module_name, _, attrs = reference.partition(":")
    if not module_name or not attrs:
        raise CliError(f"{reference!r} is not of the form 'module:attribute' (e.g. main:app)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise
        raise CliError(
            f"cannot import module {module_name!r}: run from its directory or pass --app-dir"
        ) from None
    found: Any = module
    for attr in attrs.split("."):
        try:
            found = getattr(found, attr)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attrs!r}") from None
    return found, module


def find_manager(module: Any) -> SubscriptionManager:
    """The one :class:`SubscriptionManager` among ``module``'s globals."""
    managers = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, SubscriptionManager)
    }
    if len(managers) == 1:
        return next(iter(managers.values()))
    if not managers:
        raise CliError(
            f"no SubscriptionManager in module {module.__name__!r}: "
            "name it with --manager module:attribute"
        )
    raise CliError(
        f"several SubscriptionManagers in module {module.__name__!r} "
        f"({', '.join(sorted(managers))}): choose one with --manager module:attribute"
    )


def _optional_number(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float | None:
        if text.lower() == "none":
            return None
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive or 'none' (got {text})")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    """The command line."""
    main = argparse.ArgumentParser(
        prog="python -m fraiseql_subscriptions",
        description="FraiseQL Subscriptions on the native Rust server.",
    )
    commands = main.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve an ASGI app and its subscriptions on one port",
        description="Serves module:app (an ASGI 3 app) on the native server: the "
        "manager's GraphQL WebSocket path, /healthz and /metrics in Rust, every other "
        "request by the app.",
    )
    serve.add_argument("app", help="the ASGI app, as module:attribute (e.g. main:app)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (8000; 0 picks)")
    serve.add_argument(
        "--manager",
        help="the SubscriptionManager as module:attribute (default: the one in the app's module)",
    )
    serve.add_argument("--factory", action="store_true", help="app is a factory to call")
    serve.add_argument(
        "--app-dir", default=".", help="directory to import the app from (current directory)"
    )
    serve.add_argument("--root-path", default="", help="prefix a proxy strips (ASGI root_path)")
    serve.add_argument(
        "--max-body-bytes",
        type=_optional_number(int),
        default=DEFAULT_MAX_BODY_BYTES,
        help="413 for request bodies over this ('none': no limit; default 16 MiB)",
    )
    serve.add_argument(
        "--response-timeout",
        type=_optional_number(float),
        default=DEFAULT_RESPONSE_TIMEOUT,
        help="seconds the app has to start a response before 504 ('none': no limit; 60)",
    )
    serve.add_argument(
        "--lifespan",
        choices=("auto", "on", "off"),
        default="auto",
        help="run the app's ASGI lifespan (auto: when it supports it)",
    )
    serve.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the event loop the app runs on (auto: uvloop when installed)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="logging level (info)",
    )
    return main


async def _serve(manager: SubscriptionManager, app: Any, args: argparse.Namespace) -> None:
    server = await manager.listen(
        args.host,
        args.port,
        app=app,
        root_path=args.root_path,
        max_body_bytes=args.max_body_bytes,
        response_timeout=args.response_timeout,
        lifespan=args.lifespan,
    )
    print(
        f"fraiseql_subscriptions listening on http://{server.host}:{server.port} "
        f"(GraphQL WebSocket at {manager.config.path})",
        flush=True,
    )
    try:
        await server.wait()
    finally:
        await manager.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, os.path.abspath(args.app_dir))
    try:
        app, module = load(args.app)
        if args.factory:
            app = app()
        if not callable(app):
            raise CliError(f"{args.app!r} is not an ASGI app (not callable)")
        if args.manager:
            manager, _ = load(args.manager)
            if not isinstance(manager, SubscriptionManager):
                raise CliError(f"{args.manager!r} is not a SubscriptionManager")
        else:
            manager = find_manager(module)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        task = asyncio.ensure_future(_serve(manager, app, args))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        runner = _loop_runner(args.loop)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runner(run())
    return 0


def _loop_runner(choice: str) -> Any:
    """``asyncio.run``, or ``uvloop.run`` when chosen (or installed, for ``auto``)."""
    if choice == "asyncio":
        return asyncio.run
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise CliError("--loop uvloop needs uvloop: pip install uvloop") from None
        return asyncio.run
    return uvloop.run
