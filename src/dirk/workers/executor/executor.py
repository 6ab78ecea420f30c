"""Run one command in a container: bundle, runtime, pipes, network namespace, cleanup.

`run` runs a command to completion; `detached` starts one and hands back a running handle
(`running.RunningContainer`) for services, which stay up until their users are done.

The hot path of `run` is: resolve the user from the image's files, take a ready network
namespace, write four small files and `config.json`, spawn `<runtime> run` in the foreground
and pump its pipes, then remove the bundle and hand the namespace back (reused or removed). The
runtime is the only subprocess; everything else happens in-process or in the background.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from signal import SIGKILL

import anyio
import attrs

from dirk import timing
from dirk.errors import CommandNotFoundError, ExecutorError, InvalidArgumentError
from dirk.state.layout import StateLayout
from dirk.workers.executor import network
from dirk.workers.executor.forward import LOOPBACK, Forwarder, Route, open_listeners
from dirk.workers.executor.hostfiles import hosts_file, read_host_resolv_conf
from dirk.workers.executor.network import Netns, NetnsPool
from dirk.workers.executor.process import Child
from dirk.workers.executor.pty import CONSOLE_SOCKET, PtyChild, TerminalIO, relay
from dirk.workers.executor.running import RunningContainer
from dirk.workers.executor.runtime import (
    KNOWN_RUNTIMES,
    Runtime,
    choose_runtime,
    crun_problem,
    find_binary,
    not_found_command,
    runtime_errors,
)
from dirk.workers.executor.spec import (
    CA_BUNDLE_PATH,
    BindMount,
    ContainerSpec,
    HostFiles,
    OutputCallback,
    ProcessResult,
    SecretFile,
    build_config,
    capabilities_of_mask,
    search_path,
)
from dirk.workers.executor.spec import stub_paths as _stub_paths
from dirk.workers.executor.users import resolve_user_in_rootfs
from dirk.workers.snapshots.fileops import resolve_in_root
from dirk.workers.syscalls import MNT_DETACH, is_mount_point, mount, umount

log = logging.getLogger(__name__)

HOST_CA_BUNDLE = Path(CA_BUNDLE_PATH)
#: How long a cancelled container may take to die before its runtime process is killed too.
_KILL_GRACE = 10.0
#: How long a detached container's runtime may take to create its process.
_CREATE_TIMEOUT = 30.0
_MAX_NOFILE = 1 << 20
#: Bundles hold a few KiB each; 64 MiB is thousands of concurrent containers.
_BUNDLES_TMPFS = "mode=0700,size=64m,nosuid,nodev,noexec"


def _bounding_capabilities() -> tuple[str, ...]:
    """The capabilities this engine can hand out: root here lacks some (CAP_SYS_RESOURCE),
    and asking a runtime for one it lacks fails the container."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return capabilities_of_mask(int(line.split()[1], 16))
    return ()


def _nofile_limit() -> int:
    """RLIMIT_NOFILE for containers: the engine's hard limit (raising it needs privileges
    root does not always have here), capped at Docker's 1048576."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return _MAX_NOFILE
    return min(hard, _MAX_NOFILE)


def engine_tag(layout: StateLayout) -> str:
    """One engine per state root; the tag in its namespace and veth names keeps several
    engines on one host apart."""
    return hashlib.sha256(str(layout.root.absolute()).encode()).hexdigest()[:4]


def runtime_roots(layout: StateLayout) -> Path:
    """Where each runtime keeps the state of this engine's containers: `<this>/<runtime>/`."""
    return layout.run / "runtime"


def remove_leftover_containers(layout: StateLayout) -> None:
    """Kill and delete the containers in this engine's runtime state dirs: a SIGKILLed
    engine's (at the next start, or by its sentinel at once)."""
    roots = runtime_roots(layout)
    if not roots.is_dir():
        return
    for root in roots.iterdir():
        binary = shutil.which(root.name) if root.name in KNOWN_RUNTIMES else None
        if binary is None or not root.is_dir():
            shutil.rmtree(root, ignore_errors=True)
            continue
        for entry in root.iterdir():
            if entry.is_dir():
                subprocess.run(
                    [binary, "--root", str(root), "delete", "--force", entry.name],
                    capture_output=True,
                    timeout=60,
                )
                shutil.rmtree(entry, ignore_errors=True)


