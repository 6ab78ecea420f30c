"""The executor on real containers (crun and runc), on a busybox root from busybox-static.

Each test gets its own state root (so its own netns/veth tag) and an overlay mount over a
shared busybox tree, like the snapshotter would hand over.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

from dirk.errors import CommandNotFoundError, ExecutorError
from dirk.state.layout import StateLayout
from dirk.workers.executor import network
from dirk.workers.executor.executor import Executor
from dirk.workers.executor.spec import BindMount, ContainerSpec, ProcessResult, TmpfsMount

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DOCKER_CAP_MASK = "00000000a80425fb"


async def sh(ex: Executor, rootfs: Path, script: str, **kwargs: object) -> ProcessResult:
    return await ex.run(rootfs, ContainerSpec(args=("sh", "-c", script), **kwargs))  # type: ignore[arg-type]


# --- process --------------------------------------------------------------------------------


async def test_streams_are_separate_and_streamed_in_order(executor: Executor, rootfs: Path) -> None:
    chunks: list[tuple[str, bytes, float]] = []
    script = "echo out1; sleep 0.3; echo err1 >&2; sleep 0.3; echo out2"
    result = await executor.run(
        rootfs,
        ContainerSpec(args=("sh", "-c", script)),
        lambda name, data: chunks.append((name, data, time.monotonic())),
    )
    end = time.monotonic()
    assert result.exit_code == 0
    assert result.stdout == b"out1\nout2\n"
    assert result.stderr == b"err1\n"
    assert [(n, d) for n, d, _ in chunks] == [
        ("stdout", b"out1\n"),
        ("stderr", b"err1\n"),
        ("stdout", b"out2\n"),
    ]
    assert end - chunks[0][2] > 0.4, "the first line must arrive while the command still runs"


async def test_exit_codes_are_results(executor: Executor, rootfs: Path) -> None:
    assert (await sh(executor, rootfs, "exit 3")).exit_code == 3
    assert (await executor.run(rootfs, ContainerSpec(args=("false",)))).exit_code == 1
    assert (await sh(executor, rootfs, "exit 255")).exit_code == 255


async def test_env_defaults_and_overrides(executor: Executor, rootfs: Path) -> None:
    result = await executor.run(rootfs, ContainerSpec(args=("env",), env=("FOO=bar baz",)))
    env = dict(line.split("=", 1) for line in result.stdout.decode().splitlines())
    assert env["FOO"] == "bar baz"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOSTNAME"] == "dirk"
    assert env["HOME"] == "/root"
    result = await executor.run(rootfs, ContainerSpec(args=("env",), env=("PATH=/usr/bin",)))
    assert "PATH=/usr/bin\n" in result.stdout.decode()


async def test_workdir_is_created_when_missing(
    executor: Executor, overlay_root: tuple[Path, Path]
) -> None:
    rootfs, upper = overlay_root
    result = await executor.run(rootfs, ContainerSpec(args=("pwd",), cwd="/work/sub"))
    assert result.stdout == b"/work/sub\n"
    assert (upper / "work/sub").is_dir()


async def test_stdin_is_fed_then_closed(executor: Executor, rootfs: Path) -> None:
    data = os.urandom(1 << 20)  # bigger than a pipe buffer
    result = await executor.run(rootfs, ContainerSpec(args=("cat",), stdin=data))
    assert result.stdout == data
    result = await executor.run(rootfs, ContainerSpec(args=("cat",)))
    assert result.stdout == b""  # no stdin: /dev/null, not a hang


async def test_command_not_found(executor: Executor, rootfs: Path) -> None:
    with pytest.raises(CommandNotFoundError) as info:
        await executor.run(rootfs, ContainerSpec(args=("nosuchcmd", "x")))
    assert "nosuchcmd" in str(info.value)
    assert "PATH=/usr/local/sbin:/usr/local/bin" in str(info.value)


async def test_nofile_limit(executor: Executor, rootfs: Path) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    result = await sh(executor, rootfs, "ulimit -n")
    assert int(result.stdout) == min(hard, 1 << 20)


# --- users ----------------------------------------------------------------------------------


async def test_user_by_name_and_ids(executor: Executor, rootfs: Path) -> None:
    by_name = await executor.run(rootfs, ContainerSpec(args=("id",), user="dirk"))
    assert by_name.stdout == b"uid=1000(dirk) gid=1000(dirk) groups=10(wheel)\n"
    # An explicit group replaces the supplementary groups too (as runc and Docker do).
    by_ids = await executor.run(rootfs, ContainerSpec(args=("id",), user="1000:10"))
    assert by_ids.stdout == b"uid=1000(dirk) gid=10(wheel)\n"
    named_group = await executor.run(rootfs, ContainerSpec(args=("id", "-g"), user="dirk:wheel"))
    assert named_group.stdout == b"10\n"
    unknown_uid = await executor.run(rootfs, ContainerSpec(args=("id", "-u"), user="4242"))
    assert unknown_uid.stdout == b"4242\n"
    home = await sh(executor, rootfs, "echo $HOME", user="dirk")
    assert home.stdout == b"/home/dirk\n"


async def test_unknown_user_is_a_clear_error(executor: Executor, rootfs: Path) -> None:
    with pytest.raises(ExecutorError, match="unable to find user 'ghost'"):
        await executor.run(rootfs, ContainerSpec(args=("id",), user="ghost"))


# --- capabilities and isolation ---------------------------------------------------------------


async def test_docker_capability_set(executor: Executor, rootfs: Path) -> None:
    root = await sh(executor, rootfs, "grep -E '^Cap(Eff|Bnd)' /proc/self/status")
    mask = DOCKER_CAP_MASK.encode()
    assert root.stdout.split() == [b"CapEff:", mask, b"CapBnd:", mask]
    user = await sh(executor, rootfs, "grep CapEff /proc/self/status", user="dirk")
    assert user.stdout.split() == [b"CapEff:", b"0000000000000000"]
    masked = await sh(
        executor, rootfs, "wc -c < /proc/timer_list; echo 1 > /proc/sys/vm/swappiness"
    )
    assert masked.stdout == b"0\n"  # masked: /dev/null over it
    assert b"Read-only file system" in masked.stderr


async def test_privileged_gets_every_capability(executor: Executor, rootfs: Path) -> None:
    result = await sh(
        executor, rootfs, "grep CapEff /proc/self/status; wc -c < /proc/timer_list", privileged=True
    )
    ours = next(
        line.split()[1]
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("CapBnd:")
    )
    assert result.stdout.split()[:2] == [b"CapEff:", ours.encode()]  # all that we have
    assert int(result.stdout.split()[2]) > 0  # nothing masked


async def test_hostname(executor: Executor, rootfs: Path) -> None:
    result = await sh(
        executor, rootfs, "hostname; cat /etc/hostname; grep builder /etc/hosts", hostname="builder"
    )
    lines = result.stdout.decode().splitlines()
    assert lines[:2] == ["builder", "builder"]
    assert lines[2].endswith("\tbuilder")


# --- mounts ---------------------------------------------------------------------------------


async def test_bind_mounts_of_dirs_and_files(
    executor: Executor, rootfs: Path, tmp_path: Path
) -> None:
    ro_dir, rw_dir = tmp_path / "ro", tmp_path / "rw"
    ro_dir.mkdir()
    rw_dir.mkdir()
    (ro_dir / "in.txt").write_text("hello\n")
    ro_file, rw_file = tmp_path / "ro.txt", tmp_path / "rw.txt"
    ro_file.write_text("ro file\n")
    rw_file.write_text("")
    mounts = (
        BindMount(ro_dir, "/src", readonly=True),
        BindMount(rw_dir, "/out"),
        BindMount(ro_file, "/etc/app.conf", readonly=True),
        BindMount(rw_file, "/data/log.txt"),
    )
    script = textwrap.dedent(
        """
        cat /src/in.txt /etc/app.conf
        touch /src/nope 2>/dev/null && echo src-writable
        echo x >> /etc/app.conf 2>/dev/null && echo file-writable
        echo made > /out/made.txt
        echo logged > /data/log.txt
        """
    )
    result = await sh(executor, rootfs, script, mounts=mounts)
    assert result.stdout == b"hello\nro file\n"
    assert (rw_dir / "made.txt").read_text() == "made\n"
    assert rw_file.read_text() == "logged\n"
    assert not (ro_dir / "nope").exists()


async def test_tmpfs_mount(executor: Executor, rootfs: Path) -> None:
    result = await sh(
        executor,
        rootfs,
        "grep ' /scratch ' /proc/mounts; echo hi > /scratch/f && cat /scratch/f",
        mounts=(TmpfsMount("/scratch", size=1 << 20),),
    )
    mount_line, content = result.stdout.decode().splitlines()
    assert mount_line.startswith("tmpfs /scratch tmpfs")
    assert "size=1024k" in mount_line
    assert content == "hi"


async def test_stub_paths_cover_what_the_runtime_created(
    executor: Executor, overlay_root: tuple[Path, Path], tmp_path: Path
) -> None:
    rootfs, upper = overlay_root
    source = tmp_path / "src"
    source.mkdir()
    spec = ContainerSpec(args=("true",), mounts=(BindMount(source, "/mnt/deep/src"),))
    await executor.run(rootfs, spec)
    created = {"/" + str(p.relative_to(upper)) for p in upper.rglob("*") if not p.is_symlink()}
    assert created, "the runtime created mount points in the upper dir"
    assert created <= set(executor.stub_paths(spec))


async def test_ca_bundle_only_over_an_image_bundle(executor: Executor, rootfs: Path) -> None:
    host = Path("/etc/ssl/certs/ca-certificates.crt")
    assert host.is_file(), "this host has no CA bundle at /etc/ssl/certs: install ca-certificates"
    absent = await sh(executor, rootfs, "test -e /etc/ssl/certs/ca-certificates.crt; echo $?")
    assert absent.stdout == b"1\n"
    certs = rootfs / "etc/ssl/certs"
    certs.mkdir(parents=True)
    (certs / "ca-certificates.crt").write_text("image bundle\n")
    present = await sh(executor, rootfs, "md5sum < /etc/ssl/certs/ca-certificates.crt")
    expected = subprocess.run(["md5sum"], stdin=host.open("rb"), capture_output=True).stdout
    assert present.stdout == expected


# --- network --------------------------------------------------------------------------------


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the host\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _get(url: str) -> str:
    """A shell command fetching `url` (http://host:port/) with busybox nc, 3 s at most."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}"


@pytest.fixture
def bridge_server() -> Iterator[str]:
    """A tiny HTTP server on the bridge address (the executor must have set the bridge up)."""
    network.setup_host_network()
    server = ThreadingHTTPServer((network.GATEWAY, 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{network.GATEWAY}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_outbound_network_and_dns_config(
    executor: Executor, rootfs: Path, bridge_server: str
) -> None:
    # busybox-static's wget crashes after downloading here: plain HTTP through nc instead.
    result = await sh(executor, rootfs, f"{_get(bridge_server)}; ip route; cat /etc/resolv.conf")
    out = result.stdout.decode()
    assert result.exit_code == 0, result.stderr
    assert "hello from the host\n" in out
    assert f"default via {network.GATEWAY}" in out
    assert "nameserver " in out


async def test_no_network_has_only_loopback(
    executor: Executor, rootfs: Path, bridge_server: str
) -> None:
    result = await sh(
        executor,
        rootfs,
        f"ip route; ip -o link | cut -d: -f2; {_get(bridge_server)} || echo failed",
        network=False,
    )
    assert result.stdout.split() == [b"lo", b"failed"]


async def test_concurrent_containers_get_distinct_addresses(
    executor: Executor, rootfs: Path
) -> None:
    addresses: list[str] = []

    async def one() -> None:
        result = await sh(executor, rootfs, "ip -o -4 addr show eth0 | awk '{print $4}'")
        addresses.append(result.stdout.decode().strip())

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
    assert len(set(addresses)) == 6
    assert all(a.startswith("10.89.") and a.endswith("/16") for a in addresses)


async def test_no_ipv6_on_eth0_or_the_bridge(executor: Executor, rootfs: Path) -> None:
    # With IPv6 there, a container with CAP_NET_RAW could hand its peers and the host addresses
    # and routes by router advertisements.
    result = await sh(
        executor, rootfs, "cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6; ip -6 addr show eth0"
    )
    assert result.stdout == b"1\n", result.stdout
    assert Path(f"/proc/sys/net/ipv6/conf/{network.BRIDGE}/disable_ipv6").read_text() == "1\n"


_ADDRESS = "ip -o -4 addr show eth0 | awk '{print $4}'"


async def test_steps_in_a_row_reuse_namespaces_only_when_left_clean(
    executor: Executor, rootfs: Path
) -> None:
    seen = [(await sh(executor, rootfs, _ADDRESS)).stdout for _ in range(8)]
    assert len(set(seen)) <= 5, "each step got a new namespace: none was reused"
    # The server side closes first: its port stays in TIME_WAIT after the container ended.
    linger = f"nc -l -p 8080 -e true & sleep 0.2; nc 127.0.0.1 8080 </dev/null; {_ADDRESS}"
    lingered = [(await sh(executor, rootfs, linger)).stdout for _ in range(3)]
    assert len(set(lingered)) == 3
    after = [(await sh(executor, rootfs, _ADDRESS)).stdout for _ in range(3)]
    assert not set(after) & set(lingered), "a namespace with lingering sockets was reused"


_TIME_WAIT = """
import socket
server = socket.create_server(("127.0.0.1", 8080))
client = socket.create_connection(("127.0.0.1", 8080))
conn, _ = server.accept()
conn.close()  # the server closes first: its port 8080 stays in TIME_WAIT for a minute
client.recv(1)
client.close()
"""


def test_a_namespace_with_lingering_sockets_is_not_reused() -> None:
    tag = f"t{os.getpid() % 100:02d}"
    network.setup_host_network()
    ns = network.create_netns(f"dirk-{tag}-1", f"dk{tag}1")
    try:
        assert network.reusable(ns.name)
        subprocess.run(
            ["ip", "netns", "exec", ns.name, sys.executable, "-c", _TIME_WAIT], check=True
        )
        assert not network.reusable(ns.name), "the next container could not bind port 8080"
    finally:
        network.remove_netns(ns.name)
    assert _wait_until(lambda: _ours(tag) == ([], [])), _ours(tag)


def test_a_namespace_released_after_close_is_removed() -> None:
    tag = f"u{os.getpid() % 100:02d}"
    network.setup_host_network()
    pool = network.NetnsPool(tag, size=1)
    pool.start()
    ns = pool.create()
    pool.close()
    pool.release(ns, reuse=True)  # a container that outlived the engine's shutdown
    assert _wait_until(lambda: _ours(tag) == ([], [])), _ours(tag)


# --- cleanup ----------------------------------------------------------------------------------


def _ours(tag: str) -> tuple[list[str], list[str]]:
    """Our network namespaces and host-side veths still present."""
    netns = [n for n in os.listdir(network.NETNS_DIR) if n.startswith(f"dirk-{tag}-")]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    veths = [line.split()[0] for line in links.splitlines() if line.startswith(f"dk{tag}")]
    return netns, veths


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


def _wait_until(check: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(check())  # type: ignore[operator]


async def test_cancellation_kills_and_cleans_up(executor: Executor, rootfs: Path) -> None:
    marker = f"{os.getpid() % 1000}{time.monotonic_ns() % 100000}"
    with anyio.move_on_after(1.0) as scope:
        await executor.run(rootfs, ContainerSpec(args=("sleep", f"9{marker}")))
    assert scope.cancelled_caught
    assert _processes_with(f"sleep\x009{marker}") == []
    runtime_root = executor.layout.run / "runtime" / executor.runtime
    assert [p.name for p in runtime_root.iterdir()] == []
    assert list((executor.layout.run / "c").iterdir()) == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(rootfs) + "/" not in mounts  # nothing of the container stays mounted
    await executor.aclose()
    assert _wait_until(lambda: _ours(executor.tag) == ([], [])), _ours(executor.tag)


async def test_cancel_right_after_start(executor: Executor, rootfs: Path) -> None:
    for delay in (0.0, 0.005, 0.02):
        marker = f"8{time.monotonic_ns() % 10**8}"
        with anyio.move_on_after(delay):
            await executor.run(rootfs, ContainerSpec(args=("sleep", marker)))
        assert _processes_with(f"sleep\x00{marker}") == []
    runtime_root = executor.layout.run / "runtime" / executor.runtime
    assert list(runtime_root.iterdir()) == []


_CRASHER = """
import anyio, sys
from pathlib import Path
from dirk.state.layout import StateLayout
from dirk.workers.executor.executor import Executor
from dirk.workers.executor.spec import ContainerSpec

async def main():
    ex = Executor(StateLayout(Path(sys.argv[1])).ensure(), sys.argv[3])
    await ex.start()
    await ex.run(Path(sys.argv[2]), ContainerSpec(args=("sleep", sys.argv[4])))

anyio.run(main)
"""


async def test_start_removes_what_a_killed_engine_left(rootfs: Path, tmp_path: Path) -> None:
    for runtime in ("crun", "runc"):
        layout = StateLayout(tmp_path / f"state-{runtime}").ensure()
        marker = f"7{time.monotonic_ns() % 10**8}"
        engine = subprocess.Popen(
            [sys.executable, "-c", _CRASHER, str(layout.root), str(rootfs), runtime, marker]
        )
        try:
            assert _wait_until(lambda m=marker: _processes_with(f"sleep\x00{m}"), 10), (
                "the engine did not start its container"
            )
        finally:
            engine.kill()
            engine.wait()
        assert _processes_with(f"sleep\x00{marker}"), "the container outlives its engine"
        executor = Executor(layout, runtime)
        await executor.start()
        try:
            assert _processes_with(f"sleep\x00{marker}") == []
            runtime_root = layout.run / "runtime" / runtime
            assert list(runtime_root.iterdir()) == []
            assert list((layout.run / "c").iterdir()) == []
        finally:
            await executor.aclose()
        tag = executor.tag
        assert _wait_until(lambda t=tag: _ours(t) == ([], [])), _ours(tag)


async def test_start_reports_a_missing_runtime(tmp_path: Path) -> None:
    executor = Executor(StateLayout(tmp_path / "s").ensure(), "/nonexistent/crun-x")
    with pytest.raises(ExecutorError, match="not found"):
        await executor.start()


def test_bridge_address_does_not_clash_with_host_networks() -> None:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for line in used.splitlines():
        name, address = line.split()[1], line.split()[3]
        if name != network.BRIDGE:
            assert not address.startswith("10.89."), f"{name} already uses {address}"
    assert socket.inet_aton(network.GATEWAY)
