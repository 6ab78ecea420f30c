"""Secrets through dirk's own SDK against a real `dirk engine` process: env:// reads the
program's environment (sent when the session opens, not the engine's), file:// and cmd:// work
in the program's directory, and the value never comes back or stays in the state dir."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import QueryError
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

SHOW = 'echo "[$TOKEN]"; echo "$TOKEN" | tr a-f A-F'


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


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


def test_uri_secrets_come_from_the_programs_side(
    engine: RunningEngine,
    busybox_ref: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = secrets.token_hex(12)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token").write_text(value)
    monkeypatch.setenv("DIRK_TEST_API_TOKEN", value)
    config = dirk.Config(engine=engine.socket_url, workdir=tmp_path)
    with dirk.Connection(config) as client:
        base = client.container().from_(busybox_ref)
        seen = {}
        for uri in ("env://DIRK_TEST_API_TOKEN", "file://conf/token", "cmd://cat conf/token"):
            secret = client.secret(uri)
            assert secret.uri() == uri
            seen[uri] = (
                base.with_secret_variable("TOKEN", secret).with_exec(["sh", "-c", SHOW]).stdout()
            )
            assert secret.plaintext() == value
        assert set(seen.values()) == {f"[***]\n{value.upper()}\n"}, seen
        mounted = base.with_mounted_secret(
            "/run/secrets/token", client.set_secret("sdk-token", value), owner="nobody"
        ).with_exec(["sh", "-c", "stat -c '%U %a' /run/secrets/token; cat /run/secrets/token"])
        assert mounted.stdout() == "nobody 400\n***"
        with pytest.raises(QueryError, match="DIRK_TEST_NOT_EXPORTED is not set"):
            base.with_secret_variable(
                "TOKEN", client.secret("env://DIRK_TEST_NOT_EXPORTED")
            ).with_exec(["true"]).sync()
    # the engine process never had the variable, and kept nothing of the value on disk or in
    # its log
    engine_env = Path(f"/proc/{engine.pid}/environ").read_bytes()
    assert value.encode() not in engine_env
    assert files_holding(engine.state_dir, value.encode()) == []
    assert value not in engine.log.read_text(errors="replace")
