"""Container networking: the `dirk0` bridge with NAT, and a pool of ready network namespaces.

Each container with network gets a fresh namespace holding `eth0` (one end of a veth pair whose
other end is a port of the bridge), an address in 10.89.0.0/16 (clear of eth0's 192.0.2.0/24,
podman's 10.88.0.0/16 and the host resolver 10.255.255.53) and a default route via the bridge;
nftables masquerades the subnet's outbound traffic. Making one costs about 6 ms with two
`ip -batch` processes (pyroute2 measured 14 ms: its namespace code forks too), so a background
thread keeps a few ready; a namespace serves one container and is then removed in-process
(unmount + unlink, about 0.1 ms), the kernel freeing its veth pair.

Several engines (one per state root) may share the host: each names its namespaces and veths
after a tag of its state root, and a container's address is derived from the host-side veth's
interface index, unique among live interfaces, so no allocation state is shared.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import os
import secrets
import subprocess
import threading
from collections import deque
from pathlib import Path

import attrs

from dirk.errors import ExecutorError

BRIDGE = "dirk0"
SUBNET = "10.89.0.0/16"
GATEWAY = "10.89.0.1"
PREFIX_LEN = 16
NFT_TABLE = "dirk"
NETNS_DIR = Path("/run/netns")
_SYS_NET = Path("/sys/class/net")
_MNT_DETACH = 2
_IP_TIMEOUT = 30

_NFT_RULES = f"""
table ip {NFT_TABLE} {{}}
flush table ip {NFT_TABLE}
table ip {NFT_TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {SUBNET} ip daddr != {SUBNET} masquerade
    }}
}}
"""


@attrs.frozen
class Netns:
    """A ready network namespace: its name under /run/netns and the container's address."""

    name: str
    veth: str
    address: str

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name


def address_for(ifindex: int) -> str:
    """The container address for a host-side veth: 10.89.x.y, never .0.0, .0.1 or .255.255."""
    host = 2 + ifindex % 65533
    return f"10.89.{host >> 8}.{host & 0xFF}"


def _ip(args: list[str], script: str) -> None:
    """Run one `ip -batch` script; raise ExecutorError with ip's own message on failure."""
    try:
        proc = subprocess.run(
            ["ip", *args, "-batch", "-"],
            input=script.encode(),
            capture_output=True,
            timeout=_IP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ExecutorError(
            f"could not run `ip` to set up container networking ({exc}): install iproute2"
        ) from exc
    if proc.returncode != 0:
        raise ExecutorError(
            "setting up a container network namespace failed: "
            f"{proc.stderr.decode(errors='replace').strip()} (ip {' '.join(args)} -batch: "
            f"{script.strip()!r}); the engine needs root with CAP_NET_ADMIN"
        )


def setup_host_network() -> None:
    """Create the bridge, its address, NAT and IP forwarding; idempotent and safe to repeat."""
    lines = []
    if not (_SYS_NET / BRIDGE).exists():
        lines.append(f"link add {BRIDGE} type bridge")
    lines.append(f"addr replace {GATEWAY}/{PREFIX_LEN} dev {BRIDGE}")
    lines.append(f"link set {BRIDGE} up")
    try:
        _ip([], "\n".join(lines) + "\n")
    except ExecutorError:
        if not (_SYS_NET / BRIDGE).exists():
            raise
        _ip([], "\n".join(lines[1:]) + "\n")  # another engine created it meanwhile
    try:
        proc = subprocess.run(
            ["nft", "-f", "-"], input=_NFT_RULES.encode(), capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ExecutorError(f"could not run `nft` ({exc}): install nftables") from exc
    if proc.returncode != 0:
        raise ExecutorError(
            "setting up NAT for containers failed: "
            f"{proc.stderr.decode(errors='replace').strip()}; the engine needs root and "
            "nftables support in the kernel"
        )
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if forward.read_text().strip() != "1":
        forward.write_text("1\n")


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def remove_netns(name: str) -> None:
    """What `ip netns del` does, without a process: detach the namespace's mount, unlink it."""
    path = NETNS_DIR / name
    if _libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, os.strerror(err), str(path))
    path.unlink(missing_ok=True)


def create_netns(name: str, veth: str) -> Netns:
    """A namespace with `eth0` on the bridge, an address and a default route (about 6 ms)."""
    try:
        _ip(
            [],
            f"netns add {name}\n"
            f"link add {veth} type veth peer name eth0 netns {name}\n"
            f"link set {veth} master {BRIDGE} up\n",
        )
        ifindex = int((_SYS_NET / veth / "ifindex").read_text())
        address = address_for(ifindex)
        _ip(
            ["-n", name],
            f"addr add {address}/{PREFIX_LEN} dev eth0\n"
            "link set eth0 up\n"
            "link set lo up\n"
            f"route add default via {GATEWAY}\n",
        )
    except BaseException:
        remove_netns(name)
        _delete_link(veth)
        raise
    return Netns(name=name, veth=veth, address=address)


def _delete_link(name: str) -> None:
    if (_SYS_NET / name).exists():
        subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=_IP_TIMEOUT)


