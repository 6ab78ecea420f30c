"""Secrets in real containers at the executor level (crun and runc): variables for the process
only, files on a tmpfs with their owner and mode, nothing left in the root or the state dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from dirk.workers.executor.executor import Executor
from dirk.workers.executor.spec import ContainerSpec, SecretFile

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def files_holding(root: Path, value: bytes) -> list[Path]:
    """Every regular file under `root` whose bytes contain `value` (entries that go away
    during the walk, like a step's scratch dirs being removed, are skipped)."""
    found = []
    for top, _dirs, names in os.walk(root):
        for name in names:
            path = Path(top) / name
            try:
                if path.is_file() and not path.is_symlink() and value in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


async def test_secret_variables_and_files_reach_only_the_process(
    executor: Executor, overlay_root: tuple[Path, Path], tmp_path: Path
) -> None:
    rootfs, upper = overlay_root
    value = secrets.token_hex(16).encode()
    spec = ContainerSpec(
        args=(
            "sh",
            "-c",
            "echo env=$(echo $TOKEN | tr a-f A-F);"
            " stat -c '%u:%g %a' /run/keys/id; tr a-f A-F < /run/keys/id; echo;"
            " echo denied > /run/keys/id 2>/dev/null || echo read-only",
        ),
        secret_env=(f"TOKEN={value.decode()}",),
        secret_files=(SecretFile("/run/keys/id", value, uid=1000, gid=100, mode=0o440),),
    )
    assert value.decode() not in repr(spec)
    result = await executor.run(rootfs, spec)
    upper_value = value.decode().upper()
    assert result.stdout.decode().splitlines() == [
        f"env={upper_value}",
        "1000:100 440",
        upper_value,
        "read-only",
    ], result.stderr
    # the file was a bind of a tmpfs file: nothing of it in the root filesystem's upper dir
    # but the empty mount stub, which the snapshotter drops at commit (see stub_paths)
    stub = upper / "run" / "keys" / "id"
    assert not stub.exists() or stub.stat().st_size == 0
    assert "/run/keys/id" in executor.stub_paths(spec)
    assert files_holding(upper, value) == []
    assert files_holding(tmp_path / "state", value) == []
