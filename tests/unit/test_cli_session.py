"""`dirk session` and `dirk run` as processes, against an in-process daemon (stand-in engine)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .wire_standin import Daemon, basic

pytestmark = pytest.mark.anyio

DIRK = [sys.executable, "-m", "dirk"]
SDK_FLAGS = ["--label", "dagger.io/sdk.name:python", "--label", "dagger.io/sdk.version:0.21.11"]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "state")
    await d.start()
    yield d
    await d.aclose()


def _env(daemon: Daemon) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGGER_", "DIRK_"))}
    env["DIRK_STATE_DIR"] = str(daemon.root)
    return env


async def _query(port: int, token: str, query: str = "{ workdir }") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as client:
        resp = await client.post(
            f"http://127.0.0.1:{port}/query", json={"query": query}, headers=basic(token)
        )
        return resp.status, await resp.json()


async def _session(daemon: Daemon, *args: str, cwd: Path | None = None) -> tuple[Any, Any]:
    proc = await asyncio.create_subprocess_exec(
        *DIRK,
        "session",
        *args,
        env=_env(daemon),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    if not line:
        await proc.wait()
        err = (await proc.stderr.read()).decode()
        pytest.fail(f"`dirk session` printed nothing (exit {proc.returncode}): {err}")
    return proc, json.loads(line)


async def test_handshake_prints_one_json_line_and_ends_on_stdin_eof(
    daemon: Daemon, tmp_path: Path
) -> None:
    proc, params = await _session(daemon, *SDK_FLAGS, cwd=tmp_path)
    assert set(params) == {"port", "session_token"}
    status, body = await _query(params["port"], params["session_token"])
    assert status == 200
    assert body == {"data": {"workdir": str(tmp_path)}}  # the default workdir is the cwd
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert await proc.stdout.read() == b""  # nothing but the one line on stdout
    assert (await _query(params["port"], params["session_token"]))[0] == 401


async def test_handshake_ends_on_sigterm(daemon: Daemon, tmp_path: Path) -> None:
    proc, params = await _session(daemon, *SDK_FLAGS, "--workdir", str(tmp_path / "w"))
    assert (await _query(params["port"], params["session_token"]))[1] == {
        "data": {"workdir": str(tmp_path / "w")}
    }
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert (await _query(params["port"], params["session_token"]))[0] == 401


async def test_dagger_flags_without_meaning_here_are_accepted(daemon: Daemon) -> None:
    proc, params = await _session(
        daemon, "--workdir", "/", "--project", "/p/dagger.json", "--load-workspace-modules",
        *SDK_FLAGS, "--some-future-flag",
    )  # fmt: skip
    assert (await _query(params["port"], params["session_token"]))[0] == 200
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    err = (await proc.stderr.read()).decode()
    assert "--project is ignored" in err and "--some-future-flag" in err


async def test_run_passes_the_session_and_exit_code(daemon: Daemon, tmp_path: Path) -> None:
    child = (
        "import os, sys; print(os.environ['DAGGER_SESSION_PORT'], "
        "os.environ['DAGGER_SESSION_TOKEN'], sys.argv[1:]); sys.exit(7)"
    )
    proc = await asyncio.create_subprocess_exec(
        *DIRK, "run", "--workdir", str(tmp_path), "--", sys.executable, "-c", child, "-x",
        env=_env(daemon), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 7
    port, token, argv = out.decode().split(" ", 2)
    assert argv.strip() == "['-x']"
    assert int(port) == json.loads((daemon.root / "engine.json").read_text())["port"]
    assert (await _query(int(port), token))[0] == 401  # ended when the command exited
