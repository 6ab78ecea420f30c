"""A notes web app on PostgreSQL: POST /notes stores the request body as a note, GET /notes
lists them as JSON, GET /health answers once the database does.

    DATABASE_URL=postgres://app@db:5432/notes DATABASE_PASSWORD=... python app.py

Listens on 0.0.0.0:$PORT (8000). One database connection per request keeps it simple and safe
across the server's threads.
"""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pgwire import Connection, PgError

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)"
MAX_NOTE = 10_000


def connect() -> Connection:
    return Connection.from_url(
        os.environ.get("DATABASE_URL", "postgres://postgres@localhost:5432/postgres"),
        os.environ.get("DATABASE_PASSWORD"),
    )


def create_schema() -> None:
    with connect() as db:
        db.execute(SCHEMA)


def add_note(body: str) -> dict[str, object]:
    with connect() as db:
        ((note_id,),) = db.execute("INSERT INTO notes (body) VALUES ($1) RETURNING id", [body])
    return {"id": int(note_id or 0), "body": body}


def list_notes() -> list[dict[str, object]]:
    with connect() as db:
        rows = db.execute("SELECT id, body FROM notes ORDER BY id")
    return [{"id": int(i or 0), "body": body} for i, body in rows]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            with connect() as db:
                db.execute("SELECT 1")
            self._send(HTTPStatus.OK, {"status": "ok"})
        elif self.path == "/notes":
            self._send(HTTPStatus.OK, list_notes())
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/notes":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_NOTE:
            self._send(HTTPStatus.BAD_REQUEST, {"error": f"a note is 1 to {MAX_NOTE} bytes"})
            return
        body = self.rfile.read(length).decode(errors="replace")
        try:
            self._send(HTTPStatus.CREATED, add_note(body))
        except PgError as error:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(error)})

    def _send(self, status: HTTPStatus, value: object) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def serve(port: int) -> ThreadingHTTPServer:
    create_schema()
    return ThreadingHTTPServer(("0.0.0.0", port), Handler)


if __name__ == "__main__":
    server = serve(int(os.environ.get("PORT", "8000")))
    print(f"serving on port {server.server_address[1]}", flush=True)
    server.serve_forever()
