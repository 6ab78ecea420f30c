"""Leak checks: what a test's engines started must be gone once the test is over.

`LeakWatch` takes a snapshot before a test and compares after it, naming every leftover:
  - processes: new descendants of this pytest process, and any process whose root directory,
    working directory or command line lies in a watched state directory (container processes
    have their root under `<state>/run/m/`, whoever their parent is);
  - mounts: new mount points under a watched directory, and new overlay mounts anywhere whose
    options name one (a rootfs mounted elsewhere from the engine's layers);
  - network namespaces (`ip netns` names, /run/netns/dirk-<tag>-*), host-side veths
    (dk<tag>*) of the watched engines' tags, and the bridge filter's pairs naming such veths
    (what a service binding lets through).
An engine still running after the test (a module- or session-scoped one) may keep its pool
of ready namespaces: for its tag, up to `POOL_ALLOWANCE` namespaces (and their veths) with no
process inside are not counted as leaks, every one beyond that is; nor is the tmpfs holding
its bundles (`<state>/run/c`, mounted at its first exec).

Watched state directories: those under the test's `tmp_path` (any directory holding the
engine's database), the ones `sdk_engine.new_state_dir()` made during the test, and whatever a
test passes to `watch(path)` (what is there when it is passed is not a leak: a module-scoped
engine's own parts). Cleanup may be asynchronous (a killed container's reaper, the
namespace pool's thread): `check` retries for `grace` seconds before it reports.

Use it with the `no_leaks` fixture (tests/integration/conftest.py): list it among a test's
arguments or `pytestmark = pytest.mark.usefixtures("no_leaks")`; the check runs after all of
the test's own fixtures are torn down (the `pytest_runtest_teardown` hook below), so an
engine fixture stopped at teardown is checked after its stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from dirk.state.layout import StateLayout
from dirk.workers.executor import network
from dirk.workers.executor.executor import engine_tag
from tests.integration.sdk_engine import MADE_STATE_DIRS

NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
#: Ready namespaces a live engine may keep (NetnsPool's default size).
POOL_ALLOWANCE = 4
GRACE_S = 5.0

LEAK_WATCH_KEY = pytest.StashKey["LeakWatch"]()


def _pid_key(pid: str) -> tuple[int, int] | None:
    """(pid, start time in clock ticks): a pid reused by another process is another key."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(pid), int(fields[19])


