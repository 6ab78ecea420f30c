"""The HTTP/1.1 answers `dirk.wire.http` reads, byte for byte from a scripted server: body
framing (length, chunked with extensions and trailers, until close, none), interim answers,
keep-alive decisions and malformed answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from dirk.wire import http
from dirk.wire.driver import drive


class _Scripted:
    """Answers each request on a connection with the next scripted bytes; `None` closes the
    connection without answering, `b"!close"` appended closes it after answering."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while self.answers:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                answer = self.answers.pop(0)
                if answer is None:
                    return
                close = answer.endswith(b"!close")
                conn.sendall(answer.removesuffix(b"!close"))
                if close:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[list[_Scripted]]:
    servers: list[_Scripted] = []
    yield servers
    for s in servers:
        s.close()


def _run(
    scripted: list[_Scripted], answers: list[bytes | None], requests: int = 1
) -> tuple[list[http.Response], _Scripted]:
    server = _Scripted(answers)
    scripted.append(server)
    pool = http.Pool(server.url, blocking=True, connect_timeout=2.0, read_timeout=5.0)
    try:
        out = [drive(pool.request("POST", "/q", json_body={})) for _ in range(requests)]
    finally:
        drive(pool.aclose())
    return out, server


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


def test_content_length_answers_keep_the_connection(scripted: list[_Scripted]) -> None:
    answers, server = _run(scripted, [OK, OK, OK], requests=3)
    assert [a.json() for a in answers] == [{}, {}, {}]
    assert answers[0].headers == [(b"content-length", b"2"), (b"content-type", b"application/json")]
    assert server.connections == 1


def test_chunked_with_extensions_and_trailers(scripted: list[_Scripted]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;name=value\r\nabc\r\n"
        b"A\r\n0123456789\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    answers, server = _run(scripted, [chunked, OK], requests=2)
    assert answers[0].body == b"abc0123456789"
    assert answers[1].json() == {}
    assert server.connections == 1


def test_interim_answers_are_skipped(scripted: list[_Scripted]) -> None:
    answers, _ = _run(scripted, [b"HTTP/1.1 100 Continue\r\n\r\n" + OK])
    assert answers[0].status == 200 and answers[0].json() == {}


def test_a_body_until_close_and_connection_close_are_not_reused(
    scripted: list[_Scripted],
) -> None:
    until_close = b"HTTP/1.1 200 OK\r\n\r\nall of it!close"
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}!close"
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}!close"
    answers, server = _run(scripted, [until_close, closing, old, OK], requests=4)
    assert [a.body for a in answers] == [b"all of it", b"{}", b"{}", b"{}"]
    assert server.connections == 4


def test_no_content_has_no_body(scripted: list[_Scripted]) -> None:
    answers, server = _run(scripted, [b"HTTP/1.1 204 No Content\r\n\r\n", OK], requests=2)
    assert answers[0].status == 204 and answers[0].body == b""
    assert server.connections == 1


def test_an_idle_connection_closed_as_it_is_reused_is_retried(scripted: list[_Scripted]) -> None:
    # The second request finds the kept connection closed without an answer: sent again on a
    # new connection.
    answers, server = _run(scripted, [OK, None, OK], requests=2)
    assert [a.json() for a in answers] == [{}, {}]
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort!close",
    ],
)
def test_malformed_or_cut_answers_are_protocol_errors(
    scripted: list[_Scripted], answer: bytes
) -> None:
    with pytest.raises(http.ProtocolError):
        _run(scripted, [answer])


def test_a_server_that_never_answers_is_a_protocol_error(scripted: list[_Scripted]) -> None:
    with pytest.raises(http.ProtocolError, match="without answering"):
        _run(scripted, [None])


def test_headers_that_could_split_the_request_are_refused(scripted: list[_Scripted]) -> None:
    server = _Scripted([OK])
    scripted.append(server)
    pool = http.Pool(server.url, blocking=True, connect_timeout=2.0, read_timeout=5.0)
    try:
        with pytest.raises(ValueError, match="invalid HTTP header"):
            drive(pool.request("GET", "/", headers={"X-Evil": "a\r\nInjected: 1"}))
    finally:
        drive(pool.aclose())
