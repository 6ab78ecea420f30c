"""What the hot paths import, pinned by behaviour: a module a path does not need is a cost every
run of it pays (httpx alone costs more than a cached pipeline's whole run). Each check runs a
fresh interpreter and lists the modules it loaded.

For other helpers: rich (progress) must stay a lazy import of the paths that show progress;
the SDK must not import click, httpx, asyncio, dataclasses or the engine; the CLI's `run`
entry must not import the engine or the SDK's generated classes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: Top-level packages a sync SDK program (`with dirk.Connection()`) must not load.
NOT_IN_SDK = {
    "aiohttp",
    "anyio",
    "asyncio",
    "attr",
    "attrs",
    "click",
    "dataclasses",
    "graphql",
    "h11",
    "httpcore",
    "httpx",
    "inspect",
    "logging",
    "pygments",
    "rich",
    "sniffio",
    "sqlite3",
    "ssl",
    "zstandard",
}


def _loaded(code: str) -> set[str]:
    """The top-level names of every module a fresh interpreter has loaded after `code`."""
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    modules: list[str] = json.loads(out.splitlines()[-1])
    return set(modules)


def _tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_building_a_pipeline_imports_no_transport_loop_or_terminal_library() -> None:
    loaded = _loaded(
        "import dirk\n"
        "from dirk import dag\n"
        "c = dirk.Connection\n"
        "ctr = dag.container().from_('alpine').with_exec(['true']).with_env_variable('A', 'b')\n"
        "dirk.Config(timeout=5)\n"
    )
    assert _tops(loaded) & NOT_IN_SDK == set()
    assert not any(name.startswith(("dirk.engine", "dirk.api", "dirk.solver")) for name in loaded)
    assert not any(name.startswith(("dirk.workers", "dirk.cli")) for name in loaded)


def test_the_sdk_modules_alone_import_nothing_heavy() -> None:
    loaded = _loaded(
        "import dirk.sdk.connection, dirk.sdk.shared, dirk.sdk.provision, dirk.wire.client"
    )
    assert _tops(loaded) & NOT_IN_SDK == set()


def test_the_cli_run_entry_imports_neither_the_engine_nor_the_generated_classes() -> None:
    loaded = _loaded("import dirk.cli.main, dirk.cli.session_cmd\nfrom dirk.sdk import provision\n")
    assert not any(name.startswith(("dirk.engine", "dirk.api", "dirk.solver")) for name in loaded)
    assert not any(name.startswith(("dirk.workers", "dirk.sdk.gen")) for name in loaded)
    assert _tops(loaded) & {"aiohttp", "graphql", "httpx", "rich", "asyncio", "anyio"} == set()


def test_the_engine_loads_pathspec_and_httpx_only_when_used() -> None:
    """Everything the daemon imports to serve: pathspec (a tenth of it) waits for the first
    include/exclude pattern, .gitignore or search glob."""
    loaded = _loaded(
        "import dirk.cli.main, dirk.cli.engine_cmd, dirk.engine.daemon, dirk.engine.core\n"
        "import dirk.api, dirk.wire.server, dirk.engine.sessions\n"
        "dirk.api.build_schema()\n"
    )
    assert "dirk.workers.snapshots.tree" in loaded
    assert "pathspec" not in _tops(loaded)
    # httpx (with the rich and click its command-line module imports) waits for the first
    # pull, push or download: it was a fifth of the engine's start.
    assert _tops(loaded) & {"httpx", "httpcore", "rich"} == set()
    filtered = _loaded(
        "from dirk.workers.snapshots.tree import PathFilter\nPathFilter(['*.py'], [])\n"
    )
    assert "pathspec" in _tops(filtered)


def test_the_plain_progress_view_of_dirk_run_imports_no_attrs() -> None:
    idle = _loaded(
        "import sys\nfrom dirk.progress import make_view\n"
        "make_view('plain', sys.stderr, {}).close()\n"
    )
    assert "dirk.progress.model" not in idle  # no step ran: no view was needed
    loaded = _loaded(
        "import sys\nfrom dirk.progress import make_view\n"
        "view = make_view('plain', sys.stderr, {})\n"
        "view.on_record({'type': 'step', 'id': 's', 'name': 'true', 'state': 'running'})\n"
        "view.close()\n"
    )
    assert "dirk.progress.model" in loaded
    assert _tops(loaded) & {"attr", "attrs", "rich"} == set()


def test_a_debug_line_nobody_can_see_does_not_import_logging() -> None:
    """The session's end logs a debug line in every program; with `logging` never imported,
    no configuration could show it. Once a program has imported logging, it is logged."""
    quiet = _loaded("from dirk import lazylog\nlazylog.debug('dirk.x', 'the stream %s', 'ended')\n")
    assert "logging" not in quiet
    script = (
        "import logging, sys\nlogging.basicConfig(level=logging.DEBUG, stream=sys.stdout)\n"
        "from dirk import lazylog\nlazylog.debug('dirk.x', 'the stream %s', 'ended')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DEBUG:dirk.x:the stream ended" in out
