"""Turn a user string ("", "name", "uid", "uid:gid", "name:group") into numeric ids.

Names are looked up in the image's /etc/passwd and /etc/group (never the host's), with the
supplementary groups listed there, as Docker does. A numeric uid that the image does not know
is allowed (gid 0, home /), a name it does not know is an error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import attrs

from dirk.errors import ExecutorError
from dirk.workers.executor.spec import ResolvedUser
from dirk.workers.snapshots.fileops import resolve_in_root


@attrs.frozen
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@attrs.frozen
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def parse_passwd(text: str) -> list[PasswdEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 6 or line.startswith("#"):
            continue
        try:
            entries.append(PasswdEntry(fields[0], int(fields[2]), int(fields[3]), fields[5]))
        except ValueError:
            continue
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 3 or line.startswith("#"):
            continue
        members = tuple(m for m in fields[3].split(",") if m) if len(fields) > 3 else ()
        try:
            entries.append(GroupEntry(fields[0], int(fields[2]), members))
        except ValueError:
            continue
    return entries


def resolve_user(user: str, passwd: list[PasswdEntry], groups: list[GroupEntry]) -> ResolvedUser:
    """Resolve against parsed passwd/group entries; raises ExecutorError for unknown names."""
    name_part, has_group, group_part = user.partition(":")
    name_part = name_part or "0"
    entry: PasswdEntry | None = None
    if name_part.isdigit():
        uid = int(name_part)
        entry = next((e for e in passwd if e.uid == uid), None)
    else:
        entry = next((e for e in passwd if e.name == name_part), None)
        if entry is None:
            raise ExecutorError(
                f"unable to find user {name_part!r}: no matching entry in the image's "
                "/etc/passwd; create the user in an earlier step or give a numeric uid"
            )
        uid = entry.uid
    gid = entry.gid if entry is not None else 0
    home = entry.home if entry is not None and entry.home else "/"
    if has_group and group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            group = next((g for g in groups if g.name == group_part), None)
            if group is None:
                raise ExecutorError(
                    f"unable to find group {group_part!r}: no matching entry in the image's "
                    "/etc/group; create the group in an earlier step or give a numeric gid"
                )
            gid = group.gid
    additional: list[int] = []
    if entry is not None and not has_group:
        # Docker adds the groups that list the user as a member, unless a group was given.
        for group in groups:
            if entry.name in group.members and group.gid != gid and group.gid not in additional:
                additional.append(group.gid)
    return ResolvedUser(uid=uid, gid=gid, additional_gids=tuple(additional), home=home)


#: More than any real /etc/passwd or /etc/group; the rest is ignored.
_MAX_READ = 16 * 1024 * 1024


def _read(rootfs: Path, path: str) -> str:
    """A regular file's text, or "" for anything else: a FIFO at /etc/passwd (a step can make
    one) must not block the engine, which resolves users on its event loop."""
    try:
        fd = os.open(resolve_in_root(rootfs, path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        return os.read(fd, min(st.st_size, _MAX_READ)).decode(errors="replace")
    finally:
        os.close(fd)


def resolve_user_in_rootfs(rootfs: Path, user: str) -> ResolvedUser:
    """Resolve `user` against the image files in `rootfs`."""
    passwd = parse_passwd(_read(rootfs, "/etc/passwd"))
    groups = parse_group(_read(rootfs, "/etc/group"))
    return resolve_user(user, passwd, groups)
