"""Secrets end to end through the API layer on real containers: the command sees the value,
everything that comes back (stdout, stderr, errors, events, the cache) reads `***`, and the value
is nowhere in the resulting root filesystem or the engine's state directory."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import Session
from dirk.wire.errors import format_error
from tests.integration.schema_client import SchemaClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Client(SchemaClient):
    """One session (with the client environment `env`), querying the schema the way the
    wire server does."""

    def __init__(
        self, engine: EngineCore, workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(engine, Session("token", workdir, {}, time.time(), client_env=env or {}))

    async def secret(self, name: str, value: str) -> str:
        data = await self.data(
            "query($n: String!, $v: String!) { setSecret(name: $n, plaintext: $v) { id } }",
            n=name,
            v=value,
        )
        return str(data["setSecret"]["id"])

    async def exec_with_secret(
        self, image: str, secret_id: str, script: str, fields: str = "stdout stderr"
    ) -> Any:
        data = await self.data(
            "query($image: String!, $s: ID!, $script: String!) { container {"
            ' from(address: $image) { withSecretVariable(name: "TOKEN", secret: $s) {'
            f' withExec(args: ["sh", "-c", $script]) {{ {fields} }} }} }} }} }}',
            image=image,
            s=secret_id,
            script=script,
        )
        return data["container"]["from"]["withSecretVariable"]["withExec"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


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


def hexvalue() -> str:
    return secrets.token_hex(12)


async def test_a_secret_variable_is_seen_by_the_command_and_scrubbed_everywhere(
    engine: EngineCore, workdir: Path, busybox_ref: str
) -> None:
    client = Client(engine, workdir)
    value = hexvalue()
    sid = await client.secret("token", value)
    seen = await client.exec_with_secret(
        busybox_ref,
        sid,
        'echo "out $TOKEN"; echo "err $TOKEN" >&2; echo "$TOKEN" | tr a-f A-F',
    )
    assert seen == {"stdout": f"out ***\n{value.upper()}\n", "stderr": "err ***\n"}
    combined = await client.exec_with_secret(
        busybox_ref, sid, 'echo "1 $TOKEN"; sleep 0.2; echo "2 $TOKEN" >&2', "combinedOutput"
    )
    assert combined["combinedOutput"] == "1 ***\n2 ***\n"
    failing = await client.run(
        "query($image: String!, $s: ID!) { container { from(address: $image) {"
        ' withSecretVariable(name: "TOKEN", secret: $s) {'
        ' withExec(args: ["sh", "-c", "echo leak $TOKEN; echo $TOKEN >&2; exit 3"]) {'
        " stdout } } } } }",
        image=busybox_ref,
        s=sid,
    )
    assert failing.errors
    error = format_error(failing.errors[0])
    assert error["extensions"]["stdout"] == "leak ***\n"
    assert error["extensions"]["stderr"] == "***\n"
    assert value not in str(error)
    assert files_holding(engine.layout.root, value.encode()) == []


async def test_multi_line_values_and_split_writes_are_scrubbed(
    engine: EngineCore, workdir: Path, busybox_ref: str
) -> None:
    client = Client(engine, workdir)
    lines = [hexvalue() for _ in range(3)]
    key = "\n".join(["-----BEGIN TEST KEY-----", *lines, "-----END TEST KEY-----"]) + "\n"
    sid = await client.secret("key", key)
    events: list[bytes] = []
    unsubscribe = engine.solver.subscribe(
        lambda e: events.append(e.data) if e.kind == "stdout" else None
    )
    try:
        whole = await client.exec_with_secret(
            busybox_ref, sid, 'printf "%s" "$TOKEN"; echo "second: $(echo "$TOKEN" | sed -n 3p)"'
        )
        # the value printed in two writes, half a second apart
        split = await client.exec_with_secret(
            busybox_ref,
            await client.secret("split", lines[0]),
            'printf "a%s" "$(echo $TOKEN | cut -c1-10)"; sleep 0.5;'
            ' printf "%sb\\n" "$(echo $TOKEN | cut -c11-)"',
        )
    finally:
        unsubscribe()
    assert whole["stdout"] == "***\n***\n***\n***\n***\nsecond: ***\n"
    assert split["stdout"] == "a***b\n"
    streamed = b"".join(events)
    assert streamed.count(b"***") >= 7
    for line in lines:
        assert line.encode() not in streamed
    assert files_holding(engine.layout.root, lines[0].encode()) == []


async def test_a_mounted_secret_has_its_owner_and_mode_and_stays_out_of_the_rootfs(
    engine: EngineCore, workdir: Path, busybox_ref: str
) -> None:
    client = Client(engine, workdir)
    value = hexvalue()
    sid = await client.secret("mounted", value)
    data = await client.data(
        "query($image: String!, $s: ID!, $script: String!) { container {"
        " from(address: $image) {"
        ' withMountedSecret(path: "/run/keys/id", source: $s, owner: "1000:100") {'
        ' withExec(args: ["sh", "-c", $script]) { stdout rootfs { entries } } } } } }',
        image=busybox_ref,
        s=sid,
        script="stat -c '%u:%g %a' /run/keys/id; tr a-f A-F < /run/keys/id; echo;"
        " echo x > /run/keys/id 2>/dev/null || echo read-only",
    )
    ran = data["container"]["from"]["withMountedSecret"]["withExec"]
    assert ran["stdout"] == f"1000:100 400\n{value.upper()}\nread-only\n"
    # the image has no /run: the mount point was only a stub, dropped from the step's layer
    assert "run/" not in ran["rootfs"]["entries"] and "etc/" in ran["rootfs"]["entries"]
    listed = await client.data(
        "query($image: String!, $s: ID!) { container { from(address: $image) {"
        ' withMountedSecret(path: "/etc/ssl/key", source: $s, owner: "nobody", mode: 384) {'
        ' withExec(args: ["sh", "-c", "stat -c \'%U %a\' /etc/ssl/key"]) {'
        ' stdout rootfs { file(path: "/etc/passwd") { size } } } } } } }',
        image=busybox_ref,
        s=sid,
    )
    assert listed["container"]["from"]["withMountedSecret"]["withExec"]["stdout"] == "nobody 600\n"
    assert files_holding(engine.layout.root, value.encode()) == []


async def test_a_new_value_of_a_secret_reuses_the_cached_step(
    engine: EngineCore, workdir: Path, busybox_ref: str
) -> None:
    script = 'cat /proc/sys/kernel/random/uuid; test -n "$TOKEN"'
    first = Client(engine, workdir)
    ran = await first.exec_with_secret(
        busybox_ref, await first.secret("cache-token", hexvalue()), script
    )
    second = Client(engine, workdir)
    again = await second.exec_with_secret(
        busybox_ref, await second.secret("cache-token", hexvalue()), script
    )
    assert again["stdout"] == ran["stdout"]  # the random token: the step did not run again
    other = await second.exec_with_secret(
        busybox_ref, await second.secret("another-name", hexvalue()), script
    )
    assert other["stdout"] != ran["stdout"]


async def test_without_secret_variable_and_uri_secrets(
    engine: EngineCore, workdir: Path, busybox_ref: str
) -> None:
    value = hexvalue()
    (workdir / "token.txt").write_text(value)
    client = Client(engine, workdir, env={"API_TOKEN": value, "PATH": "/usr/bin:/bin"})
    show = 'echo "[$TOKEN]"; echo "$TOKEN" | tr a-f A-F'
    for uri in ("env://API_TOKEN", "file://token.txt", "cmd://cat token.txt"):
        data = await client.data("query($u: String!) { secret(uri: $u) { id } }", u=uri)
        seen = await client.exec_with_secret(busybox_ref, data["secret"]["id"], show, "stdout")
        assert seen["stdout"] == f"[***]\n{value.upper()}\n", uri
    sid = await client.secret("dropped", value)
    data = await client.data(
        "query($image: String!, $s: ID!) { container { from(address: $image) {"
        ' withSecretVariable(name: "TOKEN", secret: $s) { withoutSecretVariable(name: "TOKEN") {'
        ' withExec(args: ["sh", "-c", "echo [${TOKEN:-unset}]"]) { stdout } } } } } }',
        image=busybox_ref,
        s=sid,
    )
    ran = data["container"]["from"]["withSecretVariable"]["withoutSecretVariable"]["withExec"]
    assert ran["stdout"] == "[unset]\n"
    missing = await client.run('{ secret(uri: "env://NOT_SENT") { plaintext } }')
    assert missing.errors and "env://NOT_SENT" in missing.errors[0].message


async def test_an_exported_image_holds_no_secret(
    engine: EngineCore, workdir: Path, busybox_ref: str
) -> None:
    client = Client(engine, workdir)
    value = hexvalue()
    sid = await client.secret("exported", value)
    data = await client.data(
        "query($image: String!, $s: ID!) { container { from(address: $image) {"
        ' withSecretVariable(name: "TOKEN", secret: $s) {'
        ' withMountedSecret(path: "/run/keys/id", source: $s) {'
        ' withExec(args: ["sh", "-c", "test -n \\"$TOKEN\\" && cat /run/keys/id > /dev/null"]) {'
        ' export(path: "image.tar", forcedCompression: Uncompressed) } } } } } }',
        image=busybox_ref,
        s=sid,
    )
    assert data["container"]["from"]["withSecretVariable"]["withMountedSecret"]["withExec"]
    tarball = (workdir / "image.tar").read_bytes()
    assert len(tarball) > 100_000  # the busybox layer itself, uncompressed
    assert value.encode() not in tarball
    assert b"TOKEN" not in tarball  # not even the variable's name reaches the image config
    assert b"run/keys" not in tarball  # nor the mount point
