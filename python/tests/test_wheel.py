"""The wheel: `maturin build` makes one that installs into a fresh virtualenv (no
dependencies needed) and serves a subscription there."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]

SMOKE = textwrap.dedent(
    """
    import asyncio, json
    import fraiseql
    from fraiseql.subscriptions import SubscriptionManager

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
        print(fraiseql.__version__, json.dumps(frame["payload"], sort_keys=True))

    asyncio.run(main())
    """
)


async def run(*argv: str, cwd: Path | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 900)
    assert process.returncode == 0, out.decode()
    return out.decode()


async def test_the_wheel_installs_and_works_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    maturin = Path(sys.executable).parent / "maturin"
    await run(str(maturin), "build", "--quiet", "--out", str(tmp_path / "dist"), cwd=PACKAGE)
    wheels = list((tmp_path / "dist").glob("fraiseql-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp_path / "venv"
    await run(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    await run(
        str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheels[0])
    )
    out = await run(str(python), "-c", SMOKE, cwd=tmp_path)
    assert out.strip().splitlines()[-1] == (
        '0.1.0 {"data": {"message": {"room": "a", "text": "hi"}}}'
    )
