"""A small PostgreSQL client on the wire protocol (version 3), standard library only.

The python:3.11 test image has no PostgreSQL driver and the example runs offline, so the app
speaks the protocol itself: startup, authentication (trust, cleartext, md5, SCRAM-SHA-256),
and queries with parameters through the extended protocol (Parse, Bind, Describe, Execute,
Sync), so values never become SQL text. Results come back as text (None for NULL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

PROTOCOL_3 = 196608


class PgError(Exception):
    """An ErrorResponse from the server: `code` is its SQLSTATE, `fields` every field sent."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.code = fields.get("C", "")
        super().__init__(f"{fields.get('S', 'ERROR')}: {fields.get('M', '?')} ({self.code})")


def _cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def _fields(payload: bytes) -> dict[str, str]:
    out = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode(errors="replace")
    return out


class Connection:
    """One session with the server; not shared between threads."""

    def __init__(
        self, host: str, port: int, user: str, password: str, database: str, timeout: float = 10
    ) -> None:
        self.user, self.password = user, password
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""
        params = _cstr("user") + _cstr(user) + _cstr("database") + _cstr(database) + b"\0"
        body = struct.pack("!I", PROTOCOL_3) + params
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        self._authenticate()
        self._until_ready()

    @classmethod
    def from_url(cls, url: str, password: str | None = None) -> Connection:
        """postgres://user[:password]@host[:port]/database; `password` overrides the URL's."""
        parts = urlsplit(url)
        return cls(
            parts.hostname or "localhost",
            parts.port or 5432,
            unquote(parts.username or "postgres"),
            password if password is not None else unquote(parts.password or ""),
            parts.path.lstrip("/") or unquote(parts.username or "postgres"),
        )

    # --- messages ---------------------------------------------------------------------------

    def _send(self, kind: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(kind + struct.pack("!I", len(payload) + 4) + payload)

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _receive(self) -> tuple[bytes, bytes]:
        kind, length = struct.unpack("!cI", self._read(5))
        return kind, self._read(length - 4)

    # --- startup ----------------------------------------------------------------------------

    def _authenticate(self) -> None:
        while True:
            kind, payload = self._receive()
            if kind == b"E":
                raise PgError(_fields(payload))
            if kind != b"R":
                raise ConnectionError(f"unexpected message {kind!r} during authentication")
            (code,) = struct.unpack("!I", payload[:4])
            if code == 0:  # AuthenticationOk
                return
            if code == 3:  # cleartext
                self._send(b"p", _cstr(self.password))
            elif code == 5:  # md5, with a 4-byte salt
                inner = hashlib.md5((self.password + self.user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + payload[4:8]).hexdigest()
                self._send(b"p", _cstr("md5" + outer))
            elif code == 10:  # SASL: the mechanisms offered
                if b"SCRAM-SHA-256" not in payload[4:].split(b"\0"):
                    raise ConnectionError("the server offers no SASL mechanism this client has")
                self._scram_sha_256()
                return
            else:
                raise ConnectionError(f"authentication method {code} is not supported")

    def _scram_sha_256(self) -> None:
        """RFC 5802/7677 as PostgreSQL uses it (the user name travels in the startup message)."""
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = ("n,," + first_bare).encode()
        self._send(b"p", _cstr("SCRAM-SHA-256") + struct.pack("!I", len(first)) + first)
        server_first = self._sasl_step(11)
        attrs = dict(item.split("=", 1) for item in server_first.split(","))
        if not attrs["r"].startswith(nonce):
            raise ConnectionError("the server's SCRAM nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(
            "sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        final_bare = f"c=biws,r={attrs['r']}"
        message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._send(b"p", f"{final_bare},p={base64.b64encode(proof).decode()}".encode())
        server_final = self._sasl_step(12)
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        expected = base64.b64encode(hmac.digest(server_key, message, "sha256")).decode()
        if server_final != f"v={expected}":
            raise ConnectionError("the server's SCRAM signature is wrong")
        kind, payload = self._receive()
        if kind == b"E":
            raise PgError(_fields(payload))
        if (kind, payload[:4]) != (b"R", struct.pack("!I", 0)):
            raise ConnectionError("no AuthenticationOk after SCRAM")

    def _sasl_step(self, expected_code: int) -> str:
        kind, payload = self._receive()
        if kind == b"E":
            raise PgError(_fields(payload))
        (code,) = struct.unpack("!I", payload[:4])
        if kind != b"R" or code != expected_code:
            raise ConnectionError(f"unexpected SASL message {kind!r} {code}")
        return payload[4:].decode()

    def _until_ready(self) -> None:
        error = None
        while True:
            kind, payload = self._receive()
            if kind == b"E":
                error = PgError(_fields(payload))
            elif kind == b"Z":
                if error is not None:
                    raise error
                return

    # --- queries ----------------------------------------------------------------------------

    def execute(
        self, sql: str, params: Sequence[object | None] = ()
    ) -> list[tuple[str | None, ...]]:
        """Run one statement with `$1`, `$2`... bound to `params` (sent as text); its rows."""
        values = b""
        for value in params:
            if value is None:
                values += struct.pack("!i", -1)
            else:
                data = str(value).encode()
                values += struct.pack("!I", len(data)) + data
        self._send(b"P", b"\0" + _cstr(sql) + struct.pack("!H", 0))
        bind = b"\0\0" + struct.pack("!HH", 0, len(params)) + values + struct.pack("!H", 0)
        self._send(b"B", bind)
        self._send(b"D", b"P\0")
        self._send(b"E", b"\0" + struct.pack("!I", 0))
        self._send(b"S")
        rows: list[tuple[str | None, ...]] = []
        error = None
        while True:
            kind, payload = self._receive()
            if kind == b"D":
                rows.append(self._row(payload))
            elif kind == b"E":
                error = PgError(_fields(payload))
            elif kind == b"Z":
                if error is not None:
                    raise error
                return rows

    @staticmethod
    def _row(payload: bytes) -> tuple[str | None, ...]:
        (count,) = struct.unpack("!H", payload[:2])
        offset, values = 2, []
        for _ in range(count):
            (size,) = struct.unpack("!i", payload[offset : offset + 4])
            offset += 4
            if size < 0:
                values.append(None)
            else:
                values.append(payload[offset : offset + size].decode())
                offset += size
        return tuple(values)

    def close(self) -> None:
        try:
            self._send(b"X")
        finally:
            self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