def _state(pid: int) -> str:
    """The process's state letter (R, S, Z, ...), "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rpartition(")")[2].split()[1])


def _describe(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
    except OSError:
        cmdline = b"?"
    text = cmdline.decode(errors="replace")[:160]
    try:
        root = os.readlink(f"/proc/{pid}/root")
    except OSError:
        root = "?"
    return f"process {pid} ({text})" + (f" in root {root}" if root != "/" else "")


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of this process's mount namespace."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        point = before.split()[4].replace("\\040", " ")
        fstype, _, options = after.split(" ", 2)
        found.append((point, fstype, options))
    return found


def _isolation_pairs() -> list[tuple[str, str]]:
    """The (from port, to port) pairs the bridge filter lets through (service bindings)."""
    try:
        done = subprocess.run(
            ["nft", "-j", "list", "set", "bridge", network.ISOLATION_TABLE, network.ISOLATION_SET],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []  # no such table yet: no pairs
    pairs = []
    for entry in json.loads(done.stdout or "{}").get("nftables", []):
        for element in (entry.get("set") or {}).get("elem", []):
            ends = [str(n) for n in element.get("concat", [])] if isinstance(element, dict) else []
            if len(ends) == 2:
                pairs.append((ends[0], ends[1]))
    return pairs


def _netns_inodes_in_use() -> set[int]:
    inodes = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                inodes.add(os.stat(f"/proc/{entry.name}/ns/net").st_ino)
            except OSError:
                continue
    return inodes


class LeakWatch:
    """A snapshot before a test and the leftovers after it (see the module doc)."""

    def __init__(self, *roots: Path, grace: float = GRACE_S) -> None:
        self.roots = [Path(r) for r in roots]
        self.grace = grace
        self._me = os.getpid()
        self._before: set[str] = set()
        self._sdk_before = 0
        self._processes_before: set[tuple[int, int]] = set()

    def watch(self, path: Path) -> None:
        """Also check what lies in `path` (a state directory, or a folder holding some); what
        is there now (an engine's own parts while it runs) is not a leak."""
        self.roots.append(Path(path))
        self._before |= set(self._found(self._state_dirs()))

    def start(self) -> LeakWatch:
        self._sdk_before = len(MADE_STATE_DIRS)
        self._processes_before = self._all_processes()
        self._before = set(self._found(self._state_dirs()))
        return self

    # --- what is there now --------------------------------------------------------------------

    def _state_dirs(self) -> list[Path]:
        """Watched roots, state directories found below them, and new sdk_engine ones."""
        dirs = {p.resolve() for p in self.roots if p.exists()}
        dirs.update(p.parent.resolve() for p in MADE_STATE_DIRS[self._sdk_before :])
        for root in list(dirs):
            dirs.update(_state_dirs_below(root))
        return sorted(dirs)

    @staticmethod
    def _all_processes() -> set[tuple[int, int]]:
        keys = (_pid_key(e.name) for e in os.scandir("/proc") if e.name.isdigit())
        return {k for k in keys if k is not None}

    def _descends_from_me(self, pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            pid = _parent(pid)
            if pid == self._me:
                return True
            seen += 1
        return False

    def _processes(self, roots: list[str]) -> Iterator[str]:
        encoded = [r.encode() for r in roots]
        for key in self._all_processes() - self._processes_before:
            pid = key[0]
            if pid == self._me:
                continue
            ours = self._descends_from_me(pid)
            if not ours:
                try:
                    places = [os.readlink(f"/proc/{pid}/{n}") for n in ("root", "cwd")]
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                ours = any(_under(p, roots) for p in places) or any(r in cmdline for r in encoded)
            if ours and _state(pid) not in ("Z", ""):  # a zombie only waits for its parent
                yield _describe(pid)

    def _found(self, state_dirs: list[Path]) -> Iterator[str]:
        roots = [str(d) for d in state_dirs]
        yield from self._processes(roots)
        for point, fstype, options in _mounts():
            if _under(point, roots) or (fstype == "overlay" and any(r in options for r in roots)):
                yield f"mount {point} ({fstype})"
        tags = {engine_tag(StateLayout(d)): d for d in state_dirs}
        netns = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
        links = sorted(p.name for p in SYS_NET.iterdir())
        pairs = _isolation_pairs() if tags else []
        for tag in tags:
            yield from (f"netns {name}" for name in netns if name.startswith(f"dirk-{tag}-"))
            yield from (f"veth {name}" for name in links if name.startswith(f"dk{tag}"))
            yield from (f"bridge pair {a} -> {b}" for a, b in pairs if f"dk{tag}" in (a[:6], b[:6]))

    def leftovers(self) -> list[str]:
        """What is there now and was not before the test, less a live engine's pool."""
        state_dirs = self._state_dirs()
        new = [item for item in self._found(state_dirs) if item not in self._before]
        return self._without_live_engine_parts(new, state_dirs)

    def _without_live_engine_parts(self, found: list[str], state_dirs: list[Path]) -> list[str]:
        live = [d for d in state_dirs if _engine_running(d)]
        if not live:
            return found
        in_use = _netns_inodes_in_use()
        kept = list(found)
        for state in live:
            bundles = f"mount {StateLayout(state).run / 'c'} (tmpfs)"  # made at its first exec
            if bundles in kept:
                kept.remove(bundles)
            tag = engine_tag(StateLayout(state))
            idle = [
                item
                for item in found
                if item.startswith(f"netns dirk-{tag}-")
                and _inode(NETNS_DIR / item.split()[1]) not in in_use
            ]
            for item in idle[:POOL_ALLOWANCE]:
                kept.remove(item)
                veth = f"veth dk{tag}{item.split()[1].removeprefix(f'dirk-{tag}-')}"
                if veth in kept:
                    kept.remove(veth)
        return kept

    def check(self) -> list[str]:
        """Leftovers once `grace` seconds have not cleared them (empty: nothing leaked)."""
        deadline = time.monotonic() + self.grace
        while True:
            left = self.leftovers()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)

    def assert_clean(self) -> None:
        left = self.check()
        if left:
            pytest.fail(
                f"the test left {len(left)} thing(s) behind after {self.grace:.0f} s:\n  "
                + "\n  ".join(left),
                pytrace=False,
            )


def _state_dirs_below(root: Path, depth: int = 3) -> Iterator[Path]:
    """Directories holding an engine's database, `root` and up to `depth` levels below it
    (never into a state directory: its layers can hold many thousands of entries)."""
    if (root / "dirk.db").exists():
        yield root
        return
    if depth == 0:
        return
    try:
        entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for entry in entries:
        yield from _state_dirs_below(Path(entry.path), depth - 1)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _engine_running(state: Path) -> bool:
    """Whether an engine holds `state` (its pid file names a live process)."""
    try:
        pid = int((state / "engine.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return Path(f"/proc/{pid}").exists()


@pytest.fixture
def no_leaks(request: pytest.FixtureRequest, tmp_path: Path) -> LeakWatch:
    """Fails the test (at teardown) if it leaves processes, mounts, namespaces or veths."""
    watch = LeakWatch(tmp_path).start()
    request.node.stash[LEAK_WATCH_KEY] = watch
    return watch


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """After the test's fixtures are torn down, the check of its `no_leaks` (if any)."""
    result = yield
    watch = item.stash.get(LEAK_WATCH_KEY, None)
    if watch is not None:
        del item.stash[LEAK_WATCH_KEY]
        watch.assert_clean()
    return result
