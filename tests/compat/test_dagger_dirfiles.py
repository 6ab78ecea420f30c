"""The released Dagger Python SDK on dirk's host files, directory reads and exports."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.compat.programs import PIPELINES, CompatTools, RunningEngine, run_program

pytestmark = pytest.mark.integration


def test_python_sdk_reads_searches_and_exports(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    workspace: Path,
    nonce: str,
) -> None:
    result = run_program(
        request,
        [
            compat_tools.dirk,
            "run",
            "--",
            compat_tools.python,
            PIPELINES / "dagger_dirfiles.py",
            nonce,
        ],
        cwd=workspace,
        engine=engine,
    )
    got = result.result_json()
    app = "print('TODO: greet')\n"
    assert got == {
        "glob": ["app.py", "lib/util.py"],
        "entries": [".gitignore", "app.py", "lib/"],
        "search": [["app.py", 1, ["TODO: greet"]], ["lib/util.py", 1, ["TODO: tidy"]]],
        "stat": ["DIRECTORY", "lib"],
        "exists": True,
        "digest_eq": True,
        "file_digest": "sha256:" + hashlib.sha256(app.encode()).hexdigest(),
        "replaced": f"print('{nonce}')\n",
        "export": str(workspace / "exported"),
        "file_export": str(workspace / "exported" / "copy.py"),
        "missing": got["missing"],
    }, result.describe()
    assert "nope.txt: no such file or directory" in got["missing"]["error"]
    assert (workspace / "exported" / "lib" / "util.py").read_text() == "# TODO: tidy\n"
    assert not (workspace / "exported" / "debug.log").exists()
    assert (workspace / "exported" / "copy.py").read_text() == app
