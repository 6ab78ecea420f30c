"""The SDK's HTTP/1.1 client (`dirk.wire.http`) against a real HTTP server, both modes:
keep-alive reuse, a connection the server closed while idle, streaming, timeouts, refusal,
and Ctrl-C in the middle of a blocking request."""

from __future__ import annotations

import http.server as http_server
import json
import os
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dirk.wire import http
from dirk.wire.driver import drive


class _Handler(http_server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(dict(self.headers))
        if self.path == "/slow":
            self.server.slow_started.set()
            time.sleep(2)
        answer = json.dumps({"echo": json.loads(body), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def do_DELETE(self) -> None:  # an answer without a body
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:  # a chunked stream of three lines
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in (b"one\n", b"two\n", b"three\n"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.write(b"0\r\n\r\n")

    def finish(self) -> None:
        super().finish()
        self.server.closed += 1


class _Server(socketserver.ThreadingMixIn, http_server.HTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.closed = 0
        self.seen: list[dict[str, str]] = []
        self.slow_started = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer (the Ctrl-C test) is expected

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _pool(url: str, *, blocking: bool, read_timeout: float | None = 5.0) -> http.Pool:
    return http.Pool(
        url,
        blocking=blocking,
        connect_timeout=2.0,
        read_timeout=read_timeout,
        headers={"Authorization": http.basic_auth("tok")},
    )


def test_blocking_requests_reuse_one_connection(server: _Server) -> None:
    pool = _pool(server.url, blocking=True)
    try:
        for i in range(3):
            answer = drive(pool.request("POST", "/query", json_body={"n": i}))
            assert answer.status == 200
            assert answer.json() == {"echo": {"n": i}, "path": "/query"}
    finally:
        drive(pool.aclose())
    assert server.connections == 1
    assert server.seen[0]["Authorization"] == "Basic dG9rOg=="  # "tok:"
    assert server.seen[0]["Content-Type"] == "application/json"


def test_a_connection_the_server_closed_is_not_reused(server: _Server) -> None:
    pool = _pool(server.url, blocking=True)
    try:
        assert drive(pool.request("POST", "/close", json_body=1)).status == 200
        assert drive(pool.request("POST", "/query", json_body=2)).json()["echo"] == 2
    finally:
        drive(pool.aclose())
    assert server.connections == 2


def test_async_requests_run_concurrently_on_several_connections(server: _Server) -> None:
    async def main() -> list[Any]:
        pool = _pool(server.url, blocking=False)
        answers: list[Any] = []

        async def one(i: int) -> None:
            answers.append((await pool.request("POST", "/query", json_body=i)).json()["echo"])

        try:
            async with anyio.create_task_group() as group:
                for i in range(8):
                    group.start_soon(one, i)
            answers.append((await pool.request("POST", "/query", json_body=99)).json()["echo"])
        finally:
            await pool.aclose()
        return answers

    answers = anyio.run(main)
    assert sorted(answers) == [0, 1, 2, 3, 4, 5, 6, 7, 99]
    assert 1 < server.connections <= 8  # the last request reused one of them


def test_streamed_answer_arrives_in_order(server: _Server) -> None:
    async def read() -> bytes:
        pool = _pool(server.url, blocking=True)
        conn, status, _ = await pool.open_stream("GET", "/stream")
        try:
            assert status == 200
            return b"".join([chunk async for chunk in conn.chunks()])
        finally:
            await conn.aclose()

    assert drive(read()) == b"one\ntwo\nthree\n"


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")

    class Unix(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    class Handler(_Handler):
        def setup(self) -> None:
            http_server.BaseHTTPRequestHandler.setup(self)

        def finish(self) -> None:
            http_server.BaseHTTPRequestHandler.finish(self)

        def address_string(self) -> str:
            return "unix"

    srv = Unix(path, Handler)
    srv.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for blocking in (True, False):

            async def one(blocking: bool = blocking) -> Any:
                pool = http.Pool(
                    "http://dirk-engine",
                    uds=path,
                    blocking=blocking,
                    connect_timeout=2,
                    read_timeout=5,
                )
                try:
                    return (await pool.request("POST", "/query", json_body={"b": blocking})).json()
                finally:
                    await pool.aclose()

            answer = drive(one()) if blocking else anyio.run(one)
            assert answer == {"echo": {"b": blocking}, "path": "/query"}
    finally:
        srv.shutdown()
        srv.server_close()


def test_read_timeout(server: _Server) -> None:
    pool = _pool(server.url, blocking=True, read_timeout=0.3)
    with pytest.raises(http.ReadTimeout):
        drive(pool.request("POST", "/slow", json_body=0))
    drive(pool.aclose())


def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for blocking in (True, False):
        pool = _pool(f"http://127.0.0.1:{port}", blocking=blocking)

        async def one(pool: http.Pool = pool) -> Any:
            return await pool.request("POST", "/query", json_body=0)

        with pytest.raises(http.ConnectError, match=f"127.0.0.1:{port}"):
            drive(one()) if blocking else anyio.run(one)


def test_ctrl_c_interrupts_a_blocking_request_and_drops_its_connection(server: _Server) -> None:
    pool = _pool(server.url, blocking=True, read_timeout=None)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            drive(pool.request("POST", "/slow", json_body=0))
    finally:
        timer.cancel()
    assert time.monotonic() - started < 1.5  # did not wait for the answer (2 s)
    assert server.slow_started.is_set()
    assert pool._idle == []  # the interrupted connection is closed, never reused
    drive(pool.aclose())


def test_an_answer_without_a_body_leaves_the_connection_reusable(server: _Server) -> None:
    pool = _pool(server.url, blocking=True)
    try:
        gone = drive(pool.request("DELETE", "/sessions/x"))
        assert (gone.status, gone.body) == (204, b"")
        assert drive(pool.request("POST", "/query", json_body=3)).json()["echo"] == 3
    finally:
        drive(pool.aclose())
    assert server.connections == 1


def test_a_header_that_would_break_the_request_is_refused(server: _Server) -> None:
    pool = _pool(server.url, blocking=True)
    try:
        with pytest.raises(ValueError, match="would break the request's framing"):
            drive(pool.request("POST", "/query", json_body=1, headers={"X-A": "b\r\nX-Evil: 1"}))
    finally:
        drive(pool.aclose())
    assert server.seen == []  # nothing was sent


def _raw_server(answer: bytes) -> tuple[socket.socket, str]:
    """A listener that answers the first request on each connection with `answer`, then
    closes it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"SMTP ready\r\n\r\n", "not valid HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", "closed the connection"),
    ],
)
def test_a_broken_answer_is_a_protocol_error(answer: bytes, says: str) -> None:
    listener, url = _raw_server(answer)
    pool = _pool(url, blocking=True)
    try:
        with pytest.raises(http.ProtocolError, match=says):
            drive(pool.request("POST", "/query", json_body=1))
    finally:
        drive(pool.aclose())
        listener.close()
