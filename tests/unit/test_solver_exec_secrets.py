"""An exec's secrets at run time: values by handle from the step's source, owners resolved in
the container's root, and output scrubbed with its arrival order kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirk.solver.exec_secrets import exec_secrets
from dirk.solver.ops import Exec, ExecMount, Ref, Scratch, SecretRef
from dirk.workers.executor.spec import combine


def test_values_come_from_the_source_by_handle(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("app:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("app:x:1000:\nstaff:x:50:\n")
    token, key = SecretRef("name:token", "h1"), SecretRef("name:key", "h2")
    op = Exec(
        Ref(Scratch()),
        ("true",),
        secret_env=(("TOKEN", token),),
        mounts=(ExecMount("/run/key", "secret", secret=key, owner="app:staff", mode=0o440),),
    )
    values = {"h1": b"t0k", "h2": b"k3y\n"}
    asked: list[str] = []

    def plaintext(handle: str) -> bytes:
        asked.append(handle)
        return values[handle]

    got = exec_secrets(op, tmp_path, plaintext)
    assert sorted(asked) == ["h1", "h2"]
    assert got.env == ("TOKEN=t0k",)
    (secret_file,) = got.files
    assert (secret_file.target, secret_file.data) == ("/run/key", b"k3y\n")
    assert (secret_file.uid, secret_file.gid, secret_file.mode) == (1000, 50, 0o440)
    assert "t0k" not in repr(got) and b"k3y" not in repr(got).encode()
    assert got.scrubber.scrub(b"t0k and k3y") == b"*** and ***"


def test_no_secrets_asks_for_nothing(tmp_path: Path) -> None:
    def plaintext(handle: str) -> bytes:
        raise AssertionError("no secret to fetch")

    got = exec_secrets(Exec(Ref(Scratch()), ("true",)), tmp_path, plaintext)
    assert got.env == () and got.files == () and not got.scrubber.active


@pytest.mark.parametrize("cut", [1, 3, 5])
def test_scrubbed_output_keeps_streams_and_order_in_step(tmp_path: Path, cut: int) -> None:
    op = Exec(Ref(Scratch()), ("true",), secret_env=(("T", SecretRef("name:t", "h")),))
    got = exec_secrets(op, tmp_path, lambda _: b"s3cret")
    seen: list[tuple[str, bytes]] = []
    output = got.scrubbed_output(lambda stream, data: seen.append((stream, data)))
    text = b"out s3cret\n"
    for i in range(0, len(text), cut):
        output.on_output("stdout", text[i : i + cut])
    output.on_output("stderr", b"err s3")
    output.on_output("stderr", b"cret\n")
    output.on_output("stdout", b"bye\n")
    stdout, stderr, order = output.finish()
    assert (stdout, stderr) == (b"out ***\nbye\n", b"err ***\n")
    assert combine(stdout, stderr, order) == b"out ***\nerr ***\nbye\n"
    assert b"".join(data for _, data in seen) == b"out ***\nerr ***\nbye\n"
