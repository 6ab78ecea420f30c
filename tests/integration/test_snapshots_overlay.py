"""The snapshotter on real overlayfs mounts: steps, commits, whiteouts, flattening, recovery."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dirk.errors import SnapshotPathError
from dirk.state import Database, StateLayout
from dirk.workers.snapshots import fileops, overlay
from dirk.workers.snapshots.hostdir import import_host_path
from dirk.workers.snapshots.layers import LayerStore, Snapshot
from dirk.workers.snapshots.layerview import OPAQUE_XATTR, is_whiteout
from dirk.workers.snapshots.snapshotter import Snapshotter
from dirk.workers.syscalls import mounts_under

pytestmark = pytest.mark.integration


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[StateLayout]:
    assert os.geteuid() == 0, "overlayfs mounts need root: run the integration tests as root"
    layout = StateLayout(tmp_path / "s").ensure()
    yield layout
    for point in mounts_under(layout.root):
        overlay.detach(point)


@pytest.fixture
def layers(layout: StateLayout) -> LayerStore:
    return LayerStore(layout, Database(layout.db_path))


@pytest.fixture
def snap(layout: StateLayout, layers: LayerStore) -> Snapshotter:
    return Snapshotter(layout, layers)


def step(s: Snapshotter, base: Snapshot, change: Callable[[Path], None]) -> Snapshot:
    active = s.mount_rw(base)
    try:
        change(active.merged)
    except BaseException:
        s.release(active)
        raise
    return s.commit(active)


def _flatten_source(ids: tuple[str, ...]) -> str:
    """How a flattened base of the layers `ids` (bottom first) is recorded."""
    return "flatten:" + hashlib.sha256(",".join(ids).encode()).hexdigest()


def layer_count(layout: StateLayout) -> int:
    return len(os.listdir(layout.layers))


def test_write_commit_is_visible_to_the_next_mount(snap: Snapshotter, layout: StateLayout) -> None:
    one = step(snap, Snapshot(), lambda r: fileops.write_file(r, "/etc/motd", b"hello\n"))
    assert len(one.layers) == 1
    assert (layout.layers / one.layers[0] / "etc/motd").read_bytes() == b"hello\n"
    two = step(snap, one, lambda r: fileops.write_file(r, "/bin/tool", b"#!", mode=0o755))
    assert two.layers[0] == one.layers[0]
    active = snap.mount_rw(two)
    try:
        assert (active.merged / "etc/motd").read_bytes() == b"hello\n"
        assert stat.S_IMODE((active.merged / "bin/tool").stat().st_mode) == 0o755
    finally:
        snap.release(active)
    assert not active.merged.parent.exists()
    assert snap.read_file(two, "/etc/motd") == b"hello\n"
    assert snap.read_file(two, "/etc/motd", limit=2) == b"he"
    assert snap.list_dir(two, "/") == ["bin", "etc"]
    info = snap.stat(two, "/bin/tool")
    assert info is not None and (info.kind, info.size, info.mode) == ("file", 2, 0o755)


def test_deleting_a_lower_file_hides_it(snap: Snapshotter, layout: StateLayout) -> None:
    base = step(snap, Snapshot(), lambda r: fileops.write_file(r, "/d/gone", b"x"))
    after = step(snap, base, lambda r: fileops.remove(r, "/d/gone"))
    upper = layout.layers / after.layers[-1]
    assert is_whiteout(os.lstat(upper / "d/gone"))
    assert snap.stat(after, "/d/gone") is None
    assert snap.list_dir(after, "/d") == []
    with pytest.raises(SnapshotPathError, match="no such file"):
        snap.read_file(after, "/d/gone")
    with snap.mount_ro(after) as root:
        assert os.listdir(root / "d") == []


def test_replacing_a_directory_makes_it_opaque(snap: Snapshotter, layout: StateLayout) -> None:
    def fill(r: Path) -> None:
        fileops.write_file(r, "/app/old1", b"1")
        fileops.write_file(r, "/app/old2", b"2")

    def replace(r: Path) -> None:
        fileops.remove(r, "/app")
        fileops.write_file(r, "/app/new", b"n")

    base = step(snap, Snapshot(), fill)
    after = step(snap, base, replace)
    upper = layout.layers / after.layers[-1]
    assert os.getxattr(upper / "app", OPAQUE_XATTR) == b"y"
    assert snap.list_dir(after, "/app") == ["new"]
    with snap.mount_ro(after) as root:
        assert os.listdir(root / "app") == ["new"]


def test_an_empty_step_returns_the_same_snapshot(snap: Snapshotter, layout: StateLayout) -> None:
    base = step(snap, Snapshot(), lambda r: fileops.write_file(r, "/f", b"x"))
    count = layer_count(layout)
    assert step(snap, base, lambda r: None) == base
    assert step(snap, Snapshot(), lambda r: None) == Snapshot()
    assert layer_count(layout) == count
    snap.wait_reaped()
    assert sorted(os.listdir(layout.run / "m")) == ["e", "t"]
    assert os.listdir(layout.run / "m/t") == []


def test_runtime_stubs_are_dropped(snap: Snapshotter) -> None:
    def base_tree(r: Path) -> None:
        fileops.write_file(r, "/etc/hostname", b"base")
        fileops.make_dir(r, "/proc", 0o555)

    base = step(snap, Snapshot(), base_tree)

    def like_a_runtime(r: Path) -> None:
        for d in ("/dev", "/sys", "/work/cache"):
            fileops.make_dir(r, d)
        fileops.write_file(r, "/etc/resolv.conf", b"")
        fileops.write_file(r, "/etc/hosts", b"")

    stubs = ["/proc", "/dev", "/sys", "/etc/resolv.conf", "/etc/hosts", "/work/cache"]
    active = snap.mount_rw(base)
    like_a_runtime(active.merged)
    assert snap.commit(active, stubs) == base

    def runtime_and_user(r: Path) -> None:
        like_a_runtime(r)
        fileops.write_file(r, "/work/cache/kept", b"written by the command")
        fileops.write_file(r, "/etc/hostname", b"")

    active = snap.mount_rw(base)
    runtime_and_user(active.merged)
    after = snap.commit(active, [*stubs, "/etc/hostname"])
    assert snap.read_file(after, "/work/cache/kept") == b"written by the command"
    assert snap.read_file(after, "/etc/hostname") == b""  # existed below: a real change
    assert snap.stat(after, "/etc/resolv.conf") is None
    assert snap.stat(after, "/dev") is None
    assert snap.list_dir(after, "/etc") == ["hostname"]


def test_read_only_views(snap: Snapshotter) -> None:
    with snap.mount_ro(Snapshot()) as root:
        assert os.listdir(root) == []
    one = step(snap, Snapshot(), lambda r: fileops.write_file(r, "/a", b"1"))
    two = step(snap, one, lambda r: fileops.write_file(r, "/b", b"2"))
    with snap.mount_ro(one) as root:
        assert sorted(os.listdir(root)) == ["a"]
    with snap.mount_ro(two) as root:
        assert sorted(os.listdir(root)) == ["a", "b"]
        with pytest.raises(OSError, match="Read-only"):
            (root / "c").write_bytes(b"")
    assert not root.exists()
    # A layer repeated in a stack (overlayfs refuses that) mounts as its topmost copy.
    over = step(snap, two, lambda r: fileops.remove(r, "/a"))
    repeated = Snapshot((*over.layers, one.layers[0]))
    with snap.mount_ro(repeated) as root:
        assert sorted(os.listdir(root)) == ["a", "b"]
    assert snap.list_dir(repeated, "/") == ["a", "b"]


def test_copy_between_snapshots(snap: Snapshotter) -> None:
    def src_tree(r: Path) -> None:
        fileops.write_file(r, "/src/main.py", b"m", mode=0o755)
        fileops.write_file(r, "/src/notes.txt", b"n")
        os.symlink("main.py", r / "src/entry")

    source = step(snap, Snapshot(), src_tree)
    source = step(snap, source, lambda r: fileops.write_file(r, "/src/extra.py", b"e"))

    def copy(r: Path) -> None:
        with snap.mount_ro(source) as src_root:
            fileops.copy_into(src_root, "/src", r, "/app", exclude=["*.txt"])

    result = step(snap, Snapshot(), copy)
    assert snap.list_dir(result, "/app") == ["entry", "extra.py", "main.py"]
    info = snap.stat(result, "/app/entry")
    assert info is not None and (info.kind, info.target) == ("symlink", "main.py")
    assert snap.read_file(result, "/app/entry") == b"m"


def test_view_reads_match_the_kernel(snap: Snapshotter) -> None:
    def one(r: Path) -> None:
        for i in range(5):
            fileops.write_file(r, f"/d{i}/f", str(i).encode())
        os.symlink("/d1", r / "abs")
        os.symlink("../d2/f", r / "d3/rel")

    def two(r: Path) -> None:
        fileops.remove(r, "/d0")
        fileops.remove(r, "/d1/f")
        fileops.remove(r, "/d4")
        fileops.write_file(r, "/d4", b"file now")
        fileops.write_file(r, "/d1/g", b"g")

    snapshot = step(snap, step(snap, Snapshot(), one), two)
    with snap.mount_ro(snapshot) as root:
        for dirpath, dirnames, filenames in os.walk(root):
            rel = "/" + os.path.relpath(dirpath, root).removeprefix(".")
            assert snap.list_dir(snapshot, rel) == sorted(dirnames + filenames)
            for name in filenames:
                path = os.path.join(rel, name)
                kernel = os.lstat(os.path.join(dirpath, name))
                info = snap.stat(snapshot, path)
                assert info is not None and info.size == kernel.st_size
                if os.path.exists(os.path.join(dirpath, name)) and not os.path.islink(
                    os.path.join(dirpath, name)
                ):
                    assert snap.read_file(snapshot, path) == Path(dirpath, name).read_bytes()
    assert snap.read_file(snapshot, "/abs/g") == b"g"
    assert snap.read_file(snapshot, "/d3/rel") == b"2"


def test_symlinks_never_reach_the_host(snap: Snapshotter) -> None:
    host_passwd = Path("/etc/passwd").read_bytes()

    def hostile(r: Path) -> None:
        os.symlink("/etc/passwd", r / "abs")
        os.symlink("../../../../../../../../etc/passwd", r / "rel")
        os.symlink("/", r / "root")

    links = step(snap, Snapshot(), hostile)
    for path in ("/abs", "/rel", "/root/etc/passwd"):
        with pytest.raises(SnapshotPathError, match="no such file"):
            snap.read_file(links, path)
    assert snap.list_dir(links, "/root") == ["abs", "rel", "root"]
    written = step(snap, links, lambda r: fileops.write_file(r, "/abs", b"mine"))
    assert snap.read_file(written, "/rel") == b"mine"
    assert snap.read_file(written, "/etc/passwd") == b"mine"
    assert Path("/etc/passwd").read_bytes() == host_passwd


def test_deep_stacks_are_flattened(layout: StateLayout, layers: LayerStore) -> None:
    # Both depths are pinned: the default is what fits in one page of mount options, so it
    # depends on the length of the state dir's path (49 under some pytest temp dirs). A base
    # is a prefix whose length is a multiple of `max_lowers - 1`; with 35 and 9 (no common
    # multiple below 315) neither snapshotter can reuse a base the other made, so the bases
    # made are known exactly, whatever machine or temp dir runs this.
    snap = Snapshotter(layout, layers, max_lowers=36)
    small = Snapshotter(layout, layers, max_lowers=10)
    assert (snap.max_lowers, small.max_lowers) == (36, 10), "the state dir path is too long"
    snapshot = Snapshot()
    present: set[int] = set()
    for i in range(300):
        whiteout = i % 7 == 0 and i - 3 in present and i != 150

        def change(r: Path, i: int = i, whiteout: bool = whiteout) -> None:
            if i == 150:  # replace the whole directory: an opaque dir in the middle
                fileops.remove(r, "/data")
            fileops.write_file(r, f"/data/{i}", str(i).encode())
            fileops.write_file(r, "/counter", str(i).encode())
            if whiteout:
                fileops.remove(r, f"/data/{i - 3}")

        if i == 150:
            present.clear()
        present.add(i)
        if whiteout:
            present.discard(i - 3)
        snapshot = step(snap, snapshot, change)
    expected = sorted(str(i) for i in present)
    assert len(snapshot.layers) == 300
    # Growing the chain needed bases of 35, 70, ... 280 layers; mounting all 300 with 10
    # lowers needs 297 layers flattened, made on 288, on 279, ... on 9.
    expected_bases = set(range(35, 281, 35)) | set(range(9, 298, 9))
    for s in (snap, small):
        for _ in range(2):
            active = s.mount_rw(snapshot)
            try:
                assert (active.merged / "counter").read_bytes() == b"299"
                assert sorted(os.listdir(active.merged / "data")) == expected
            finally:
                s.release(active)
            before = layer_count(layout)  # flattened bases are made once, then reused
        with s.mount_ro(snapshot) as root:
            assert sorted(os.listdir(root / "data")) == expected
        assert layer_count(layout) == before
    rows = layers.db.execute("SELECT source FROM layers WHERE source LIKE 'flatten:%'")
    made = {str(row[0]) for row in rows}
    assert made == {_flatten_source(snapshot.layers[:n]) for n in expected_bases}
    assert snap.read_file(snapshot, "/counter") == b"299"
    assert snap.list_dir(snapshot, "/data") == expected
    # A new step on top still commits exactly one new layer.
    longer = step(small, snapshot, lambda r: fileops.write_file(r, "/counter", b"300"))
    assert longer.layers[:-1] == snapshot.layers
    assert small.read_file(longer, "/counter") == b"300"


def test_host_import_mounts_with_modes(
    tmp_path: Path, snap: Snapshotter, layers: LayerStore
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(host / "run.sh", 0o755)
    imported = import_host_path(host, layers)
    active = snap.mount_rw(imported)
    try:
        assert stat.S_IMODE((active.merged / "run.sh").stat().st_mode) == 0o755
    finally:
        snap.release(active)


def test_concurrent_steps(snap: Snapshotter) -> None:
    base = step(snap, Snapshot(), lambda r: fileops.write_file(r, "/base", b"b"))
    results: dict[int, Snapshot] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for j in range(10):
                data = str(j).encode()
                results[n * 100 + j] = step(
                    snap, base, lambda r, d=data: fileops.write_file(r, f"/w{n}", d)
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({s.layers[-1] for s in results.values()}) == 40
    assert snap.read_file(results[309], "/w3") == b"9"


_CRASHER = """
import sys, time
from pathlib import Path
from dirk.state import Database, StateLayout
from dirk.workers.snapshots import fileops
from dirk.workers.snapshots.layers import LayerStore, Snapshot
from dirk.workers.snapshots.snapshotter import Snapshotter
layout = StateLayout(Path(sys.argv[1])).ensure()
snap = Snapshotter(layout, LayerStore(layout, Database(layout.db_path)))
active = snap.mount_rw(Snapshot())
fileops.write_file(active.merged, "/half-done", b"x")
ro = snap.mount_ro(Snapshot(("{layer}", "{layer2}")))
ro.__enter__()
print(active.merged, flush=True)
time.sleep(60)
"""


def test_cleanup_after_a_killed_engine(layout: StateLayout, layers: LayerStore) -> None:
    base = Snapshotter(layout, layers)
    two = step(base, Snapshot(), lambda r: fileops.write_file(r, "/x", b"x"))
    two = step(base, two, lambda r: fileops.write_file(r, "/y", b"y"))
    layer, layer2 = two.layers
    script = _CRASHER.replace("{layer}", layer).replace("{layer2}", layer2)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(layout.root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    merged = Path(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(mounts_under(layout.run / "m")) == 2
    assert (merged / "half-done").exists()
    # Keep the stale mount busy, as a leftover process would.
    holder = os.open(merged, os.O_RDONLY | os.O_DIRECTORY)
    try:
        started = time.perf_counter()
        Snapshotter(layout, layers).cleanup_stale()
        elapsed = time.perf_counter() - started
    finally:
        os.close(holder)
    assert mounts_under(layout.run / "m") == []
    assert sorted(os.listdir(layout.run / "m")) == ["e", "t"]
    assert os.listdir(layout.run / "m/t") == []
    assert elapsed < 2
    assert base.read_file(Snapshot((layer,)), "/x") == b"x"  # layers untouched
