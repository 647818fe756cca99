"""The release wheel as users get it.

The wheel is the one `just wheel` built (its path in ``FRAISEQL_WHEEL``; `just test-python`
sets it), or, when that is unset, one this module builds with the same command. It must be a
single abi3 wheel for CPython >= 3.10, manylinux, small, stripped and licensed, and run on
every CPython >= 3.10 found here. Then, in a fresh virtualenv outside the repository, it
installs beside the FraiseQL framework (the ``fraiseql`` wheel from PyPI, or a stand-in when
PyPI cannot be reached) without touching the framework's files, and its ``[fastapi]`` extra
is enough to serve subscriptions with uvicorn: a small FastAPI app runs there and a real
WebSocket client drives both subprotocols.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import urllib.request
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "python"
WHEEL_ENV = "FRAISEQL_WHEEL"
# The command of `just wheel` (see the justfile), run in python/.
BUILD = ("maturin", "build", "--release", "--zig", "--compatibility", "manylinux2014")
MANYLINUX_TAGS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
MAX_WHEEL_BYTES = 8 * 1024 * 1024
# The FraiseQL framework release we install beside (pinned so the test does not drift).
FRAMEWORK = "fraiseql==2.18.0"
STEP_TIMEOUT = 600  # seconds for one pip install, venv creation or server start
BUILD_TIMEOUT = 2400  # a cold release build with zig on two cores takes several minutes

# Setting up (a build when FRAISEQL_WHEEL is unset, the pip installs) runs inside the first
# test that needs it; the project's 60 s default does not cover that.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 4 * STEP_TIMEOUT)


def run(*argv: str | Path, cwd: Path | None = None, timeout: float = STEP_TIMEOUT) -> str:
    """Runs a command to completion (bounded); its output, or a failure showing it."""
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}"
    return done.stdout


def clean_env(venv: Path | None = None) -> dict[str, str]:
    """This process's environment without what would leak the repository's package or
    virtualenv into a child; with `venv`'s bin first on PATH when given."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
    }
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
    else:
        # maturin finds zig as `python3 -m ziglang`: the dev virtualenv's python comes first.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def record_hash(data: bytes) -> str:
    """A file's hash as a wheel's RECORD writes it."""
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def record_of(wheel: Path) -> list[tuple[str, str]]:
    """(path, hash) for each file a wheel's RECORD lists."""
    with zipfile.ZipFile(wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        lines = zf.read(name).decode().splitlines()
    rows = []
    for line in lines:
        if line.strip():
            path, digest, _size = line.rsplit(",", 2)
            rows.append((path, digest))
    return rows


def elf_section_names(data: bytes) -> list[str]:
    """The section names of a 64-bit little-endian ELF file (the wheel's extension module)."""
    assert data[:4] == b"\x7fELF", "not an ELF file"
    assert data[4] == 2, "expected a 64-bit ELF file"
    assert data[5] == 1, "expected a little-endian ELF file"
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_offset = headers[shstrndx][4]
    names = []
    for name_offset, *_ in headers:
        start = strtab_offset + name_offset
        names.append(data[start : data.index(b"\0", start)].decode())
    return names


def standin_framework_wheel(dest: Path) -> Path:
    """A tiny wheel owning ``fraiseql/__init__.py``, for when PyPI cannot be reached."""
    dist = "fraiseql-0.0.0.dist-info"
    files = {
        "fraiseql/__init__.py": b'"""A stand-in for the framework."""\n__version__ = "0.0.0"\n',
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: fraiseql\nVersion: 0.0.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test_wheel\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [f"{name},{record_hash(data)},{len(data)}" for name, data in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    wheel = dest / "fraiseql-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release wheel: `just wheel`'s, or one built here with the same command."""
    given = os.environ.get(WHEEL_ENV)
    if given:
        path = Path(given)
        assert path.is_file(), f"{WHEEL_ENV}={given} is not a file"
        return path
    out = tmp_path_factory.mktemp("dist")
    maturin = Path(sys.executable).parent / "maturin"
    run(maturin, *BUILD[1:], "--out", out, cwd=PACKAGE, timeout=BUILD_TIMEOUT)
    wheels = list(out.glob("fraiseql_subscriptions-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@dataclass
class Venv:
    """A fresh virtualenv with the framework and our wheel installed."""

    root: Path
    python: Path
    site_packages: Path
    framework_wheel: Path


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A virtualenv outside the repository: the FraiseQL framework first, then our wheel
    with its ``[fastapi]`` extra, as a user would add subscriptions to a FraiseQL app."""
    base = tmp_path_factory.mktemp("installed")
    assert not base.resolve().is_relative_to(REPO), "the virtualenv must live outside the repo"
    root = base / "venv"
    run(sys.executable, "-m", "venv", root)
    python = root / "bin" / "python"
    pip = (python, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet")

    downloads = base / "framework"
    downloads.mkdir()
    try:
        run(*pip, "download", "--no-deps", "--dest", downloads, FRAMEWORK)
        [framework_wheel] = downloads.glob("fraiseql-*.whl")
    except (AssertionError, ValueError, subprocess.TimeoutExpired):
        # Offline: a stand-in owning fraiseql/__init__.py shows the same non-interference.
        framework_wheel = standin_framework_wheel(downloads)
    run(*pip, "install", framework_wheel)
    run(*pip, "install", f"{wheel}[fastapi]")

    site_packages = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    return Venv(root, python, site_packages, framework_wheel)


def test_the_wheel_is_one_small_stripped_abi3_manylinux_wheel_with_its_license(
    wheel: Path,
) -> None:
    name, version, python_tag, abi_tag, platform_tags = wheel.name[: -len(".whl")].split("-")
    assert name == "fraiseql_subscriptions"
    assert (python_tag, abi_tag) == ("cp310", "abi3"), wheel.name
    assert any(tag in MANYLINUX_TAGS for tag in platform_tags.split(".")), wheel.name
    size = wheel.stat().st_size
    assert size <= MAX_WHEEL_BYTES, f"{wheel.name} is {size} bytes"

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = f"fraiseql_subscriptions-{version}.dist-info"
        license_text = zf.read(f"{dist_info}/licenses/LICENSE").decode()
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        wheel_file = zf.read(f"{dist_info}/WHEEL").decode()
        [module] = [n for n in names if re.fullmatch(r"fraiseql_subscriptions/_native\..*so", n)]
        module_bytes = zf.read(module)

    assert module == "fraiseql_subscriptions/_native.abi3.so"
    assert "MIT License" in license_text
    assert "Copyright (c) 2026 The FraiseQL Subscriptions contributors" in license_text
    assert "fraiseql_subscriptions/py.typed" in names
    assert "Tag: cp310-abi3-manylinux" in wheel_file
    assert "License-File: LICENSE" in metadata
    assert "Requires-Python: >=3.10" in metadata

    sections = elf_section_names(module_bytes)
    assert not [s for s in sections if s.startswith((".debug", ".zdebug"))], sections
    assert ".symtab" not in sections, "the extension module is not stripped"

    # The readme is the long description on PyPI: every link must work outside the repo.
    readme = metadata.split("\n\n", 1)[1]
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert links, "the readme links the docs"
    assert [link for link in links if not link.startswith("https://")] == []

    # auditwheel (a dev requirement) agrees: the extension links only symbol versions of the
    # glibc its manylinux tag promises.
    shown = " ".join(run(sys.executable, "-m", "auditwheel", "show", wheel).split())
    consistent = re.search(r'consistent with the following platform tag: "([^"]+)"', shown)
    assert consistent, shown
    assert consistent[1] in platform_tags.split("."), shown


def test_it_installs_beside_the_framework_without_touching_it(wheel: Path, venv: Venv) -> None:
    # Our wheel owns nothing of the framework's package.
    ours = [path for path, _ in record_of(wheel)]
    assert not [p for p in ours if p.split("/", 1)[0] == "fraiseql"], ours
    # Every framework file is byte for byte what its wheel shipped.
    framework = [(p, h) for p, h in record_of(venv.framework_wheel) if p.startswith("fraiseql/")]
    assert any(p == "fraiseql/__init__.py" for p, _ in framework)
    for path, digest in framework:
        assert record_hash((venv.site_packages / path).read_bytes()) == digest, path

    out = run(
        venv.python,
        "-c",
        "import fraiseql, fraiseql_subscriptions, fastapi, uvicorn, websockets;"
        "from fraiseql_subscriptions.integrations.fastapi import SubscriptionRouterFactory;"
        "print(fraiseql.__file__); print(fraiseql_subscriptions.__file__);"
        "print(fraiseql_subscriptions.__version__)",
        cwd=venv.root,
    )
    framework_file, our_file, our_version = out.strip().splitlines()[-3:]
    assert Path(framework_file) == venv.site_packages / "fraiseql" / "__init__.py"
    assert Path(our_file) == venv.site_packages / "fraiseql_subscriptions" / "__init__.py"
    assert our_version == wheel.name.split("-")[1]


SMOKE = textwrap.dedent(
    """
    import asyncio, json, sys
    from fraiseql_subscriptions import SubscriptionManager

    async def main():
        manager = SubscriptionManager()

        @manager.subscription("message", channel="room:{room}")
        def message(event, variables, ctx):
            return {**event, "room": variables["room"]}

        query = 'subscription { message(room: "a") { text room } }'
        await manager.create_subscription("s", "c", query)
        await manager.publish("room:a", {"text": "hi", "ok": True})
        frame = json.loads(await manager.get_next_event("s", timeout=10))
        await manager.shutdown()
        print("%d.%d" % sys.version_info[:2], json.dumps(frame["payload"], sort_keys=True))

    asyncio.run(main())
    """
)


def cpythons() -> list[str]:
    """One interpreter per CPython >= 3.10 found on PATH or installed by pyenv (at least the
    one running the tests), oldest first."""
    found = {f"3.{sys.version_info[1]}": sys.executable}
    pyenv = os.environ.get("PYENV_ROOT")
    for minor in range(10, 20):
        candidates = [shutil.which(f"python3.{minor}")]
        if pyenv:
            installed = Path(pyenv, "versions").glob(f"3.{minor}.*/bin/python3.{minor}")
            candidates += sorted(str(p) for p in installed)
        for path in candidates:
            if f"3.{minor}" in found or not path:
                continue
            probe = subprocess.run(
                [path, "-c", "import sys; print(sys.implementation.name, *sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if probe.returncode == 0 and probe.stdout.split() == ["cpython", "3", str(minor)]:
                found[f"3.{minor}"] = path
    return [found[v] for v in sorted(found, key=lambda v: int(v.split(".")[1]))]


def test_the_one_abi3_wheel_runs_on_every_cpython_here(
    wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    versions = []
    for interpreter in cpythons():
        root = tmp_path_factory.mktemp("abi3") / "venv"
        run(interpreter, "-m", "venv", root)
        python = root / "bin" / "python"
        run(python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", wheel)
        out = run(python, "-c", SMOKE, cwd=root).strip().splitlines()[-1]
        version, payload = out.split(" ", 1)
        assert payload == '{"data": {"message": {"room": "a", "text": "hi"}}}', out
        versions.append(version)
    assert f"3.{sys.version_info[1]}" in versions, versions


APP = textwrap.dedent(
    '''
    """A chat room on FastAPI: subscriptions on /graphql, publishing over HTTP."""

    from typing import Any

    from fastapi import FastAPI

    from fraiseql_subscriptions import EventBusConfig, SubscriptionConfig, SubscriptionManager
    from fraiseql_subscriptions.integrations.fastapi import SubscriptionRouterFactory

    SCHEMA = """
    type Message { id: ID! room: String! text: String! }
    type Query { rooms: [String!]! }
    type Subscription { message(room: String!): Message! }
    """

    manager = SubscriptionManager(
        bus=EventBusConfig.memory(), schema=SCHEMA, config=SubscriptionConfig.development()
    )


    @manager.subscription("message", channel="room:{room}")
    async def message(event: dict[str, Any], variables: dict[str, Any], ctx: Any) -> Any:
        return {**event, "room": variables["room"]}


    app = FastAPI(lifespan=manager.lifespan)
    app.include_router(SubscriptionRouterFactory.create(manager))


    @app.get("/subscriptions")
    async def subscriptions() -> dict[str, int]:
        return {"active": manager.get_metrics()["active_subscriptions"]}


    @app.post("/rooms/{room}/messages")
    async def post(room: str, body: dict[str, Any]) -> dict[str, str]:
        await manager.publish(f"room:{room}", body)
        return {"ok": "published"}
    '''
)

QUERY = "subscription ($room: String!) { message(room: $room) { id text room } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def app_dir(venv: Venv) -> Path:
    """The example app, written outside the repository next to the virtualenv."""
    directory = venv.root.parent / "app"
    directory.mkdir(exist_ok=True)
    (directory / "chat_app.py").write_text(APP)
    return directory


def http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextlib.asynccontextmanager
async def uvicorn_serving(venv: Venv, app_dir: Path) -> AsyncIterator[str]:
    """The app under the virtualenv's own uvicorn (its default WebSocket implementation,
    which the extra installed) on a free port; its base URL once it accepts connections."""
    port = free_port()
    log_path = app_dir / "uvicorn.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(venv.python),
            "-m",
            "uvicorn",
            "chat_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            cwd=app_dir,
            env=clean_env(venv.root),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            assert process.returncode is None, f"uvicorn exited:\n{log_path.read_text()}"
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
            except (OSError, TimeoutError):
                assert loop.time() < deadline, f"uvicorn never listened:\n{log_path.read_text()}"
                await asyncio.sleep(0.05)  # poll again
                continue
            writer.close()
            break
        yield f"127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def recv(ws: ClientConnection, skip: tuple[str, ...] = ("ka", "ping", "pong")) -> Any:
    """The next protocol message, past keep-alives (bounded)."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        message = json.loads(raw)
        if message.get("type") not in skip:
            return message


async def active_subscriptions_become(base: str, n: int) -> None:
    """Polls (bounded) until the server counts `n` active subscriptions."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (await asyncio.to_thread(http, "GET", f"http://{base}/subscriptions"))["active"] != n:
        assert loop.time() < deadline, f"the server never had {n} active subscriptions"
        await asyncio.sleep(0.02)  # poll again


async def publish(base: str, room: str, event: dict[str, Any]) -> None:
    await asyncio.to_thread(http, "POST", f"http://{base}/rooms/{room}/messages", event)


async def test_a_fastapi_app_in_the_fresh_virtualenv_serves_both_subprotocols(
    venv: Venv, app_dir: Path
) -> None:
    async with uvicorn_serving(venv, app_dir) as base:
        url = f"ws://{base}/graphql"
        variables = {"room": "lobby"}

        async with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:
            assert ws.subprotocol == "graphql-transport-ws"
            await ws.send(json.dumps({"type": "connection_init"}))
            assert (await recv(ws))["type"] == "connection_ack"
            subscribe = {"query": QUERY, "variables": variables}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
            await active_subscriptions_become(base, 1)
            await publish(base, "lobby", {"id": "m1", "text": "hello"})
            assert await recv(ws) == {
                "id": "1",
                "type": "next",
                "payload": {"data": {"message": {"id": "m1", "text": "hello", "room": "lobby"}}},
            }
            await ws.send(json.dumps({"id": "1", "type": "complete"}))
            await active_subscriptions_become(base, 0)

        async with connect(url, subprotocols=["graphql-ws"], open_timeout=10) as ws:
            assert ws.subprotocol == "graphql-ws"
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert (await recv(ws))["type"] == "connection_ack"
            start = {"query": QUERY, "variables": variables}
            await ws.send(json.dumps({"id": "7", "type": "start", "payload": start}))
            await active_subscriptions_become(base, 1)
            await publish(base, "lobby", {"id": "m2", "text": "legacy"})
            assert await recv(ws) == {
                "id": "7",
                "type": "data",
                "payload": {"data": {"message": {"id": "m2", "text": "legacy", "room": "lobby"}}},
            }
            await ws.send(json.dumps({"id": "7", "type": "stop"}))
            await active_subscriptions_become(base, 0)
            await ws.send(json.dumps({"type": "connection_terminate"}))
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1000