class Executor:
    """Runs containers with crun or runc on root filesystems that the caller mounted."""

    def __init__(self, layout: StateLayout, runtime: str | None = None) -> None:
        self.layout = layout
        self._runtime_name, self._explicit = choose_runtime(runtime)
        self.tag = engine_tag(layout)
        self._bundles = layout.run / "c"
        self._runtime_roots = runtime_roots(layout)
        self._pool = NetnsPool(self.tag)
        self._resolv_conf = ""
        self._ca_bundle = HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None
        self._nofile = _nofile_limit()
        self._all_caps = _bounding_capabilities()
        self._rt: Runtime | None = None
        self._ids = 0

    @property
    def runtime(self) -> str:
        """The runtime in use ("crun" or "runc"); final once `start` returned."""
        return self._runtime_name

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Clean what a previous engine left, set up the bridge and NAT, start the pool."""
        if self._rt is not None:
            return
        await anyio.to_thread.run_sync(self._start_sync)

    def _start_sync(self) -> None:
        name = self._runtime_name
        if os.path.basename(name) == "crun":
            problem = crun_problem()
            if problem is not None:
                if self._explicit or not shutil.which("runc"):
                    raise ExecutorError(problem)
                log.warning("%s; using runc instead", problem)
                name = "runc"
        path = find_binary(name)
        remove_leftover_containers(self.layout)
        self._prepare_bundles_dir()
        root = self._runtime_roots / os.path.basename(name)
        root.mkdir(parents=True, exist_ok=True)
        network.remove_leftovers(self.tag)
        network.setup_host_network()
        self._resolv_conf = read_host_resolv_conf()
        self._runtime_name = os.path.basename(name)
        self._rt = Runtime(name=self._runtime_name, path=path, root=root)
        self._pool.start()

    def _prepare_bundles_dir(self) -> None:
        """An empty tmpfs at run/c: creating and removing a bundle's five files costs about
        5 ms on this machine's ext4 (mounted with `discard`), 0.3 ms on tmpfs."""
        if is_mount_point(self._bundles):
            for entry in self._bundles.iterdir():
                shutil.rmtree(entry, ignore_errors=True)
            return
        shutil.rmtree(self._bundles, ignore_errors=True)
        self._bundles.mkdir(parents=True)
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", _BUNDLES_TMPFS, "dirk-bundles", str(self._bundles)],
            capture_output=True,
            timeout=30,
        )
        if proc.returncode != 0:  # still works on disk, only slower
            log.warning(
                "could not mount a tmpfs at %s (%s): bundles go to disk",
                self._bundles,
                proc.stderr.decode(errors="replace").strip(),
            )

    async def aclose(self) -> None:
        """Stop the pool and remove our namespaces; the bridge and NAT stay for next time."""
        if self._rt is None:
            return
        await anyio.to_thread.run_sync(self._pool.close)
        if is_mount_point(self._bundles):
            umount(self._bundles, MNT_DETACH)
        self._rt = None

    # --- running ---------------------------------------------------------------------------

    def stub_paths(self, spec: ContainerSpec) -> list[str]:
        """Container paths the runtime may create in the root filesystem as mount points,
        deepest first. A stub is always an empty file or directory: remove such an entry
        from the upper dir only if it is empty (and not an overlay whiteout or opaque dir)."""
        return _stub_paths(spec, ca_bundle=self._ca_bundle is not None)

    async def run(
        self, rootfs: Path, spec: ContainerSpec, on_output: OutputCallback | None = None
    ) -> ProcessResult:
        """Run `spec` on `rootfs` (mounted, owned by the caller) and return how it ended."""
        async with self._bundle(rootfs, spec) as (rt, container_id, bundle, spec, _):
            return await self._run_container(rt, container_id, bundle, spec, on_output)

    @contextlib.asynccontextmanager
    async def detached(
        self, rootfs: Path, spec: ContainerSpec, on_output: OutputCallback | None = None
    ) -> AsyncIterator[RunningContainer]:
        """Start `spec` on `rootfs` (mounted, owned by the caller) and leave it running: a
        service. The handle gives its address, its exit, the tail of its output and ways to
        stop it; leaving the block kills it if it still runs, then removes its bundle and
        network namespace (never reused: a server's namespace is not worth checking)."""
        if not spec.network:
            raise ExecutorError("a detached container needs its network (it is a service)")
        async with self._bundle(rootfs, spec, reuse_netns=False) as (
            rt,
            container_id,
            bundle,
            spec,
            ns,
        ):
            log_path = bundle / "runtime.log"
            assert ns is not None
            try:
                child = Child(rt.run_command(bundle, container_id, log_path), None)
            except OSError as exc:
                raise ExecutorError(f"could not start the runtime {rt.path}: {exc}") from exc
            running = RunningContainer(
                container_id=container_id,
                address=ns.address,
                veth=ns.veth,
                command=spec.args,
                runtime_log=log_path,
                signal=lambda sig: self._signal(rt, container_id, sig),
                init_pid=lambda: self._init_pid(rt, container_id),
                bundle=bundle,
            )
            failure: BaseException | None = None
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(running.pump, child, on_output)
                    try:
                        yield running
                    except BaseException as exc:  # raised as itself below, not in a group
                        failure = exc
                    finally:
                        with anyio.CancelScope(shield=True):
                            # (The pump waits for the child: only it may await the pidfd.)
                            with anyio.move_on_after(_KILL_GRACE):
                                await running.kill()
                            if running.running:  # the runtime itself hangs
                                child.kill()
                            await running.wait()
                if failure is not None:
                    raise failure
            finally:
                child.close()
                with anyio.CancelScope(shield=True):
                    await self._delete(rt, container_id)

    async def _wait_created(self, rt: Runtime, container: RunningContainer) -> None:
        """Wait until the runtime has created `container`'s process (a detached container
        is handed out as soon as its runtime starts)."""
        with anyio.move_on_after(_CREATE_TIMEOUT):
            while container.running:
                if await self._init_pid(rt, container.container_id) is not None:
                    return
                await anyio.sleep(0.05)
        raise ExecutorError(f"container {container.container_id} is not running")

    async def _signal(self, rt: Runtime, container_id: str, signal: str) -> None:
        await anyio.run_process(rt.command("kill", container_id, signal), check=False)

    async def _init_pid(self, rt: Runtime, container_id: str) -> int | None:
        """The host pid of the container's first process, as the runtime reports it."""
        done = await anyio.run_process(rt.command("state", container_id), check=False)
        try:
            pid = json.loads(done.stdout).get("pid")
        except ValueError:
            return None
        return pid if isinstance(pid, int) and pid > 0 else None

    async def run_terminal(self, rootfs: Path, spec: ContainerSpec, io: TerminalIO) -> int:
        """Run `spec` on `rootfs` with a terminal relayed to `io` (the user's); returns the
        exit code once the process exits. `spec.stdin` is ignored: input comes from `io`.
        Raises `TerminalError` when `io` goes away first; the container is killed then, as
        when the caller is cancelled."""
        size = io.size
        console = (size.rows, size.cols)
        async with self._bundle(rootfs, spec, console) as (rt, container_id, bundle, spec, _):
            return await self._run_on_pty(rt, container_id, bundle, spec, io)

    async def exec_terminal(
        self, container: RunningContainer, argv: Sequence[str], io: TerminalIO
    ) -> int:
        """Run `argv` in the running `container` (a service) on a terminal relayed to `io`,
        with the environment, user, working directory and capabilities of its own process;
        returns the exit code once it exits. The container keeps running. Raises
        `TerminalError` when `io` goes away first; the process is killed then, as when the
        caller is cancelled."""
        rt = self._rt
        if rt is None:
            raise ExecutorError("the executor is not started: call `await executor.start()`")
        if container.bundle is None or not container.running:
            raise ExecutorError(f"container {container.container_id} is not running")
        if not argv:
            raise ExecutorError("no command to run: give the terminal at least one argument")
        bundle = container.bundle
        await self._wait_created(rt, container)
        name = f"exec-{secrets.token_hex(4)}"
        files = [bundle / f"{name}.{ext}" for ext in ("json", "pid", "log")]
        process_file, pid_file, log_path = files
        try:
            config = await anyio.to_thread.run_sync((bundle / "config.json").read_text)
            process = dict(json.loads(config)["process"])
            size = io.size
            process.update(
                args=list(argv),
                terminal=True,
                consoleSize={"height": size.rows, "width": size.cols},
            )
            await anyio.to_thread.run_sync(process_file.write_text, json.dumps(process))
            console = f"{name}.sock" if rt.name == "crun" else ""
            command = rt.exec_command(
                container.container_id, process_file, pid_file, log_path, console
            )
            try:
                child = await PtyChild.start(rt.name, command, bundle, size, console)
            except OSError as exc:
                raise ExecutorError(f"could not start the runtime {rt.path}: {exc}") from exc
            try:
                code = await relay(child, io)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _kill_exec(child, pid_file)
                raise
            finally:
                child.close()
            if code != 0:
                errors = runtime_errors(log_path)
                if errors:
                    raise self._runtime_failure(
                        rt, ContainerSpec(args=tuple(argv)), "; ".join(errors)
                    )
            return code
        finally:
            for path in files:
                path.unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def _bundle(
        self,
        rootfs: Path,
        spec: ContainerSpec,
        console: tuple[int, int] | None = None,
        reuse_netns: bool = True,
    ) -> AsyncIterator[tuple[Runtime, str, Path, ContainerSpec, Netns | None]]:
        """A bundle for `spec` on `rootfs` (network namespace, files, config.json, the bridge
        pairs to its peers), removed with everything it holds afterwards (the namespace kept
        for the next container if `reuse_netns` and the pool finds it clean)."""
        rt = self._rt
        if rt is None:
            raise ExecutorError("the executor is not started: call `await executor.start()`")
        if not spec.args:
            raise ExecutorError("no command to run: give the exec at least one argument")
        _check_exec_size(spec)
        rootfs = rootfs.absolute()
        timing.mark("executor.spec")
        user = resolve_user_in_rootfs(rootfs, spec.user)
        self._ids += 1
        container_id = f"{self.tag}-{self._ids:x}-{secrets.token_hex(3)}"
        bundle = self._bundles / container_id
        ns: Netns | None = None
        exited = False  # the runtime saw the container end: no process of it is left
        own_tmpfs = False  # a tmpfs mounted on this bundle for its secrets
        peers: tuple[str, ...] = ()
        try:
            if spec.network:
                ns = self._pool.take() or await self._new_netns()
            bundle.mkdir(parents=True)
            if spec.has_secrets:
                own_tmpfs = _keep_on_tmpfs(bundle)
                binds = _write_secret_files(bundle / "secrets", spec.secret_files)
                spec = attrs.evolve(spec, mounts=(*spec.mounts, *binds))
            _ensure_kernel_mountpoints(rootfs)
            files = self._write_files(bundle, rootfs, spec, ns)
            config = build_config(
                spec,
                rootfs,
                user,
                files,
                netns=str(ns.path) if ns else None,
                nofile=self._nofile,
                cgroups_path=f"/dirk/{container_id}",
                all_caps=self._all_caps,
                console=console,
            )
            with open(bundle / "config.json", "w") as f:
                f.write(json.dumps(config))
            if ns is not None and spec.peers:
                peers = tuple(dict.fromkeys(spec.peers))
                await anyio.to_thread.run_sync(network.allow_peers, ns.veth, peers)
            async with _loopback_forwards(spec, ns):
                yield rt, container_id, bundle, spec, ns
            exited = True
        finally:
            if peers and ns is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(network.forbid_peers, ns.veth, peers)
            if own_tmpfs:
                umount(bundle, MNT_DETACH)
            shutil.rmtree(bundle, ignore_errors=True)
            if ns is not None:
                reuse = reuse_netns and exited and not spec.privileged
                self._pool.release(ns, reuse=reuse and not spec.loopback_forwards)

    @contextlib.asynccontextmanager
    async def network_namespace(self) -> AsyncIterator[Netns]:
        """A namespace of the pool with no container in it, for sockets the engine opens
        there itself (`Host.service` listens in one); removed afterwards, never reused."""
        if self._rt is None:
            raise ExecutorError("the executor is not started: call `await executor.start()`")
        ns = self._pool.take() or await self._new_netns()
        try:
            yield ns
        finally:
            self._pool.release(ns)

    async def _new_netns(self) -> Netns:
        """A namespace made now (the pool is empty); released even if we are cancelled
        while the thread makes it."""
        made: list[Netns] = []
        try:
            await anyio.to_thread.run_sync(lambda: made.append(self._pool.create()))
        except BaseException:
            for ns in made:
                self._pool.release(ns)
            raise
        return made[0]

    def _write_files(
        self, bundle: Path, rootfs: Path, spec: ContainerSpec, ns: Netns | None
    ) -> HostFiles:
        resolv = bundle / "resolv.conf"
        hostname = bundle / "hostname"
        hosts = bundle / "hosts"
        resolv.write_text(self._resolv_conf)
        hostname.write_text(spec.hostname + "\n")
        hosts.write_text(hosts_file(spec.hostname, ns.address if ns else None, spec.extra_hosts))
        return HostFiles(
            resolv_conf=resolv,
            hostname=hostname,
            hosts=hosts,
            ca_bundle=self._ca_bundle if self._image_has_ca_bundle(rootfs) else None,
        )

    def _image_has_ca_bundle(self, rootfs: Path) -> bool:
        """Whether to bind the host's CA bundle over the image's.

        Outbound HTTPS here goes through an intercepting proxy whose CA only the host's bundle
        holds, so pip and curl in a container need it. It is bound only over an image's own
        bundle: an image without one gets none (no stub file), and installing ca-certificates
        there still works (update-ca-certificates renames onto that path, which fails with
        EBUSY on a mount point). A re-install or upgrade of ca-certificates in an image that
        has it hits that limit.
        """
        if self._ca_bundle is None:
            return False
        try:
            return resolve_in_root(rootfs, CA_BUNDLE_PATH).is_file()
        except (OSError, InvalidArgumentError):  # unreadable, or a symlink loop in the image
            return False

    async def _run_container(
        self,
        rt: Runtime,
        container_id: str,
        bundle: Path,
        spec: ContainerSpec,
        on_output: OutputCallback | None,
    ) -> ProcessResult:
        log_path = bundle / "runtime.log"
        started = time.monotonic()
        timing.mark("runtime.start")
        try:
            child = Child(rt.run_command(bundle, container_id, log_path), spec.stdin)
        except OSError as exc:
            raise ExecutorError(f"could not start the runtime {rt.path}: {exc}") from exc
        try:
            code, stdout, stderr, order = await child.communicate(on_output)
            timing.mark("runtime.exit")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._kill(rt, container_id, child)
            raise
        finally:
            child.close()
        duration = time.monotonic() - started
        if code != 0:
            errors = runtime_errors(log_path)
            if errors:
                with anyio.CancelScope(shield=True):
                    await self._delete(rt, container_id)
                raise self._runtime_failure(rt, spec, message="; ".join(errors))
        return ProcessResult(
            exit_code=code, stdout=stdout, stderr=stderr, duration=duration, order=order
        )

    async def _run_on_pty(
        self, rt: Runtime, container_id: str, bundle: Path, spec: ContainerSpec, io: TerminalIO
    ) -> int:
        log_path = bundle / "runtime.log"
        console = CONSOLE_SOCKET if rt.name == "crun" else ""
        argv = rt.run_command(bundle, container_id, log_path, console)
        try:
            child = await PtyChild.start(rt.name, argv, bundle, io.size)
        except OSError as exc:
            raise ExecutorError(f"could not start the runtime {rt.path}: {exc}") from exc
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._delete(rt, container_id)
            raise
        try:
            code = await relay(child, io)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._kill(rt, container_id, child)
            raise
        finally:
            child.close()
        if code != 0:
            errors = runtime_errors(log_path)
            if errors:
                with anyio.CancelScope(shield=True):
                    await self._delete(rt, container_id)
                raise self._runtime_failure(rt, spec, message="; ".join(errors))
        return code

    def _runtime_failure(self, rt: Runtime, spec: ContainerSpec, message: str) -> Exception:
        if not_found_command(message) is not None:
            # Dagger's words and exit code (its init exits 1 when the lookup fails).
            return CommandNotFoundError.for_command(spec.args, search_path(spec.env))
        return ExecutorError(f"{rt.name} could not start {list(spec.args)!r}: {message}")

    async def _kill(self, rt: Runtime, container_id: str, child: Child | PtyChild) -> None:
        """Kill a container whose run was cancelled, and wait until it and its runtime are
        gone. The container may not exist yet (cancelled during creation): keep killing."""
        deadline = time.monotonic() + _KILL_GRACE
        while child.returncode is None and time.monotonic() < deadline:
            await anyio.run_process(rt.command("kill", container_id, "KILL"), check=False)
            with anyio.move_on_after(0.2):
                await child.wait()
        if child.returncode is None:
            child.kill()
            await child.wait()
        await self._delete(rt, container_id)

    async def _delete(self, rt: Runtime, container_id: str) -> None:
        if (rt.root / container_id).exists():
            await anyio.run_process(rt.command("delete", "--force", container_id), check=False)


