"""Container networking: the `dirk0` bridge with NAT, and a pool of ready network namespaces.

Each container with network gets a fresh namespace holding `eth0` (one end of a veth pair whose
other end is a port of the bridge), an address in 10.89.0.0/16 (clear of eth0's 192.0.2.0/24,
podman's 10.88.0.0/16 and the host resolver 10.255.255.53) and a default route via the bridge;
nftables masquerades the subnet's outbound traffic. eth0 has no IPv6: dirk routes IPv4 only,
and IPv6 there would let any container with CAP_NET_RAW hand its peers addresses and routes by
router advertisements (Docker's CVE-2020-13401); the bridge has none either, for the host's sake.
Making one costs about 6 ms with two `ip -batch` processes (pyroute2 measured 14 ms: its
namespace code forks too), so a background thread keeps a few ready. A used namespace is removed
in-process (unmount + unlink, about 0.1 ms), the kernel freeing its veth pair, or kept for the
next container if nothing of the last one is left in it (see `NetnsPool.release`).

Containers do not reach each other over the bridge: a `bridge`-family table (shared by every
engine on the host, `ISOLATION_RULES`) drops frames between two of its ports unless the pair of
ports is in its `pairs` set, where a container bound to a service has (client, service) and
(service, client) while the binding lives (`allow_peers`, `forbid_peers`). Ports are matched
by name (the host-side veth), which a container cannot forge as it can a source address. The
engine itself reaches every container (its traffic is the host's, not forwarded).

Several engines (one per state root) may share the host: each names its namespaces and veths
after a tag of its state root, and a container's address is derived from the host-side veth's
interface index, unique among live interfaces, so no allocation state is shared.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import secrets
import socket
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import attrs

from dirk.errors import ExecutorError
from dirk.workers import syscalls
from dirk.workers.executor import nftables

BRIDGE = "dirk0"
SUBNET = "10.89.0.0/16"
GATEWAY = "10.89.0.1"
PREFIX_LEN = 16
NFT_TABLE = "dirk"
NETNS_DIR = Path("/run/netns")
_SYS_NET = Path("/sys/class/net")
_IP_TIMEOUT = 30
#: Container addresses repeat every this many interface indexes (see `address_for`).
_HOSTS = 65533
#: A kernel without IPv6 has no such file, and nothing to disable.
_IPV6_CONF = Path("/proc/sys/net/ipv6/conf")

T = TypeVar("T")

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


#: The isolation table (family bridge): created with `add`, so several engines setting it
#: up at once, or again, never lose each other's pairs; its chain is flushed and refilled
#: in one transaction (the rules are the same for every engine).
ISOLATION_TABLE = "dirk"
ISOLATION_SET = "pairs"
_ISOLATION_RULES = f"""
add table bridge {ISOLATION_TABLE}
add set bridge {ISOLATION_TABLE} {ISOLATION_SET} {{ type ifname . ifname; }}
add chain bridge {ISOLATION_TABLE} forward {{ type filter hook forward priority 0; policy accept; }}
flush chain bridge {ISOLATION_TABLE} forward
add rule bridge {ISOLATION_TABLE} forward iifname "dk*" oifname "dk*" \
    iifname . oifname @{ISOLATION_SET} accept
add rule bridge {ISOLATION_TABLE} forward iifname "dk*" oifname "dk*" drop
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
    host = 2 + ifindex % _HOSTS
    return f"10.89.{host >> 8}.{host & 0xFF}"


def same_address(ifindex: int) -> range:
    """The lower interface indexes whose containers get the address of `ifindex`'s. Only a
    namespace kept for reuse lives long enough for the host's indexes to grow that far."""
    return range(ifindex - _HOSTS, 0, -_HOSTS)


def _address_taken(ifindex: int) -> bool:
    """Whether a port of the bridge (of any engine) already has the address of `ifindex`."""
    for other in same_address(ifindex):
        try:
            master = os.readlink(_SYS_NET / socket.if_indextoname(other) / "master")
        except OSError:
            continue
        if os.path.basename(master) == BRIDGE:
            return True
    return False


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
    _nft(_ISOLATION_RULES, "setting up container isolation")
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if forward.read_text().strip() != "1":
        forward.write_text("1\n")
    _disable_ipv6(BRIDGE)


def _nft(script: str, what: str) -> None:
    """Run one nftables transaction (in-process, `nftables.run`); raise ExecutorError with
    nft's message on failure."""
    try:
        error = nftables.run(script)
    except OSError as exc:
        raise ExecutorError(f"could not run `nft` ({exc}): install nftables") from exc
    if error is not None:
        raise ExecutorError(
            f"{what} failed: {error}; the engine needs root and nftables support (bridge "
            "family) in the kernel"
        )


def _pair_elements(veth: str, peers: Sequence[str]) -> str:
    return ", ".join(f'"{a}" . "{b}"' for peer in peers for a, b in ((veth, peer), (peer, veth)))


