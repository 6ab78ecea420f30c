"""The default seccomp profile on real containers, under crun and runc.

Busybox (from busybox-static) shows what a shell user sees; the python image shows that
threads, fork and subprocesses still work, and what each refused syscall returns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from pathlib import Path

import pytest

from dirk.engine import EngineCore
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import Exec
from dirk.workers.executor.executor import Executor
from dirk.workers.executor.spec import ContainerSpec, ProcessResult

from .engine_helpers import image

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def sh(ex: Executor, rootfs: Path, script: str, **kwargs: object) -> ProcessResult:
    spec = ContainerSpec(args=("sh", "-c", script), network=False, **kwargs)  # type: ignore[arg-type]
    return await ex.run(rootfs, spec)


# --- busybox ----------------------------------------------------------------------------------


async def test_unshare_user_namespace_is_refused(executor: Executor, rootfs: Path) -> None:
    for user in ("", "dirk"):  # a non-root user could create one without the filter
        result = await sh(executor, rootfs, "unshare -U true", user=user)
        assert result.exit_code != 0, user
        assert b"Operation not permitted" in result.stderr, result.stderr
    status = await sh(executor, rootfs, "grep '^Seccomp:' /proc/self/status")
    assert status.stdout.split() == [b"Seccomp:", b"2"]  # 2 = filter mode


async def test_everyday_shell_work_still_runs(executor: Executor, rootfs: Path) -> None:
    script = (
        "set -e; ls / > /dev/null; echo piped | cat; (echo subshell) & wait; "
        "mkdir -p /tmp/d && echo x > /tmp/d/f && cat /tmp/d/f; id -u; chown 1000 /tmp/d/f; "
        "ps > /dev/null; echo done"
    )
    result = await sh(executor, rootfs, script)
    assert (result.exit_code, result.stderr) == (0, b"")
    assert result.stdout == b"piped\nsubshell\nx\n0\ndone\n"


async def test_privileged_container_has_no_filter(executor: Executor, rootfs: Path) -> None:
    result = await sh(
        executor,
        rootfs,
        "unshare -U true && echo unshared; grep '^Seccomp:' /proc/self/status",
        privileged=True,
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [b"unshared", b"Seccomp:", b"0"]


# --- python image -----------------------------------------------------------------------------

#: Each refused call with arguments that are harmless when nothing filters it (they then fail
#: with EINVAL, EFAULT or EBADF, or succeed), so only the filter can make them EPERM/ENOSYS.
PROBES: dict[str, list[int]] = {
    "clone3": [0, 0],
    "setns": [-1, 0],
    "keyctl": [0, -3, 0],  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": [0, 0, 0, 0, 0],
    "bpf": [-1, 0, 0],
    "perf_event_open": [0, 0, -1, -1, 0],
    "userfaultfd": [0],
    "io_uring_setup": [0, 0],
    "unshare": [0x10000000],  # CLONE_NEWUSER; last, as it changes the caller's namespace
}

PYTHON = """
import ctypes, errno, json, subprocess, sys
from multiprocessing import Pool
from multiprocessing.pool import ThreadPool

def square(x):
    return x * x

if __name__ == "__main__":
    with ThreadPool(4) as tp:
        threads = tp.map(square, range(8))
    with Pool(2) as pool:
        processes = pool.map(square, range(8))
    child = subprocess.run(["sh", "-c", "echo child"], capture_output=True, text=True).stdout
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    errors = {}
    for name, (nr, *args) in json.loads(sys.argv[1]).items():
        ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
        errors[name] = errno.errorcode[ctypes.get_errno()] if ret == -1 else "OK"
    print(json.dumps({"threads": threads, "processes": processes, "child": child,
                      "errors": errors}))
"""


def syscall_numbers() -> dict[str, list[int]]:
    """PROBES with the host's syscall numbers in front (containers run the host's arch)."""
    name = ctypes.util.find_library("seccomp")
    assert name, "libseccomp is missing: `apt-get install libseccomp2`"
    resolve = ctypes.CDLL(name).seccomp_syscall_resolve_name
    resolve.argtypes = [ctypes.c_char_p]
    numbers = {call: resolve(call.encode()) for call in PROBES}
    assert all(nr >= 0 for nr in numbers.values()), numbers
    return {call: [numbers[call], *args] for call, args in PROBES.items()}


async def test_python_threads_processes_and_refused_calls(
    runtime: str, tmp_path: Path, python_ref: str
) -> None:
    async with EngineCore(tmp_path / "state", runtime=runtime) as engine:
        assert engine.runtime_name == runtime
        root, config = await image(engine, python_ref)
        args = ("python3", "-c", PYTHON, json.dumps(syscall_numbers()))
        outputs = {}
        for privileged in (False, True):
            step = Exec(root, args, env=config.env, insecure_root_capabilities=privileged)
            result = await engine.solver.result(BACKGROUND, step)
            assert result.exec is not None and result.exec.exit_code == 0, result.exec
            outputs[privileged] = json.loads(result.exec.stdout)

    squares = [x * x for x in range(8)]
    for out in outputs.values():
        assert (out["threads"], out["processes"], out["child"]) == (squares, squares, "child\n")
    refused = outputs[False]["errors"]
    assert refused.pop("clone3") == "ENOSYS"  # so that glibc falls back to clone
    assert refused == dict.fromkeys(refused, "EPERM")
    unfiltered = outputs[True]["errors"]
    assert not {"EPERM", "ENOSYS"} & set(unfiltered.values()), unfiltered
