"""Which OCI runtime to use (crun or runc), making it usable, and reading its failures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import attrs

from dirk.errors import ExecutorError
from dirk.workers.syscalls import is_mount_point

RUNTIME_ENV = "DIRK_RUNTIME"
KNOWN_RUNTIMES = ("crun", "runc")
_HUGETLB = Path("/sys/fs/cgroup/hugetlb")

#: How crun and runc report a command they could not find or execute.
_NOT_FOUND = (
    re.compile(r"executable file `(?P<cmd>[^`]*)` not found"),
    re.compile(r'exec: "(?P<cmd>[^"]*)": executable file not found'),
    re.compile(r'exec: "(?P<cmd>[^"]*)": stat \S+: no such file or directory'),
    re.compile(r"open executable: .*`(?P<cmd>[^`]*)`.*No such file"),
)


@attrs.frozen
class Runtime:
    """An OCI runtime binary and the state directory that holds only our containers."""

    name: str
    path: str
    root: Path

    def command(self, *args: str) -> list[str]:
        return [self.path, "--root", str(self.root), *args]

    def run_command(
        self, bundle: Path, container_id: str, log: Path, console_socket: str = ""
    ) -> list[str]:
        """`run` in the foreground; with `console_socket` (crun's `process.terminal` only),
        the runtime sends the master end of the container's pty there."""
        console = ["--console-socket", console_socket] if console_socket else []
        return self.command(
            *self._log_args(log), "run", *console, "--bundle", str(bundle), container_id
        )

    def _log_args(self, log: Path) -> list[str]:
        """Where the runtime writes its log, as JSON lines (crun and runc spell it apart)."""
        if self.name == "crun":
            return [f"--log=file:{log}", "--log-format=json"]
        return ["--log", str(log), "--log-format", "json"]

    def exec_command(
        self, container_id: str, process: Path, pid_file: Path, log: Path, console_socket: str
    ) -> list[str]:
        """`exec` of `process` (a process.json) in a running container, in the foreground;
        `pid_file` gets its host pid; `console_socket` as for `run_command`."""
        console = ["--console-socket", console_socket] if console_socket else []
        return self.command(
            *self._log_args(log),
            "exec",
            "--process",
            str(process),
            "--pid-file",
            str(pid_file),
            *console,
            container_id,
        )


def choose_runtime(requested: str | None) -> tuple[str, bool]:
    """(name, explicit): the caller's choice, else $DIRK_RUNTIME, else crun then runc."""
    name = requested or os.environ.get(RUNTIME_ENV) or ""
    if name:
        return name, True
    return ("crun" if shutil.which("crun") else "runc"), False


def find_binary(name: str) -> str:
    path = name if os.sep in name else shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        raise ExecutorError(
            f"the OCI runtime {name!r} was not found: install crun or runc (`make setup`), "
            f"or set {RUNTIME_ENV} to one that is installed"
        )
    return path


def _cgroup_v1_hybrid() -> bool:
    return (
        Path("/sys/fs/cgroup").is_dir() and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    )


def crun_problem() -> str | None:
    """Why crun cannot run containers on this host, after trying to fix it; None if it can.

    crun refuses cgroup v1 hybrid hosts unless the hugetlb controller is mounted as v1
    (see the machine notes); mounting it once per boot is harmless.
    """
    if not _cgroup_v1_hybrid() or is_mount_point(_HUGETLB):
        return None
    try:
        _HUGETLB.mkdir(exist_ok=True)
        subprocess.run(
            ["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(_HUGETLB)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return (
            f"crun needs the hugetlb cgroup v1 controller mounted at {_HUGETLB} on this cgroup "
            f"v1 hybrid host, and mounting it failed ({exc} {detail.decode(errors='replace')})"
            "; run `make host` as root, or use runc (DIRK_RUNTIME=runc)"
        )
    return None


def runtime_errors(log: Path) -> list[str]:
    """The error messages the runtime wrote to its JSON log (empty: it did not fail)."""
    try:
        if log.stat().st_size == 0:
            return []
        text = log.read_text(errors="replace")
    except OSError:
        return []
    messages = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            messages.append(str(entry.get("msg", "")).strip())
    return messages


def not_found_command(message: str) -> str | None:
    """The command a runtime error says it could not find, if that is what it says."""
    for pattern in _NOT_FOUND:
        match = pattern.search(message)
        if match:
            return match.group("cmd")
    return None