def allow_peers(veth: str, peers: Sequence[str]) -> None:
    """Let the container on port `veth` and each of `peers` talk to each other (~4 ms)."""
    if peers:
        _nft(
            f"add element bridge {ISOLATION_TABLE} {ISOLATION_SET} "
            f"{{ {_pair_elements(veth, peers)} }}\n",
            "letting a container reach its services",
        )


def forbid_peers(veth: str, peers: Sequence[str]) -> None:
    """Undo `allow_peers`; pairs already gone (a cleanup ran first) are no error."""
    if not peers:
        return
    try:
        _nft(
            f"delete element bridge {ISOLATION_TABLE} {ISOLATION_SET} "
            f"{{ {_pair_elements(veth, peers)} }}\n",
            "removing a container's service pairs",
        )
    except ExecutorError:  # some were gone: the transaction failed as a whole, go one by one
        for peer in peers:
            _delete_pair(veth, peer)
            _delete_pair(peer, veth)


def _delete_pair(a: str, b: str) -> None:
    with contextlib.suppress(ExecutorError):
        _nft(
            f'delete element bridge {ISOLATION_TABLE} {ISOLATION_SET} {{ "{a}" . "{b}" }}\n',
            "removing a service pair",
        )


def _remove_pairs_of(prefix: str) -> list[str]:
    """Delete the isolation pairs naming a veth that starts with `prefix` (a dead engine's)."""
    try:
        proc = subprocess.run(
            ["nft", "-j", "list", "set", "bridge", ISOLATION_TABLE, ISOLATION_SET],
            capture_output=True,
            timeout=30,
        )
        listing = json.loads(proc.stdout or b"{}") if proc.returncode == 0 else {}
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    stale: list[tuple[str, str]] = []
    for entry in listing.get("nftables", []):
        for element in (entry.get("set") or {}).get("elem", []):
            pair = (element.get("concat") or []) if isinstance(element, dict) else []
            names = [str(name) for name in pair]
            if len(names) == 2 and any(name.startswith(prefix) for name in names):
                stale.append((names[0], names[1]))
    for a, b in stale:
        _delete_pair(a, b)
    return [f"{a}.{b}" for a, b in stale]


def _disable_ipv6(interface: str) -> None:
    """No IPv6 on `interface` (of the calling thread's network namespace); see the module doc.
    Disabling also drops whatever addresses and routes advertisements had given it."""
    with contextlib.suppress(FileNotFoundError):
        (_IPV6_CONF / interface / "disable_ipv6").write_text("1\n")


def in_netns(name: str, action: Callable[[], T]) -> T:
    """Run `action` in a new thread that joined network namespace `name` (about 0.1 ms).

    A thread's network namespace is its own, and it is what /proc/sys/net and
    /proc/thread-self/net show; the thread ends there, so nothing else runs inside by mistake.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, syscalls.CLONE_NEWNET)
            finally:
                os.close(fd)
            outcome.append(action())
        except BaseException as exc:  # raised again in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="dirk-netns-enter")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def socket_counts(sockstat: str) -> dict[str, int]:
    """/proc/net/sockstat{,6} as {"TCP inuse": 0, "TCP tw": 0, "TCP6 inuse": 0, ...}."""
    counts = {}
    for line in sockstat.splitlines():
        proto, _, rest = line.partition(":")
        fields = rest.split()
        for key, value in zip(fields[::2], fields[1::2], strict=False):
            with contextlib.suppress(ValueError):
                counts[f"{proto} {key}"] = int(value)
    return counts


def reusable(name: str) -> bool:
    """Whether used namespace `name` can serve another container: no TCP socket of its last one
    is left, not even in TIME_WAIT (that would keep the next one from binding the same port).
    Clears its route cache on the way (path MTUs and redirects its traffic taught the kernel)."""
    return in_netns(name, _settle)


def _settle() -> bool:
    """`reusable`, run inside the namespace."""
    Path("/proc/sys/net/ipv4/route/flush").write_text("1\n")
    counts: dict[str, int] = {}
    for name in ("sockstat", "sockstat6"):
        with contextlib.suppress(FileNotFoundError):
            counts |= socket_counts(Path("/proc/thread-self/net", name).read_text())
    return not any(counts.get(key) for key in ("TCP inuse", "TCP tw", "TCP6 inuse"))


def remove_netns(name: str) -> None:
    """What `ip netns del` does, without a process: detach the namespace's mount, unlink it."""
    path = NETNS_DIR / name
    err = syscalls.umount(path, syscalls.MNT_DETACH)
    if err not in (0, errno.EINVAL, errno.ENOENT):
        raise OSError(err, os.strerror(err), str(path))
    path.unlink(missing_ok=True)


def _add_veth(name: str, veth: str) -> str:
    """The `ip -batch` lines putting eth0 of namespace `name` on the bridge as port `veth`."""
    return (
        f"link add {veth} type veth peer name eth0 netns {name}\n"
        f"link set {veth} master {BRIDGE} up\n"
    )


