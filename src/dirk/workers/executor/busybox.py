"""A tiny root filesystem from the host's busybox-static, for tests and benchmarks.

It needs no registry: one static binary, a symlink per applet, and the /etc files a user
lookup reads (root, nobody and dirk:1000, who is also in group `wheel`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dirk.errors import ExecutorError

BUSYBOX = Path("/bin/busybox")

_PASSWD = """root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
dirk:x:1000:1000:dirk:/home/dirk:/bin/sh
"""
_GROUP = """root:x:0:
wheel:x:10:dirk
nogroup:x:65534:
dirk:x:1000:
"""


def make_busybox_rootfs(dest: Path) -> Path:
    """Fill `dest` (created if missing) with a busybox root filesystem; returns `dest`."""
    if not BUSYBOX.is_file():
        raise ExecutorError(
            f"{BUSYBOX} is missing: install Debian's busybox-static package (`make setup`)"
        )
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, check=True, text=True
    ).stdout.split()
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home/dirk", "tmp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    for applet in applets:
        link = dest / applet
        if link.name == "busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    (dest / "etc/passwd").write_text(_PASSWD)
    (dest / "etc/group").write_text(_GROUP)
    shutil.chown(dest / "home/dirk", 1000, 1000)
    return dest
