"""User strings resolved against the image's passwd and group files, as runc and Docker do."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dirk.errors import ExecutorError
from dirk.workers.executor.spec import ResolvedUser
from dirk.workers.executor.users import (
    parse_group,
    parse_passwd,
    resolve_user,
    resolve_user_in_rootfs,
)

PASSWD = parse_passwd(
    "root:x:0:0:root:/root:/bin/sh\n"
    "# a comment\n"
    "broken line\n"
    "dirk:x:1000:1000:dirk:/home/dirk:/bin/sh\n"
)
GROUP = parse_group("root:x:0:\nwheel:x:10:dirk,other\ndirk:x:1000:\naudio:x:29:dirk\n")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", ResolvedUser(0, 0, (), "/root")),
        ("root", ResolvedUser(0, 0, (), "/root")),
        ("dirk", ResolvedUser(1000, 1000, (10, 29), "/home/dirk")),
        ("1000", ResolvedUser(1000, 1000, (10, 29), "/home/dirk")),
        ("1000:10", ResolvedUser(1000, 10, (), "/home/dirk")),
        ("dirk:wheel", ResolvedUser(1000, 10, (), "/home/dirk")),
        ("4242", ResolvedUser(4242, 0, (), "/")),
        ("4242:4343", ResolvedUser(4242, 4343, (), "/")),
    ],
)
def test_resolve(user: str, expected: ResolvedUser) -> None:
    assert resolve_user(user, PASSWD, GROUP) == expected


def test_unknown_names_are_errors_that_say_what_to_do() -> None:
    with pytest.raises(ExecutorError, match=r"unable to find user 'ghost'.*numeric uid"):
        resolve_user("ghost", PASSWD, GROUP)
    with pytest.raises(ExecutorError, match="unable to find group 'ghosts'"):
        resolve_user("dirk:ghosts", PASSWD, GROUP)


def test_reads_the_images_files_not_the_hosts(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("app:x:700:701::/srv:/bin/sh\n")
    # An absolute symlink in an image points into the image, never to the host's /etc/group.
    (tmp_path / "data").mkdir()
    (tmp_path / "data/group").write_text("extra:x:50:app\n")
    (tmp_path / "etc/group").symlink_to("/data/group")
    assert resolve_user_in_rootfs(tmp_path, "app") == ResolvedUser(700, 701, (50,), "/srv")


def test_missing_files_allow_numeric_users_only(tmp_path: Path) -> None:
    assert resolve_user_in_rootfs(tmp_path, "") == ResolvedUser(0, 0, (), "/")
    assert resolve_user_in_rootfs(tmp_path, "5:6") == ResolvedUser(5, 6, (), "/")
    with pytest.raises(ExecutorError):
        resolve_user_in_rootfs(tmp_path, "root")


def test_a_fifo_or_directory_for_passwd_reads_as_missing(tmp_path: Path) -> None:
    # A step can leave a FIFO there; opening it for reading would block the engine's loop.
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc/passwd")
    (tmp_path / "etc/group").mkdir()
    found: list[ResolvedUser] = []
    worker = threading.Thread(
        target=lambda: found.append(resolve_user_in_rootfs(tmp_path, "7")), daemon=True
    )
    worker.start()
    worker.join(timeout=5)
    assert found == [ResolvedUser(7, 0, (), "/")], "resolving the user blocked on a FIFO"
