"""The versions a client and an engine report, and what to say when they differ.

Version skew between a client and a long-running engine gives confusing failures (a field one
side lacks, a changed error shape), so every entry point can compare the two: the engine writes
its version into `engine.json`, answers it on `GET /health` and `POST /sessions`, and serves it
as Dagger's `Query.version`; `dirk version` prints both, and the SDK warns once per process when
they differ. DIRK_TEST_ENGINE_VERSION makes an engine report another version (tests of the
mismatch path); nothing else should set it.
"""

from __future__ import annotations

import os
import threading

from dirk import __version__

#: Makes the engine report this version instead of its own (for tests of version skew).
TEST_ENGINE_VERSION_ENV = "DIRK_TEST_ENGINE_VERSION"


def client_version() -> str:
    return __version__


def engine_version() -> str:
    """The version this process reports when it serves as an engine."""
    return os.environ.get(TEST_ENGINE_VERSION_ENV) or __version__


def mismatch_advice(client: str, engine: str, where: str) -> str | None:
    """None when `client` and `engine` agree, else one sentence that says what to do."""
    if not engine or client == engine:
        return None
    return (
        f"dirk {client} is talking to a dirk engine {engine} ({where}); mixed versions can fail "
        "in confusing ways: restart the engine with this version (`dirk engine stop`; the next "
        "program starts the new one), or run the client of the engine's version"
    )


_warned: set[str] = set()
_warned_lock = threading.Lock()


def first_mismatch(engine: str, where: str) -> str | None:
    """`mismatch_advice` for this client, only the first time per process for `engine`."""
    advice = mismatch_advice(client_version(), engine, where)
    if advice is None:
        return None
    with _warned_lock:
        if engine in _warned:
            return None
        _warned.add(engine)
    return advice
