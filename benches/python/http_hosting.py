"""HTTP benchmark of the hosted app: the same FastAPI app (`hosted_app.py`) under the
native server, uvicorn (uvloop + httptools) and granian (ASGI, uvloop), one after the
other on this machine, each driven by `httpload` (benches/e2e) with keep-alive connections:
requests/s and p99 for a small JSON endpoint and a 1 MiB streamed download.

    cargo build --release -p fraiseql-bench-e2e --bin httpload
    just python-dev --release
    .venv/bin/python benches/python/http_hosting.py [--duration 10] [--servers native,uvicorn]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = sys.executable
HTTPLOAD = ROOT / "target" / "release" / "httpload"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command(server: str, port: int) -> list[str]:
    if server == "native":
        return [
            PYTHON,
            "-m",
            "fraiseql_subscriptions",
            "serve",
            "hosted_app:app",
            "--port",
            str(port),
            "--app-dir",
            str(HERE),
            "--log-level",
            "warning",
        ]
    if server == "uvicorn":
        return [
            PYTHON,
            "-m",
            "uvicorn",
            "hosted_app:app",
            "--port",
            str(port),
            "--app-dir",
            str(HERE),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    if server == "granian":
        granian = str(Path(PYTHON).parent / "granian")
        return [
            granian,
            "--interface",
            "asgi",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            "--no-ws",
            "--working-dir",
            str(HERE),
            "hosted_app:app",
        ]
    raise SystemExit(f"unknown server {server!r}")


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not listen within 60 s")


def load(url: str, connections: int, duration: float) -> dict[str, object]:
    out = subprocess.run(
        [
            str(HTTPLOAD),
            "--url",
            url,
            "--connections",
            str(connections),
            "--duration-secs",
            str(duration),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--servers", default="native,uvicorn,granian")
    parser.add_argument("--json-connections", type=int, default=64)
    parser.add_argument("--download-connections", type=int, default=16)
    args = parser.parse_args()
    if not HTTPLOAD.exists():
        raise SystemExit(
            "build httpload: cargo build --release -p fraiseql-bench-e2e --bin httpload"
        )
    rows = []
    for server in args.servers.split(","):
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(HERE))
        process = subprocess.Popen(command(server, port), env=env, stdout=subprocess.DEVNULL)
        try:
            wait_listening(port, process)
            base = f"http://127.0.0.1:{port}"
            small = load(f"{base}/json", args.json_connections, args.duration)
            big = load(f"{base}/download", args.download_connections, args.duration)
        finally:
            process.terminate()
            process.wait(timeout=30)
        rows.append((server, small, big))
        print(f"{server}: json {small}\n{server}: download {big}", file=sys.stderr)
    print(
        "| server | /json req/s | /json p99 ms | /download req/s | /download MB/s "
        "| /download p99 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for server, small, big in rows:
        errors = int(small["errors"]) + int(big["errors"])  # type: ignore[call-overload]
        print(
            f"| {server} | {small['requests_per_sec']:.0f} | {small['p99_ms']:.1f} "
            f"| {big['requests_per_sec']:.0f} | {big['mb_per_sec']:.0f} | {big['p99_ms']:.1f} "
            f"| {errors} |"
        )


if __name__ == "__main__":
    main()
