"""The OCI runtime configuration of one container, as a plain dict (pure: no I/O).

Defaults follow Docker's, because pipelines written for Docker must behave the same here:
Docker's capability set, masked and read-only /proc paths, /dev with devpts, shm and mqueue,
read-only sysfs and cgroup, `noNewPrivileges` false, and our own seccomp profile (seccomp.py).
`privileged` lifts the capability, path and syscall restrictions only (no host devices).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from dirk.workers.executor.seccomp import default_profile

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Docker's default capability set: `apt-get install` needs all of it.
DOCKER_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: Every capability of the running kernels (0..40), for privileged containers.
ALL_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: Where the host's CA bundle goes (Debian, Ubuntu, Alpine and their derivatives use this path).
CA_BUNDLE_PATH = "/etc/ssl/certs/ca-certificates.crt"
#: Files the executor writes per container and binds over the image's.
ETC_FILES = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")
#: Mount points of the runtime's own filesystems that live directly in the root filesystem.
SYSTEM_TARGETS = ("/proc", "/dev", "/sys")


@attrs.frozen
class BindMount:
    """A host file or directory at `target` in the container (recursive bind)."""

    source: Path
    target: str
    readonly: bool = False


@attrs.frozen
class TmpfsMount:
    """An empty in-memory filesystem at `target`; `size` in bytes, 0 = the kernel's default."""

    target: str
    size: int = 0


Mount = BindMount | TmpfsMount


@attrs.frozen
class SecretFile:
    """A secret as a read-only file at `target`: the executor writes `data` on a tmpfs (never
    in the root filesystem) and binds it there for the run only."""

    target: str
    data: bytes = attrs.field(repr=False)
    uid: int = 0
    gid: int = 0
    mode: int = 0o400


@attrs.frozen
class ContainerSpec:
    """What to run and how; `user` is "" (root), "name", "uid", "uid:gid" or "name:group".

    `secret_env` ("NAME=value", after `env`) and `secret_files` hold secret values: they reach
    only the container's process, through files on a tmpfs, and never a repr or a log."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    hostname: str = "dirk"
    mounts: tuple[Mount, ...] = ()
    stdin: bytes | None = None
    network: bool = True
    privileged: bool = False
    secret_env: tuple[str, ...] = attrs.field(default=(), repr=False)
    secret_files: tuple[SecretFile, ...] = ()
    #: (name, address) lines added to /etc/hosts: the services this container is bound to.
    extra_hosts: tuple[tuple[str, str], ...] = ()
    #: Host-side veths of the containers this one may reach over the bridge (its services);
    #: traffic between two containers is dropped otherwise (`network.ISOLATION_RULES`).
    peers: tuple[str, ...] = ()
    #: (container port, host port) pairs: TCP listeners on the container's 127.0.0.1 that
    #: relay to the host's 127.0.0.1 while it runs (a nested command's way to the engine).
    loopback_forwards: tuple[tuple[int, int], ...] = ()

    @property
    def has_secrets(self) -> bool:
        return bool(self.secret_env or self.secret_files)


@attrs.frozen
class ProcessResult:
    """How the command ended; a non-zero exit code is a result, not an error."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    duration: float
    #: The order the bytes arrived in: runs of (0 = stdout, 1 = stderr; byte count).
    order: tuple[tuple[int, int], ...] = ()


def combine(stdout: bytes, stderr: bytes, order: Sequence[Sequence[int]]) -> bytes:
    """Both streams interleaved as they arrived (Dagger's `combinedOutput`)."""
    streams = (memoryview(stdout), memoryview(stderr))
    offsets = [0, 0]
    parts: list[bytes] = []
    for stream, count in order:
        start = offsets[stream]
        parts.append(bytes(streams[stream][start : start + count]))
        offsets[stream] = start + count
    return b"".join(parts)


OutputCallback = Callable[[Literal["stdout", "stderr"], bytes], None]


@attrs.frozen
class ResolvedUser:
    """The numeric identity a `ContainerSpec.user` stands for in one root filesystem."""

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    home: str = "/root"


@attrs.frozen
class HostFiles:
    """Host paths of the per-container files bound into the container."""

    resolv_conf: Path
    hostname: Path
    hosts: Path
    ca_bundle: Path | None = None


def capabilities_of_mask(mask: int) -> tuple[str, ...]:
    """The names of the capabilities set in a mask such as /proc/self/status's CapBnd."""
    return tuple(name for bit, name in enumerate(ALL_CAPABILITIES) if mask >> bit & 1)


def normalize_target(target: str) -> str:
    """An absolute, normalized container path; relative targets are taken from /."""
    path = posixpath.normpath("/" + target)
    return "/" + path.lstrip("/")


