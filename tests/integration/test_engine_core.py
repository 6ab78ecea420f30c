"""The engine core end to end: real registry, real containers, real cache on disk."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import anyio
import pytest

from dirk.engine import EngineCore
from dirk.errors import (
    CommandNotFoundError,
    ExecError,
    ExecutorError,
    ImageNotFoundError,
    RegistryUnreachableError,
)
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import Copy, Exec, ExecMount, HostDirectory, MkFile, Ref, Scratch, Sharing
from dirk.state.db import Database

from .engine_helpers import image, sh, stdout

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_stdout_stderr_and_exit_code(engine: EngineCore, busybox_ref: str) -> None:
    root, _ = await image(engine, busybox_ref)
    result = await engine.solver.result(BACKGROUND, sh(root, "echo out; echo err >&2; exit 0"))
    assert result.exec is not None
    assert result.exec.stdout == b"out\n"
    assert result.exec.stderr == b"err\n"
    assert result.exec.exit_code == 0

    with pytest.raises(ExecError) as caught:
        await engine.solver.result(BACKGROUND, sh(root, "echo partial; echo oops >&2; exit 3"))
    err = caught.value
    assert err.exit_code == 3
    assert err.command == ["sh", "-c", "echo partial; echo oops >&2; exit 3"]
    assert "partial" in err.stdout and "oops" in err.stderr
    assert "exit code: 3" in str(err) and "oops" in str(err)


async def test_expect_any_returns_the_exit_code(engine: EngineCore, busybox_ref: str) -> None:
    import attrs

    root, _ = await image(engine, busybox_ref)
    result = await engine.solver.result(BACKGROUND, attrs.evolve(sh(root, "exit 7"), expect="ANY"))
    assert result.exec is not None and result.exec.exit_code == 7
    failing = attrs.evolve(sh(root, "exit 0"), expect="FAILURE")
    with pytest.raises(ExecError):
        await engine.solver.result(BACKGROUND, failing)


async def test_env_workdir_and_user(engine: EngineCore, busybox_ref: str) -> None:
    root, config = await image(engine, busybox_ref)
    assert any(e.startswith("PATH=") for e in config.env)
    out = await stdout(
        engine,
        sh(root, 'echo "$GREETING"; pwd; id -u; id -g', env=["GREETING=hello"], cwd="/tmp/work"),
    )
    assert out.splitlines() == ["hello", "/tmp/work", "0", "0"]
    assert (await stdout(engine, sh(root, "id -un; id -u", user="nobody"))).split() == [
        "nobody",
        "65534",
    ]
    assert (await stdout(engine, sh(root, "id -u; id -g", user="1234:4321"))).split() == [
        "1234",
        "4321",
    ]


async def test_steps_build_on_each_other_and_files_are_readable(
    engine: EngineCore, busybox_ref: str
) -> None:
    root, _ = await image(engine, busybox_ref)
    first = sh(root, "mkdir -p /data && echo one > /data/a && rm /bin/vi")
    second = sh(Ref(first), "echo two >> /data/a; ls /bin/vi || echo gone")
    assert (await stdout(engine, second)).strip() == "gone"
    assert await engine.solver.read_file(BACKGROUND, Ref(second), "/data/a") == b"one\ntwo\n"
    assert "a" in await engine.solver.list_dir(BACKGROUND, Ref(second), "/data")


async def test_mounts_read_only_and_writable(engine: EngineCore, busybox_ref: str) -> None:
    root, _ = await image(engine, busybox_ref)
    data = Ref(MkFile(Ref(sh(root, "true")), "/payload/hello.txt", b"hi from a file\n"))
    ro = ExecMount("/mnt/ro", source=data, source_path="/payload", readonly=True)
    out = await stdout(
        engine, sh(root, "cat /mnt/ro/hello.txt; touch /mnt/ro/x 2>&1 || true", mounts=[ro])
    )
    assert "hi from a file" in out and "Read-only file system" in out

    rw = ExecMount("/mnt/rw", source=data, source_path="/payload")
    step = sh(root, "echo added > /mnt/rw/new.txt", mounts=[rw])
    result = await engine.solver.result(BACKGROUND, step)
    assert len(result.outputs) == 2
    assert await engine.solver.read_file(BACKGROUND, Ref(step, 1), "/payload/new.txt") == b"added\n"
    # The mount's changes do not leak into the container's own root filesystem.
    assert await engine.solver.stat(BACKGROUND, Ref(step, 0), "/mnt/rw/new.txt") is None

    tmp = ExecMount("/scratch", kind="tmpfs")
    assert "tmpfs" in await stdout(engine, sh(root, "grep ' /scratch ' /proc/mounts", mounts=[tmp]))


async def test_cache_volume_persists_across_runs_and_engines(
    tmp_path: Path, busybox_ref: str
) -> None:
    state = tmp_path / "state"
    volume = ExecMount("/cache", kind="cache", cache_id="counter")
    for expected in ("1", "2"):
        async with EngineCore(state) as engine:
            root, _ = await image(engine, busybox_ref)
            # A different command each time, so the exec itself is not a cache hit.
            step = sh(
                root, f"echo x >> /cache/n; wc -l < /cache/n # run {expected}", mounts=[volume]
            )
            assert (await stdout(engine, step)).strip() == expected


async def test_cache_volume_sharing_modes(engine: EngineCore, busybox_ref: str) -> None:
    root, _ = await image(engine, busybox_ref)

    def overlap_probe(sharing: Sharing, tag: str) -> Exec:
        mount = ExecMount("/cache", kind="cache", cache_id=f"vol-{sharing}", sharing=sharing)
        # Each exec marks itself present, waits, and reports who else it saw.
        script = f"touch /cache/{tag}; sleep 1; ls /cache | tr '\\n' ' '; rm /cache/{tag}"
        return sh(root, script, mounts=[mount])

    async def run_pair(sharing: Sharing) -> list[str]:
        outs: list[str] = []

        async def one(tag: str) -> None:
            outs.append(await stdout(engine, overlap_probe(sharing, tag)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "a")
            tg.start_soon(one, "b")
        return outs

    shared = await run_pair("SHARED")
    assert any(len(o.split()) == 2 for o in shared), shared  # both saw each other
    started = time.monotonic()
    locked = await run_pair("LOCKED")
    assert all(len(o.split()) == 1 for o in locked), locked  # one at a time
    assert time.monotonic() - started >= 2.0
    private = await run_pair("PRIVATE")
    assert all(len(o.split()) == 1 for o in private), private  # separate instances


async def test_cached_rerun_executes_nothing_even_after_restart(
    tmp_path: Path, busybox_ref: str
) -> None:
    state = tmp_path / "state"

    async def pipeline(engine: EngineCore) -> tuple[str, Exec]:
        root, _ = await image(engine, busybox_ref)
        step = Ref(sh(root, "echo one > /f"))
        for i in range(4):
            step = Ref(sh(step, f"echo {i} >> /f"))
        last = sh(step, "cat /f")
        return await stdout(engine, last), last

    async with EngineCore(state) as engine:
        first, _ = await pipeline(engine)
        assert engine.solver.counters.execs == 6
        again, _ = await pipeline(engine)
        assert again == first and engine.solver.counters.execs == 6
    async with EngineCore(state) as engine:
        after_restart, _ = await pipeline(engine)
        assert after_restart == first
        assert engine.solver.counters.execs == 0
        assert engine.solver.counters.executed == 0


async def test_identical_concurrent_requests_run_once(engine: EngineCore, busybox_ref: str) -> None:
    root, _ = await image(engine, busybox_ref)
    outs: list[str] = []

    async def request() -> None:
        # Two separately built but identical operations, as two clients would send them.
        outs.append(await stdout(engine, sh(root, "sleep 0.5; date +%s%N")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        tg.start_soon(request)
    assert len(outs) == 2 and outs[0] == outs[1]
    assert engine.solver.counters.execs == 1


async def test_independent_branches_run_concurrently(engine: EngineCore, busybox_ref: str) -> None:
    root, _ = await image(engine, busybox_ref)
    meeting = ExecMount("/meet", kind="cache", cache_id=f"meeting-{uuid.uuid4().hex}")
    # Each branch waits (up to 60 s) until all three are in: only branches that run at the
    # same time can all finish.
    script = (
        "touch /meet/{i}; n=0; while [ $(ls /meet | wc -l) -lt 3 ]; do "
        "sleep 0.05; n=$((n+1)); [ $n -gt 1200 ] && exit 7; done; echo {i} > /out"
    )
    branches = [Ref(sh(root, script.format(i=i), mounts=[meeting])) for i in range(3)]
    merged: Ref = branches[0]
    for i, branch in enumerate(branches[1:], start=1):
        merged = Ref(Copy(merged, f"/out{i}", branch, "/out"))
    await engine.solver.solve(BACKGROUND, merged)
    assert await engine.solver.read_file(BACKGROUND, merged, "/out2") == b"2\n"


async def test_changed_host_file_reruns_unchanged_does_not(
    engine: EngineCore, busybox_ref: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "input.txt").write_text("version 1\n")
    root, _ = await image(engine, busybox_ref)

    def step() -> Exec:
        mount = ExecMount("/src", source=Ref(HostDirectory(str(src))), readonly=True)
        return sh(root, "cat /src/input.txt", mounts=[mount])

    assert await stdout(engine, step()) == "version 1\n"
    (src / "input.txt").touch()  # a new mtime alone is not a change
    assert await stdout(engine, step()) == "version 1\n"
    assert engine.solver.counters.execs == 1
    (src / "input.txt").write_text("version 2\n")
    assert await stdout(engine, step()) == "version 2\n"
    assert engine.solver.counters.execs == 2


async def test_pip_fetches_a_package_over_the_network(engine: EngineCore, python_ref: str) -> None:
    root, config = await image(engine, python_ref)
    step = Exec(
        root=root,
        args=("python3", "-m", "pip", "download", "--no-deps", "-d", "/tmp/dl", "six==1.16.0"),
        env=config.env,
    )
    result = await engine.solver.result(BACKGROUND, step)
    assert await engine.solver.list_dir(BACKGROUND, Ref(step), "/tmp/dl") == [
        "six-1.16.0-py2.py3-none-any.whl"
    ]
    assert result.exec is not None and result.exec.exit_code == 0


async def test_bad_input_gets_clear_errors(
    engine: EngineCore, busybox_ref: str, registry: str
) -> None:
    with pytest.raises(ImageNotFoundError) as not_found:
        await engine.solver.resolve_image(BACKGROUND, f"{registry}/busybox:no-such-tag")
    assert "no-such-tag" in str(not_found.value)
    with pytest.raises(ImageNotFoundError):
        await engine.solver.resolve_image(BACKGROUND, f"{registry}/no-such-image:latest")
    with pytest.raises(RegistryUnreachableError) as unreachable:
        await engine.solver.resolve_image(BACKGROUND, "127.0.0.1:5999/busybox:latest")
    assert "127.0.0.1:5999" in str(unreachable.value)

    root, _ = await image(engine, busybox_ref)
    with pytest.raises(CommandNotFoundError) as missing:
        await engine.solver.result(BACKGROUND, Exec(root=root, args=("no-such-command", "--flag")))
    assert "no-such-command" in str(missing.value)


async def test_sigkill_mid_run_leaves_a_usable_cache(tmp_path: Path, busybox_ref: str) -> None:
    import signal
    import subprocess
    import sys

    from .crash_pipeline import steps

    state = tmp_path / "state"
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash_pipeline", str(state), busybox_ref],
        cwd=repo,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(state.glob("v/*/0/started")):
        if child.poll() is not None:
            raise AssertionError(f"the pipeline ended early: {child.stderr.read().decode()}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the hanging step never started"
        await anyio.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()

    async with EngineCore(state) as engine:
        # Recovery: nothing of the killed engine is still mounted or running.
        overlays = [
            line
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if " - overlay " in line and str(state) in line
        ]
        assert overlays == [], "the killed engine's overlay mounts are still there"
        sleepers = subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, text=True)
        assert sleepers.stdout.strip() == "", "the killed engine's container is still running"
        root, _ = await image(engine, busybox_ref)
        prepared, _ = steps(root)
        # The steps that finished before the kill are cache hits; the rest runs fine.
        assert await engine.solver.read_file(BACKGROUND, prepared, "/b") == b"b\na\n"
        assert engine.solver.counters.execs == 0
        assert engine.solver.counters.cache_hits >= 1
        assert await stdout(engine, sh(prepared, "cat /b /a")) == "b\na\na\n"


def _overlays_under(path: Path) -> list[str]:
    return [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if " - overlay " in line and str(path) in line
    ]


async def test_cancelled_exec_releases_its_mounts(engine: EngineCore, busybox_ref: str) -> None:
    root, _ = await image(engine, busybox_ref)
    data = Ref(MkFile(root, "/d/x", b"x\n"))
    await engine.solver.solve(BACKGROUND, data)  # pulled and written before the clock starts
    mounts = [
        ExecMount("/mnt/rw", source=data, source_path="/d"),
        ExecMount("/mnt/ro", source=data, source_path="/d", readonly=True),
    ]
    with anyio.move_on_after(1.0) as scope:
        await engine.solver.result(BACKGROUND, sh(root, "sleep 30", mounts=mounts))
    assert scope.cancelled_caught
    assert _overlays_under(engine.layout.run) == [], "a cancelled exec left overlays mounted"


async def test_cache_entries_naming_lost_layers_or_garbage_are_recomputed(
    tmp_path: Path, busybox_ref: str
) -> None:
    state = tmp_path / "state"

    def step(root: Ref) -> Exec:
        return sh(root, "echo kept > /f; echo out")

    async with EngineCore(state) as engine:
        root, _ = await image(engine, busybox_ref)
        result = await engine.solver.result(BACKGROUND, step(root))
        lost = result.outputs[0].layers[-1]
    shutil.rmtree(state / "l" / lost)  # e.g. deleted by hand
    async with EngineCore(state) as engine:
        root, _ = await image(engine, busybox_ref)
        assert await stdout(engine, step(root)) == "out\n"
        assert await engine.solver.read_file(BACKGROUND, Ref(step(root)), "/f") == b"kept\n"
        assert engine.solver.counters.execs == 1
    db = Database(state / "dirk.db")
    db.execute("UPDATE cache SET result = ?", ("{not json",))
    db.close()
    async with EngineCore(state) as engine:
        root, _ = await image(engine, busybox_ref)
        assert await stdout(engine, step(root)) == "out\n"
        assert engine.solver.counters.execs == 1


async def test_a_chain_of_hundreds_of_steps_solves(engine: EngineCore) -> None:
    def chain() -> Ref:
        ref = Ref(Scratch())
        for i in range(400):
            ref = Ref(MkFile(ref, f"/f{i}", b"%d" % i))
        return ref

    assert await engine.solver.read_file(BACKGROUND, chain(), "/f399") == b"399"
    # The same chain built again (as another session would): known, nothing runs again.
    executed = engine.solver.counters.executed
    assert await engine.solver.read_file(BACKGROUND, chain(), "/f0") == b"0"
    assert engine.solver.counters.executed == executed


async def test_a_failed_start_closes_what_it_opened(tmp_path: Path) -> None:
    state = tmp_path / "state"

    def open_state_files() -> list[str]:
        fds = Path("/proc/self/fd")
        targets = []
        for fd in fds.iterdir():
            try:
                targets.append(str(fd.readlink()))
            except OSError:
                continue
        return [t for t in targets if t.startswith(str(state))]

    with pytest.raises(ExecutorError, match="no-such-runtime"):
        async with EngineCore(state, runtime="no-such-runtime"):
            pass
    assert open_state_files() == [], "the database stays open after a failed start"


async def test_host_directory_filters_and_a_change_during_the_copy(
    engine: EngineCore, busybox_ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dirk.errors import HostPathError
    from dirk.solver.handlers import host as host_handler

    src = tmp_path / "project"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "sub" / "mod.py").write_text("print('hi')\n")
    (src / "pkg" / "notes.txt").write_text("not copied\n")
    (src / "build").mkdir()
    (src / "build" / "out.py").write_text("excluded\n")
    filtered = Ref(HostDirectory(str(src), include=("**/*.py",), exclude=("build/",)))
    assert (
        await engine.solver.read_file(BACKGROUND, filtered, "/pkg/sub/mod.py") == b"print('hi')\n"
    )
    assert await engine.solver.stat(BACKGROUND, filtered, "/pkg/notes.txt") is None
    assert await engine.solver.stat(BACKGROUND, filtered, "/build/out.py") is None

    real_import = host_handler.import_host_path

    def import_after_an_edit(*args: object, **kwargs: object) -> object:
        (src / "pkg" / "sub" / "mod.py").write_text("print('edited meanwhile')\n")
        return real_import(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(host_handler, "import_host_path", import_after_an_edit)
    (src / "pkg" / "sub" / "mod.py").write_text("print('second version')\n")
    with pytest.raises(HostPathError, match="changed while the engine was copying it"):
        await engine.solver.solve(BACKGROUND, Ref(HostDirectory(str(src))))
