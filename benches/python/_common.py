"""What every Python benchmark server shares: the load generator's command-line contract
(`--bind HOST:PORT --publish-token TOKEN`, then one "<name> listening on http://ADDR" line
on stdout) and a bound, listening socket for uvicorn."""

from __future__ import annotations

import argparse
import socket
import sys


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bind", default="127.0.0.1:0")
    parser.add_argument("--publish-token", required=True)
    parser.add_argument(
        "--resolver",
        action="store_true",
        help="serve `tick` through an identity Python resolver (measures its cost)",
    )
    parser.add_argument(
        "--app",
        action="store_true",
        help="host the FastAPI app of hosted_app.py on the same server (native targets)",
    )
    parser.add_argument(
        "--sequential-publisher",
        action="store_true",
        help=(
            "POST /publish only queues the events; one background task publishes them one "
            "at a time with `await manager.publish(...)`, as an app forwarding a feed does"
        ),
    )
    parser.add_argument(
        "--http-load",
        metavar="PATH",
        help="with --app: keep httpload running against PATH of the app while measured",
    )
    return parser.parse_args()


def listening_socket(bind: str) -> socket.socket:
    host, _, port = bind.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def announce(name: str, host: str, port: int) -> None:
    sys.stdout.write(f"{name} listening on http://{host}:{port}\n")
    sys.stdout.flush()


def authorized(header: str | None, token: str) -> bool:
    return header == f"Bearer {token}"
