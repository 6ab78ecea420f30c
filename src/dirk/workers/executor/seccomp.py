"""The seccomp profile of unprivileged containers, as OCI `linux.seccomp` data (pure: no I/O).

Containers run "without extra privileges unless asked": the capability set already stops most
privileged syscalls, but some kernel interfaces are open to any process and are a large attack
surface for a build step that never needs them (user namespaces, the keyring, bpf, perf,
userfaultfd, io_uring). The profile allows everything by default and refuses a short, explicit
list, so a syscall newer than the profile still works. Refused calls fail with EPERM, except
clone3, whose flags live in memory a filter cannot read: it fails with ENOSYS so that libc
falls back to clone, where the namespace flags can be checked. personality(2) is left alone:
refusing only its unsafe values needs several tests of one argument, which both crun and runc
split into OR-ed rules.

Both crun and runc accept this profile; every name is known to Debian 12's libseccomp 2.5.4.
"""

from __future__ import annotations

import errno
import platform
from typing import Any

import attrs

#: CLONE_NEW* flags refused in clone(2) (argument 0 on x86 and arm, the only arches we list).
CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
#: unshare(2) also takes CLONE_NEWTIME (0x80 is the exit signal's byte in clone, not a flag).
UNSHARE_NAMESPACE_FLAGS = {**CLONE_NAMESPACE_FLAGS, "CLONE_NEWTIME": 0x00000080}

#: Seccomp architectures per `platform.machine()`: the native one first, then the compat ones
#: its kernel can run (a 32-bit binary under a filter that omits its arch is killed).
ARCHITECTURES = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}


@attrs.frozen
class Deny:
    """Refuse `names` with `errno_ret`; with `flag`, only when that bit of argument `arg` is set."""

    names: tuple[str, ...]
    why: str
    errno_ret: int = errno.EPERM
    arg: int = 0
    flag: int = 0

    def to_oci(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "names": list(self.names),
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": self.errno_ret,
        }
        if self.flag:
            # MASKED_EQ: (arg & value) == valueTwo, one bit per rule (rules are OR-ed).
            entry["args"] = [
                {
                    "index": self.arg,
                    "value": self.flag,
                    "valueTwo": self.flag,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ]
        return entry


def _deny(names: str, why: str) -> Deny:
    return Deny(tuple(names.split()), why)


def _namespace_rules() -> tuple[Deny, ...]:
    why = "new namespaces (a user namespace grants every capability inside it)"
    rules = [Deny(("clone",), why, flag=bit) for bit in CLONE_NAMESPACE_FLAGS.values()]
    rules += [Deny(("unshare",), why, flag=bit) for bit in UNSHARE_NAMESPACE_FLAGS.values()]
    rules.append(Deny(("clone3",), "flags a filter cannot read: libc falls back", errno.ENOSYS))
    return tuple(rules)


#: What unprivileged containers may not do; privileged ones get no filter at all.
DENIED: tuple[Deny, ...] = (
    *_namespace_rules(),
    _deny("setns", "joining other namespaces"),
    _deny("keyctl add_key request_key", "the kernel keyring is shared with the host"),
    _deny("bpf", "eBPF programs"),
    _deny("perf_event_open", "performance counters observe the host"),
    _deny("userfaultfd", "a classic tool to widen kernel race windows"),
    _deny("io_uring_setup io_uring_enter io_uring_register", "I/O that seccomp cannot see"),
    _deny("kexec_load kexec_file_load reboot", "replacing or stopping the host kernel"),
    _deny("init_module finit_module delete_module", "kernel modules"),
    _deny("open_by_handle_at name_to_handle_at", "file handles reach outside the root"),
    _deny("acct swapon swapoff", "host-wide accounting and swap"),
    _deny(
        "mount umount umount2 pivot_root fsopen fsconfig fsmount fspick move_mount open_tree "
        "mount_setattr",
        "changing the mount table (old and new mount APIs)",
    ),
    _deny("quotactl quotactl_fd", "host filesystem quotas"),
    _deny(
        "lookup_dcookie uselib ustat sysfs _sysctl nfsservctl vm86 vm86old get_kernel_syms "
        "query_module create_module",
        "obsolete interfaces",
    ),
)


def denied_names() -> frozenset[str]:
    """Every syscall name the profile mentions."""
    return frozenset(name for rule in DENIED for name in rule.names)


def architectures(machine: str | None = None) -> list[str]:
    """The filter's arches for `machine` (default: this host); [] means the native arch only."""
    return list(ARCHITECTURES.get(machine or platform.machine(), ()))


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """A fresh `linux.seccomp` object for config.json: allow by default, refuse `DENIED`."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(machine),
        "syscalls": [rule.to_oci() for rule in DENIED],
    }
