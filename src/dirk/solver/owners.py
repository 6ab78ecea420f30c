"""Owner strings of file operations ("uid", "uid:gid", "name", "name:group") to numeric ids,
resolved in the target filesystem's /etc/passwd and /etc/group, as Dagger does."""

from __future__ import annotations

from pathlib import Path

from dirk.errors import InvalidArgumentError


def _lookup(root: Path, table: str, name: str) -> tuple[int, int] | None:
    try:
        lines = (root / "etc" / table).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            return int(fields[2]), int(fields[3] if table == "passwd" else fields[2])
    return None


def resolve_owner(root: Path, owner: str) -> tuple[int, int]:
    user, _, group = owner.partition(":")
    if user.isdigit():
        uid, gid = int(user), int(user)
    else:
        found = _lookup(root, "passwd", user)
        if found is None:
            raise InvalidArgumentError(
                f"owner {owner!r}: no user {user!r} in the filesystem's /etc/passwd; "
                "use a numeric uid[:gid] or create the user first"
            )
        uid, gid = found
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = _lookup(root, "group", group)
            if found is None:
                raise InvalidArgumentError(
                    f"owner {owner!r}: no group {group!r} in the filesystem's /etc/group"
                )
            gid = found[0]
    return uid, gid