#: The kernel's bound on one argument or environment string (MAX_ARG_STRLEN: 32 pages).
_MAX_ARG_STRLEN = 32 * 4096


async def _kill_exec(child: PtyChild, pid_file: Path) -> None:
    """Kill a process `exec`ed into a container (by the host pid its runtime wrote), then
    the runtime, and wait for the runtime to end; the container itself is left running."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        os.kill(pid, SIGKILL)
    child.kill()
    await child.wait()


@contextlib.asynccontextmanager
async def _loopback_forwards(spec: ContainerSpec, ns: Netns | None) -> AsyncIterator[None]:
    """The container's loopback listeners of `spec.loopback_forwards`, opened in its
    namespace before its process starts and closed (with their connections) after."""
    if not spec.loopback_forwards:
        yield
        return
    if ns is None:
        raise ExecutorError("loopback forwards need the container's network namespace")
    routes = [
        Route("tcp", LOOPBACK, inner, LOOPBACK, outer) for inner, outer in spec.loopback_forwards
    ]
    bound = await anyio.to_thread.run_sync(open_listeners, routes, ns.name)
    forwarder = Forwarder(bound)
    failure: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(forwarder.serve)
            try:
                yield
            except BaseException as exc:  # raised as itself below, not in a group
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
    finally:
        forwarder.close()


def _check_exec_size(spec: ContainerSpec) -> None:
    """Refuse, before anything starts, a command the kernel would refuse with E2BIG (its
    strings and their pointers must fit in ARG_MAX, each string in MAX_ARG_STRLEN): the
    runtime would only say "Argument list too long" in the container's stderr."""
    strings = [*spec.args, *spec.env]
    longest = max(strings, key=len)
    total = sum(len(s.encode()) + 1 + 8 for s in (*strings, *spec.secret_env))
    limit = os.sysconf("SC_ARG_MAX")
    secret_too_long = any(len(s.encode()) + 1 > _MAX_ARG_STRLEN for s in spec.secret_env)
    if secret_too_long:  # named, never shown
        raise ExecutorError(
            f"cannot start {_short(spec.args)}: a secret variable is longer than the "
            f"{_MAX_ARG_STRLEN} bytes the kernel allows for one; mount it as a file instead"
        )
    if len(longest.encode()) + 1 <= _MAX_ARG_STRLEN and total <= limit:
        return
    what = "environment variable" if longest in spec.env else "argument"
    raise ExecutorError(
        f"cannot start {_short(spec.args)}: its arguments and environment take {total} bytes "
        f"(the kernel allows {limit} in all and {_MAX_ARG_STRLEN} for one string; the longest, "
        f"an {what} starting {longest[:40]!r}, has {len(longest)}), so it would fail with "
        "E2BIG. Pass large data as a file (with_new_file, with_directory) or on stdin instead"
    )