def _ifindex(link: str) -> int:
    return int((_SYS_NET / link / "ifindex").read_text())


def create_netns(name: str, veth: str) -> Netns:
    """A namespace with `eth0` on the bridge, an address and a default route (about 6 ms)."""
    try:
        _ip([], f"netns add {name}\n" + _add_veth(name, veth))
        ifindex = _ifindex(veth)
        tries = 0
        while _address_taken(ifindex):  # rare (see `same_address`); a new veth, a new index
            tries += 1
            if tries > 8:
                raise ExecutorError(
                    f"no free container address for {veth}: the bridge {BRIDGE} has more than "
                    f"{_HOSTS} ports, or ports whose addresses keep clashing; restart the engine"
                )
            _delete_link(veth)
            _ip([], _add_veth(name, veth))
            ifindex = _ifindex(veth)
        address = address_for(ifindex)
        in_netns(name, lambda: _disable_ipv6("eth0"))
        _ip(
            ["-n", name],
            f"addr add {address}/{PREFIX_LEN} dev eth0\n"
            "link set eth0 up\n"
            "link set lo up\n"
            f"route add default via {GATEWAY}\n",
        )
    except OSError as exc:
        _remove(name, veth)
        raise ExecutorError(
            f"setting up container network namespace {name} failed: {exc}; the engine needs "
            "root with CAP_NET_ADMIN and CAP_SYS_ADMIN"
        ) from exc
    except BaseException:
        _remove(name, veth)
        raise
    return Netns(name=name, veth=veth, address=address)


def _remove(name: str, veth: str) -> None:
    remove_netns(name)
    _delete_link(veth)


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
    removed += _remove_pairs_of(f"dk{tag}")
    return removed


class NetnsPool:
    """Keeps `size` namespaces ready; a thread fills it, and removes or recycles used ones.

    A thread rather than a task: it does blocking `ip` calls, and it does not tie the pool to
    the event loop or the task that started it.
    """

    def __init__(self, tag: str, size: int = 4) -> None:
        self.tag = tag
        self.size = size
        self._ready: deque[Netns] = deque()
        self._released: deque[str] = deque()
        self._returned: deque[Netns] = deque()
        self._names = itertools.count(secrets.randbelow(1 << 24))
        self._cond = threading.Condition()
        self._closed = False
        self._filling = True
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
        """Hand a used namespace back, once every process of its container is gone.

        With `reuse` (its container had neither CAP_NET_ADMIN nor a writable /proc/sys, so it
        could not change the namespace's addresses, routes, firewall or settings) the pool's
        thread keeps it for the next container if `reusable` says so; else it is removed.
        Reuse keeps two `ip` processes per step off a busy machine's cores, as BuildKit's
        namespace pool does."""
        with self._cond:
            if not self._closed:
                if reuse:
                    self._returned.append(ns)
                else:
                    self._released.append(ns.name)
                self._cond.notify()
                return
        with contextlib.suppress(OSError):  # no thread any more to do it
            remove_netns(ns.name)

    def _recycle(self, ns: Netns) -> bool:
        """Whether `ns` went back to the ready ones (else the caller removes it)."""
        try:
            clean = reusable(ns.name)
        except OSError:
            return False
        with self._cond:
            if not clean or self._closed or len(self._ready) >= self.size:
                return False
            self._ready.append(ns)
            return True

    def _wants_more(self) -> bool:
        """Whether the thread should make a namespace (the lock held). It starts once fewer than
        half are ready and goes on up to `size`: while steps run one after another, each one's
        namespace comes back for the next (see `release`) before the pool needs a new one."""
        if self._closed or self._error is not None:
            return False
        if len(self._ready) < (self.size + 1) // 2:
            self._filling = True
        elif len(self._ready) >= self.size:
            self._filling = False
        return self._filling

    def _work(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._released or self._returned or self._wants_more()):
                    self._cond.wait()
                if self._closed:
                    return
                released = list(self._released)
                returned = list(self._returned)
                self._released.clear()
                self._returned.clear()
            released += [ns.name for ns in returned if not self._recycle(ns)]
            for name in released:
                with contextlib.suppress(OSError):
                    remove_netns(name)
            with self._cond:
                fill = self._wants_more()
            if fill:
                try:
                    ns = self.create()
                except ExecutorError as exc:
                    # Stop filling; callers create their own and see the error themselves.
                    with self._cond:
                        self._error = exc
                    continue
                with self._cond:
                    if not self._closed:
                        self._ready.append(ns)
                        continue
                with contextlib.suppress(OSError):
                    remove_netns(ns.name)
                return

    def close(self) -> None:
        """Stop the thread and remove every namespace it holds (blocking)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._cond:
            names = [ns.name for ns in (*self._ready, *self._returned)] + list(self._released)
            self._ready.clear()
            self._returned.clear()
            self._released.clear()
        for name in names:
            with contextlib.suppress(OSError):
                remove_netns(name)
