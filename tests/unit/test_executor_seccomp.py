"""The default seccomp profile: valid OCI data, names libseccomp knows, the intended verdicts."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
from pathlib import Path
from typing import Any

import pytest

from dirk.workers.executor.seccomp import (
    CLONE_NAMESPACE_FLAGS,
    UNSHARE_NAMESPACE_FLAGS,
    architectures,
    default_profile,
    denied_names,
)
from dirk.workers.executor.spec import ContainerSpec, HostFiles, ResolvedUser, build_config

#: What the project rule asks to refuse, at the least.
REQUIRED = {
    "unshare", "clone", "clone3", "setns", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "open_by_handle_at", "name_to_handle_at", "init_module",
    "finit_module", "delete_module", "acct", "swapon", "swapoff", "reboot", "mount", "umount2",
    "pivot_root",
}  # fmt: skip

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_VFORK, CLONE_THREAD, CLONE_SYSVSEM = 0x4000, 0x10000, 0x40000
SIGCHLD = 17
PTHREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM


def verdict(profile: dict[str, Any], name: str, *args: int) -> tuple[str, int]:
    """(action, errno) the profile gives a call, evaluated as libseccomp does for our subset."""
    for rule in profile["syscalls"]:
        if name not in rule["names"]:
            continue
        conds = rule.get("args", [])
        assert all(c["op"] == "SCMP_CMP_MASKED_EQ" for c in conds)
        if all((args[c["index"]] & c["value"]) == c["valueTwo"] for c in conds):
            return rule["action"], rule.get("errnoRet", errno.EPERM)
    return profile["defaultAction"], 0


def libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        pytest.fail("libseccomp is missing: `apt-get install libseccomp2`", pytrace=False)
    lib = ctypes.CDLL(name)
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    return lib


def test_profile_is_json_data_in_oci_shape() -> None:
    profile = default_profile("x86_64")
    assert json.loads(json.dumps(profile)) == profile
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    for rule in profile["syscalls"]:
        assert rule["action"] == "SCMP_ACT_ERRNO"
        assert rule["errnoRet"] in (errno.EPERM, errno.ENOSYS)
        assert rule["names"] and all(isinstance(n, str) for n in rule["names"])
    assert default_profile() is not default_profile(), "callers may mutate their copy"


def test_architectures_cover_compat_modes() -> None:
    assert architectures("x86_64") == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert architectures("aarch64") == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert architectures("riscv64") == []  # native only


def test_every_name_and_arch_is_known_to_libseccomp() -> None:
    lib = libseccomp()
    unknown = [
        n for n in sorted(denied_names()) if lib.seccomp_syscall_resolve_name(n.encode()) == -1
    ]
    assert unknown == [], f"libseccomp does not know {unknown}: crun and runc would ignore them"
    for machine in ("x86_64", "aarch64"):
        for arch in architectures(machine):
            token = arch.removeprefix("SCMP_ARCH_").lower().encode()
            assert lib.seccomp_arch_resolve_name(token) != 0, arch


def test_required_calls_are_refused_and_ptrace_is_not() -> None:
    assert denied_names() >= REQUIRED
    assert "ptrace" not in denied_names()
    profile = default_profile()
    for name in REQUIRED - {"clone", "unshare", "clone3"}:
        assert verdict(profile, name, 0, 0) == ("SCMP_ACT_ERRNO", errno.EPERM), name


def test_namespace_flags_are_refused_but_fork_and_threads_are_not() -> None:
    profile = default_profile()
    allowed = ("SCMP_ACT_ALLOW", 0)
    assert verdict(profile, "clone", SIGCHLD) == allowed  # fork
    assert verdict(profile, "clone", CLONE_VM | CLONE_VFORK | SIGCHLD) == allowed  # posix_spawn
    assert verdict(profile, "clone", PTHREAD_FLAGS) == allowed  # pthread_create
    assert verdict(profile, "unshare", CLONE_FS | CLONE_FILES) == allowed
    for name, bit in CLONE_NAMESPACE_FLAGS.items():
        assert verdict(profile, "clone", bit | SIGCHLD) == ("SCMP_ACT_ERRNO", errno.EPERM), name
    for name, bit in UNSHARE_NAMESPACE_FLAGS.items():
        assert verdict(profile, "unshare", bit | CLONE_FS) == ("SCMP_ACT_ERRNO", errno.EPERM), name
    # clone3's flags sit in memory: ENOSYS makes glibc fall back to clone.
    assert verdict(profile, "clone3", 0) == ("SCMP_ACT_ERRNO", errno.ENOSYS)


def test_only_unprivileged_containers_get_the_filter() -> None:
    def config(privileged: bool) -> dict[str, Any]:
        files = HostFiles(Path("/b/resolv.conf"), Path("/b/hostname"), Path("/b/hosts"))
        spec = ContainerSpec(args=("true",), privileged=privileged)
        return build_config(
            spec, Path("/r"), ResolvedUser(), files, netns=None, nofile=1024, cgroups_path="/x"
        )

    assert config(False)["linux"]["seccomp"] == default_profile()
    assert "seccomp" not in config(True)["linux"]
