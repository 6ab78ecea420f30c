"""Owner strings of file operations ("uid", "uid:gid", "name", "name:group") to numeric ids,
resolved in the target filesystem's /etc/passwd and /etc/group, as Dagger does."""

from __future__ import annotations

from pathlib import Path

from dirk.workers.executor.users import resolve_user_in_rootfs


def resolve_owner(root: Path, owner: str) -> tuple[int, int]:
    """Like a container user, except that a numeric uid without a group also means that gid
    (Dagger: "if the group is omitted, it defaults to the same as the user")."""
    user, has_group, _ = owner.partition(":")
    resolved = resolve_user_in_rootfs(root, owner)
    if user.isdigit() and not has_group:
        return resolved.uid, resolved.uid
    return resolved.uid, resolved.gid
