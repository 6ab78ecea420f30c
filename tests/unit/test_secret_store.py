"""A session's secrets: providers (env://, file://, cmd://), their errors, and the store that
keeps values in memory and hands them to steps by handle."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirk.api.secret_store import SecretStore
from dirk.errors import SecretError
from dirk.workers.hostsecrets import MAX_SECRET_BYTES, read_secret_uri

pytestmark = pytest.mark.anyio


async def test_env_reads_the_clients_environment_not_the_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIRK_TEST_ENGINE_ONLY", "engine-side")
    env = {"TOKEN": "from-the-client"}
    assert await read_secret_uri("env://TOKEN", env=env, workdir=tmp_path) == b"from-the-client"
    with pytest.raises(SecretError, match="DIRK_TEST_ENGINE_ONLY is not set") as caught:
        await read_secret_uri("env://DIRK_TEST_ENGINE_ONLY", env=env, workdir=tmp_path)
    assert "env://DIRK_TEST_ENGINE_ONLY" in str(caught.value)
    assert "export it" in str(caught.value)


async def test_file_is_relative_to_the_session_workdir(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token").write_bytes(b"abc\n")
    assert await read_secret_uri("file://conf/token", env={}, workdir=tmp_path) == b"abc\n"
    absolute = f"file://{tmp_path}/conf/token"
    assert await read_secret_uri(absolute, env={}, workdir=Path("/")) == b"abc\n"
    home = {"HOME": str(tmp_path / "conf")}
    assert await read_secret_uri("file://~/token", env=home, workdir=Path("/")) == b"abc\n"
    with pytest.raises(SecretError, match=r"no file .*missing.*working directory"):
        await read_secret_uri("file://missing", env={}, workdir=tmp_path)


async def test_cmd_runs_in_the_workdir_with_the_clients_env(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "WHO": "client"}
    value = await read_secret_uri("cmd://printf '%s:' $WHO; pwd", env=env, workdir=tmp_path)
    assert value == f"client:{tmp_path}\n".encode()
    with pytest.raises(SecretError, match=r"exited with code 3 .*: oops; fix the command"):
        await read_secret_uri("cmd://echo oops >&2; exit 3", env=env, workdir=tmp_path)


async def test_unknown_schemes_and_oversized_values_are_refused(tmp_path: Path) -> None:
    for uri in ("vault://x", "TOKEN", "env://"):
        with pytest.raises(SecretError, match=uri.replace("/", ".")):
            await read_secret_uri(uri, env={}, workdir=tmp_path)
    env = {"BIG": "x" * (MAX_SECRET_BYTES + 1)}
    with pytest.raises(SecretError, match="more than the 128000 bytes"):
        await read_secret_uri("env://BIG", env=env, workdir=tmp_path)


async def test_store_keys_by_name_and_hands_out_values_by_handle(tmp_path: Path) -> None:
    store = SecretStore({"T": "t-value"}, tmp_path)
    first = store.set_plaintext("token", b"v1")
    second = store.set_plaintext("token", b"v2")
    # one cache identity for one name, whatever the value; distinct handles
    assert first.ref.cache_id == second.ref.cache_id == "name:token"
    assert first.ref.handle != second.ref.handle
    assert "v1" not in first.ref.handle and store.plaintext(first.ref.handle) == b"v1"
    assert store.plaintext(second.ref.handle) == b"v2"
    by_uri = store.from_uri("env://T", None)
    assert by_uri.ref.cache_id == "uri:env://T" and by_uri.name == by_uri.uri == "env://T"
    with pytest.raises(SecretError, match="not known to this session"):
        store.plaintext(by_uri.ref.handle)  # not loaded yet: reading happens on use
    assert await store.load(by_uri.ref) == b"t-value"
    assert store.plaintext(by_uri.ref.handle) == b"t-value"
    assert store.from_uri("env://T", "shared").ref.cache_id == "key:shared"
    # handles are keyed per store: another session's store cannot resolve them
    other = SecretStore({}, tmp_path)
    assert other.set_plaintext("token", b"v1").ref.handle != first.ref.handle


async def test_a_uri_is_read_once_per_session(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    store = SecretStore({"PATH": "/usr/bin:/bin"}, tmp_path)
    entry = store.from_uri("cmd://echo x >> count; echo value", None)
    assert await store.load(entry.ref) == b"value\n"
    assert await store.load(entry.ref) == b"value\n"
    assert counter.read_text() == "x\n"


async def test_host_reads_have_the_session_owners_rights(tmp_path: Path) -> None:
    import os

    from dirk.workers.hostaccess import HostUser

    assert os.geteuid() == 0, "run as root: the test checks rights of another user"
    nobody = HostUser.of_uid(65534)
    env = {"PATH": "/usr/bin:/bin"}
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    assert await read_secret_uri("cmd://id -u", env=env, workdir=workdir, owner=nobody) == (
        b"65534\n"
    )
    private = workdir / "root-only"
    private.write_text("root's")
    private.chmod(0o600)
    with pytest.raises(SecretError, match=r"cannot read .*root-only: Permission denied"):
        await read_secret_uri("file://root-only", env=env, workdir=workdir, owner=nobody)
    assert await read_secret_uri("file://root-only", env=env, workdir=workdir) == b"root's"
