"""A port forwarder (`workers/executor/forward.py`, as `Service.up`, `Host.tunnel` and
`Host.service` use it) vs a direct connection, in the same run on the loopback.

A server process sinks a bulk upload (throughput) and echoes 1-byte pings (round-trip
latency); the client connects to it directly and through a forwarder running in a process of
its own (as in the engine: one event loop serving the relay). Medians over interleaved rounds
and the forwarded/direct ratios are printed.

    .venv/bin/python bench/forward.py [--mib 256] [--pings 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

SERVER = r"""
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
def handle(conn):
    with conn:
        kind = conn.recv(1)
        if kind == b"s":   # sink: count until EOF, answer the count
            n = 0
            while chunk := conn.recv(1 << 20):
                n += len(chunk)
            conn.sendall(str(n).encode())
        else:              # echo single bytes
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while b := conn.recv(1):
                conn.sendall(b)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""

FORWARDER = r"""
import sys, anyio
from dirk.workers.executor.forward import Forwarder, Route, open_listeners
async def main():
    fwd = Forwarder(open_listeners([Route("tcp", "127.0.0.1", 0, "127.0.0.1", int(sys.argv[1]))]))
    print(fwd.bound[0].port, flush=True)
    await fwd.serve()
anyio.run(main)
"""


def start(script: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def upload(port: int, total: int) -> float:
    """MiB/s of a `total`-byte upload the server confirms."""
    chunk = b"\0" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        started = time.perf_counter()
        conn.sendall(b"s")
        sent = 0
        while sent < total:
            conn.sendall(chunk)
            sent += len(chunk)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while part := conn.recv(64):
            answer += part
        elapsed = time.perf_counter() - started
    assert int(answer) == total, answer
    return total / (1 << 20) / elapsed


def pings(port: int, count: int) -> float:
    """Median round trip of a 1-byte ping, in microseconds."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"e")
        times = []
        for _ in range(count):
            started = time.perf_counter()
            conn.sendall(b"x")
            assert conn.recv(1) == b"x"
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def connect_time(port: int, count: int = 200) -> float:
    """Median time to open a connection and get the first byte back, in microseconds."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"ex")
            assert conn.recv(1) == b"x"
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    server, direct = start(SERVER)
    forwarder, forwarded = start(FORWARDER, str(direct))
    try:
        results: dict[str, dict[str, list[float]]] = {"direct": {}, "forwarded": {}}
        for _ in range(opts.rounds):
            for name, port in (("direct", direct), ("forwarded", forwarded)):
                r = results[name]
                r.setdefault("mib_s", []).append(upload(port, opts.mib << 20))
                r.setdefault("rtt_us", []).append(pings(port, opts.pings))
                r.setdefault("connect_us", []).append(connect_time(port))
    finally:
        for proc in (forwarder, server):
            proc.kill()
            proc.wait()
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    d, f = med["direct"], med["forwarded"]
    print(f"   upload {opts.mib} MiB, {opts.pings} pings, {opts.rounds} rounds (medians)")
    print(
        f"   throughput (MiB/s):   direct {d['mib_s']:9.0f}  forwarded {f['mib_s']:9.0f}"
        f"  ratio {f['mib_s'] / d['mib_s']:.2f}x"
    )
    print(
        f"   1-byte RTT (us):      direct {d['rtt_us']:9.1f}  forwarded {f['rtt_us']:9.1f}"
        f"  ratio {f['rtt_us'] / d['rtt_us']:.2f}x"
    )
    print(
        f"   connect+1st byte (us): direct {d['connect_us']:8.1f}  forwarded "
        f"{f['connect_us']:9.1f}  ratio {f['connect_us'] / d['connect_us']:.2f}x"
    )


if __name__ == "__main__":
    main()