def _short(args: tuple[str, ...], limit: int = 200) -> str:
    """A command for a message, cut where it is long."""
    text = repr(list(args))
    return text if len(text) <= limit else text[:limit] + "...]"


def _keep_on_tmpfs(bundle: Path) -> bool:
    """Make sure a bundle holding secrets (config.json's env, secret files) is in memory:
    mount a tmpfs on it unless the bundles dir is one. True when it mounted one."""
    if is_mount_point(bundle.parent):
        return False
    # The state directory may be on disk (no tmpfs at run/c): never let a secret touch it.
    errno = mount("dirk-secrets", bundle, "tmpfs", 0, "mode=0700,size=16m")
    if errno != 0:
        raise ExecutorError(
            f"could not mount a tmpfs at {bundle} for a step's secrets "
            f"({os.strerror(errno)}): the engine must run as root"
        )
    return True


def _write_secret_files(directory: Path, files: Sequence[SecretFile]) -> list[BindMount]:
    """Each secret file written in `directory` (on the bundle's tmpfs) with its owner and
    mode, as a read-only bind at its target."""
    if not files:
        return []
    directory.mkdir(mode=0o700)
    binds = []
    for index, secret in enumerate(files):
        path = directory / str(index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secret.data)
            os.fchown(fd, secret.uid, secret.gid)
            os.fchmod(fd, secret.mode)
        finally:
            os.close(fd)
        binds.append(BindMount(path, secret.target, readonly=True))
    return binds


_KERNEL_MOUNTPOINTS = ("proc", "sys", "dev")


def _ensure_kernel_mountpoints(rootfs: Path) -> None:
    """Create /proc, /sys and /dev in a root that lacks them, before the runtime does.

    crun makes them with a plain mkdir that fails on EEXIST, so two containers started at
    once on one root (a shared read-only root, or a test's) could fail with "cannot mkdir
    `sys`: File exists". Creating them here, tolerating a racing peer, removes that race;
    the result in the step's layer is the same as the runtime's.
    """
    for name in _KERNEL_MOUNTPOINTS:
        path = rootfs / name
        if os.path.lexists(path):
            continue
        # A racing peer made it, or the root is read-only: the runtime decides.
        with contextlib.suppress(OSError):
            os.mkdir(path, 0o755)