def remove_leftovers(tag: str) -> list[str]:
    """Remove the namespaces and veths an earlier engine with this tag left; returns names."""
    removed = []
    prefix = f"dirk-{tag}-"
    if NETNS_DIR.is_dir():
        for entry in NETNS_DIR.iterdir():
            if entry.name.startswith(prefix):
                remove_netns(entry.name)
                removed.append(entry.name)
    if _SYS_NET.is_dir():
        for entry in _SYS_NET.iterdir():
            if entry.name.startswith(f"dk{tag}"):
                _delete_link(entry.name)
                removed.append(entry.name)
    return removed


class NetnsPool:
    """Keeps `size` namespaces ready; a thread fills it and removes released ones.

    A thread rather than a task: it does blocking `ip` calls, and it does not tie the pool to
    the event loop or the task that started it.
    """

    def __init__(self, tag: str, size: int = 4) -> None:
        self.tag = tag
        self.size = size
        self._ready: deque[Netns] = deque()
        self._released: deque[str] = deque()
        self._names = itertools.count(secrets.randbelow(1 << 24))
        self._cond = threading.Condition()
        self._closed = False
        self._error: ExecutorError | None = None
        self._thread: threading.Thread | None = None

    def _next_names(self) -> tuple[str, str]:
        n = next(self._names) % (1 << 36)
        return f"dirk-{self.tag}-{n:x}", f"dk{self.tag}{n:x}"

    def start(self) -> None:
        with self._cond:
            self._closed = False
            self._error = None
        self._thread = threading.Thread(target=self._work, name="dirk-netns-pool", daemon=True)
        self._thread.start()

    def create(self) -> Netns:
        """A new namespace made by the caller's thread (when the pool is empty)."""
        ns = create_netns(*self._next_names())
        with self._cond:
            if self._error is not None:  # it works again: resume filling
                self._error = None
                self._cond.notify()
        return ns

    def take(self) -> Netns | None:
        """A ready namespace, or None if none is ready (the caller then makes one)."""
        with self._cond:
            ns = self._ready.popleft() if self._ready else None
            self._cond.notify()
            return ns

    def release(self, ns: Netns, reuse: bool = False) -> None:
        """Hand a used namespace back: kept for the next container when `reuse` (its container
        had no CAP_NET_ADMIN, so it could not change the namespace's addresses, routes or
        firewall, and all its processes are gone), else removed.

        Reuse keeps two `ip` processes per container off a busy machine's cores, as
        BuildKit's namespace pool does."""
        with self._cond:
            if reuse and not self._closed and len(self._ready) < self.size:
                self._ready.append(ns)
            else:
                self._released.append(ns.name)
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while (
                    not self._closed
                    and not self._released
                    and (len(self._ready) >= self.size or self._error is not None)
                ):
                    self._cond.wait()
                if self._closed:
                    return
                released = list(self._released)
                self._released.clear()
                fill = len(self._ready) < self.size and self._error is None
            for name in released:
                with contextlib.suppress(OSError):
                    remove_netns(name)
            if fill:
                try:
                    ns = self.create()
                except ExecutorError as exc:
                    # Stop filling; callers create their own and see the error themselves.
                    with self._cond:
                        self._error = exc
                    continue
                with self._cond:
                    if self._closed:
                        remove_netns(ns.name)
                        return
                    self._ready.append(ns)

    def close(self) -> None:
        """Stop the thread and remove every namespace it holds (blocking)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._cond:
            names = [ns.name for ns in self._ready] + list(self._released)
            self._ready.clear()
            self._released.clear()
        for name in names:
            with contextlib.suppress(OSError):
                remove_netns(name)
