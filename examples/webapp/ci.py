"""Test a web app against its database, both in containers: PostgreSQL runs as a service that
the test container reaches by the host name `db`.

    .venv/bin/python examples/webapp/ci.py            (after `make images`)

The app (`examples/webapp/app`: a notes API on Python's standard library, with a small
PostgreSQL wire-protocol client since the python image has no driver) is tested twice:
  1. its unit tests (`python -m unittest`) in a python container bound to the database;
  2. end to end: the app itself runs as a service bound to the database, and a busybox
     container bound to it as `web` posts a note and reads the list back with wget.
The database password is a secret: it reaches both containers as a variable, never a cache
key or a log. Each run gets a fresh database (a new service per run of a step).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

import anyio

import dirk

POSTGRES = "127.0.0.1:5000/postgres:15"
PYTHON = "127.0.0.1:5000/python:3.11"
BUSYBOX = "127.0.0.1:5000/busybox:latest"
HERE = Path(__file__).resolve().parent
DATABASE_URL = "postgres://app@db:5432/notes"


async def main() -> None:
    started = time.monotonic()
    note = os.environ.get("WEBAPP_NOTE", "hello from ci.py")
    async with dirk.Connection(dirk.Config(log_output=sys.stderr)) as client:
        password = client.set_secret("db-password", secrets.token_urlsafe(16))
        # Steps that start a service depend on a run token: a service is started for a step
        # that runs, and a cached step would not show the app working now.
        run = secrets.token_hex(8)
        database = (
            client.container()
            .from_(POSTGRES)
            .with_env_variable("POSTGRES_USER", "app")
            .with_env_variable("POSTGRES_DB", "notes")
            .with_secret_variable("POSTGRES_PASSWORD", password)
            .with_exposed_port(5432)
            .as_service(use_entrypoint=True)
        )
        source = client.host().directory(str(HERE / "app"), exclude=["__pycache__/"])
        app = (
            client.container()
            .from_(PYTHON)
            .with_directory("/app", source)
            .with_workdir("/app")
            .with_env_variable("PYTHONDONTWRITEBYTECODE", "1")
            .with_env_variable("DATABASE_URL", DATABASE_URL)
            .with_secret_variable("DATABASE_PASSWORD", password)
            .with_service_binding("db", database)
        )

        # 1. The unit tests against the database.
        tests = await (
            app.with_env_variable("RUN", run)
            .with_exec(["sh", "-c", "python -m unittest -v 2>&1"])
            .stdout()
        )
        print(tests.rstrip())

        # 2. End to end: the app as a service, a client container using it over HTTP.
        web = app.with_exposed_port(8000).as_service(args=["python", "app.py"])
        script = (
            'wget -q -O- --post-data "$NOTE" http://web:8000/notes && echo && '
            "wget -q -O- http://web:8000/notes"
        )
        answer = await (
            client.container()
            .from_(BUSYBOX)
            .with_env_variable("RUN", run)
            .with_env_variable("NOTE", note)
            .with_service_binding("web", web)
            .with_exec(["sh", "-c", script])
            .stdout()
        )
        created_line, listing = answer.strip().split("\n")
        created = json.loads(created_line)
        notes = json.loads(listing)
        if created not in notes or created["body"] != note:
            raise SystemExit(f"the note did not make the round trip: {answer!r}")
        print(f"end to end: stored note {created['id']} and read it back: {created['body']!r}")
    print(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    anyio.run(main)
