"""Reading the runtimes' failures, choosing a runtime, and container addresses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirk.errors import ExecutorError
from dirk.workers.executor.network import address_for
from dirk.workers.executor.runtime import (
    choose_runtime,
    find_binary,
    not_found_command,
    runtime_errors,
)


@pytest.mark.parametrize(
    ("message", "command"),
    [
        ("executable file `nosuch` not found in $PATH: No such file or directory", "nosuch"),
        (
            'runc run failed: unable to start container process: exec: "nosuch": '
            "executable file not found in $PATH",
            "nosuch",
        ),
        (
            'runc run failed: unable to start container process: exec: "/bin/nosuch": '
            "stat /bin/nosuch: no such file or directory",
            "/bin/nosuch",
        ),
        ("mount `/x` to `/y`: Permission denied", None),
    ],
)
def test_not_found_command(message: str, command: str | None) -> None:
    assert not_found_command(message) == command


def test_runtime_errors_keeps_error_entries_only(tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert runtime_errors(log) == []  # no log: no failure
    log.write_text(
        "\n".join(
            [
                json.dumps({"level": "warning", "msg": "cgroup slow"}),
                "not json",
                json.dumps({"level": "error", "msg": "capset: Operation not permitted "}),
            ]
        )
    )
    assert runtime_errors(log) == ["capset: Operation not permitted"]


def test_runtime_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIRK_RUNTIME", "runc")
    assert choose_runtime(None) == ("runc", True)
    assert choose_runtime("crun") == ("crun", True)
    monkeypatch.delenv("DIRK_RUNTIME")
    assert choose_runtime(None)[1] is False


def test_missing_runtime_says_how_to_fix() -> None:
    with pytest.raises(ExecutorError, match="install crun or runc"):
        find_binary("no-such-runtime-xyz")


def test_addresses_stay_in_the_subnet_and_off_the_gateway() -> None:
    seen = {address_for(i) for i in range(70000)}
    assert "10.89.0.1" not in seen and "10.89.0.0" not in seen and "10.89.255.255" not in seen
    assert len(seen) == 65533
    assert all(a.startswith("10.89.") for a in seen)