def build_env(spec: ContainerSpec, user: ResolvedUser) -> list[str]:
    """The caller's environment plus Docker's defaults for what it lacks (PATH, HOSTNAME, HOME)."""
    keys = {item.partition("=")[0] for item in (*spec.env, *spec.secret_env)}
    env: list[str] = []
    if "PATH" not in keys:
        env.append("PATH=" + DEFAULT_PATH)
    if "HOSTNAME" not in keys:
        env.append("HOSTNAME=" + spec.hostname)
    env.extend(spec.env)
    env.extend(spec.secret_env)
    if "HOME" not in keys:
        env.append("HOME=" + user.home)
    return env


def search_path(env: Sequence[str]) -> str:
    """The PATH a command is looked up in, for error messages."""
    for item in reversed(env):
        key, _, value = item.partition("=")
        if key == "PATH":
            return value
    return DEFAULT_PATH


def sorted_mounts(mounts: Sequence[Mount]) -> list[Mount]:
    """Parents before children (as Docker does), whatever order the caller gave."""
    return sorted(mounts, key=lambda m: normalize_target(m.target).count("/"))


def stub_paths(spec: ContainerSpec, ca_bundle: bool) -> list[str]:
    """Container paths the runtime may create in the root filesystem as mount points.

    Every mount target and its missing parents can appear; deepest first, so that a caller
    removing empty ones can go down the list.
    """
    targets = [*SYSTEM_TARGETS, *ETC_FILES]
    if ca_bundle:
        targets.append(CA_BUNDLE_PATH)
    targets.extend(normalize_target(m.target) for m in spec.mounts)
    targets.extend(normalize_target(f.target) for f in spec.secret_files)
    paths: set[str] = set()
    for target in targets:
        while target != "/":
            paths.add(target)
            target = posixpath.dirname(target)
    return sorted(paths, key=lambda p: (-p.count("/"), p))


def _base_mounts(privileged: bool) -> list[dict[str, Any]]:
    ro = [] if privileged else ["ro"]
    return [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", *ro],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", *ro],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        },
    ]


def _bind(source: Path | str, target: str, readonly: bool) -> dict[str, Any]:
    options = ["rbind", "rprivate"]
    if readonly:
        options.append("ro")
    return {"destination": target, "type": "bind", "source": str(source), "options": options}


def _mount(mount: Mount) -> dict[str, Any]:
    target = normalize_target(mount.target)
    if isinstance(mount, BindMount):
        return _bind(mount.source.absolute(), target, mount.readonly)
    options = ["nosuid", "nodev", "mode=1777"]
    if mount.size > 0:
        options.append(f"size={mount.size}")
    return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options}


#: Docker's device cgroup rules: deny by default; mknod of anything; the usual character devices.
_DOCKER_DEVICES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *(
        {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
        for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2))
    ),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]


def build_config(
    spec: ContainerSpec,
    rootfs: Path,
    user: ResolvedUser,
    files: HostFiles,
    *,
    netns: str | None,
    nofile: int,
    cgroups_path: str,
    all_caps: Sequence[str] = ALL_CAPABILITIES,
    console: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The `config.json` of one container.

    `console` (rows, columns) gives the process a terminal of that size (`process.terminal`,
    with TERM=xterm unless the environment sets TERM, as Docker does for `-t`).

    `netns` is the path of a prepared network namespace, or None for a new one that the
    runtime creates (loopback only). `nofile` must not exceed the engine's hard limit, and
    `all_caps` (what privileged containers get) the engine's own bounding set.
    """
    caps = list(all_caps if spec.privileged else DOCKER_CAPABILITIES)
    # Like Docker: a non-root user keeps the bounding set but starts without capabilities.
    active = caps if user.uid == 0 else []
    namespaces: list[dict[str, str]] = [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "network", "path": netns} if netns else {"type": "network"},
    ]
    mounts = _base_mounts(spec.privileged)
    mounts.append(_bind(files.resolv_conf, "/etc/resolv.conf", False))
    mounts.append(_bind(files.hostname, "/etc/hostname", False))
    mounts.append(_bind(files.hosts, "/etc/hosts", False))
    if files.ca_bundle is not None:
        mounts.append(_bind(files.ca_bundle, CA_BUNDLE_PATH, True))
    mounts.extend(_mount(m) for m in sorted_mounts(spec.mounts))
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": {
            "devices": [{"allow": True, "access": "rwm"}] if spec.privileged else _DOCKER_DEVICES
        },
        "sysctl": {
            "net.ipv4.ip_unprivileged_port_start": "0",
            "net.ipv4.ping_group_range": "0 2147483647",
        },
    }
    if not spec.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        linux["seccomp"] = default_profile()
    env = build_env(spec, user)
    process: dict[str, Any] = {}
    if console is not None:
        process["consoleSize"] = {"height": console[0], "width": console[1]}
        if not any(item.startswith("TERM=") for item in env):
            env.append("TERM=xterm")
    return {
        "ociVersion": "1.0.2",
        "process": {
            **process,
            "terminal": console is not None,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": list(user.additional_gids),
            },
            "args": list(spec.args),
            "env": env,
            "cwd": normalize_target(spec.cwd),
            "capabilities": {
                "bounding": caps,
                "effective": active,
                "permitted": active,
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs.absolute()), "readonly": False},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    }
