"""A Dagger pipeline ports to dirk by changing its imports: the same program that
test_dagger_python.py runs with the released dagger-io, with `dagger` replaced by `dirk` in its
import lines only (`import dirk as dagger`, `from dirk import dag`), run by dirk's own SDK
against a real engine, prints the same results.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.compat.programs import (
    PIPELINES,
    REPO,
    RunningEngine,
    assert_cleaned_up,
    assert_pipeline_result,
    run_program,
)

pytestmark = pytest.mark.integration

DAGGER_PROGRAM = PIPELINES / "dagger_pipeline.py"
IMPORT_DAGGER = re.compile(r"^import dagger$", re.MULTILINE)
FROM_DAGGER = re.compile(r"^from dagger import ", re.MULTILINE)


def port_to_dirk(source: str) -> str:
    """`source` with its Dagger imports turned into dirk's; nothing else changes."""
    ported = IMPORT_DAGGER.sub("import dirk as dagger", source)
    ported = FROM_DAGGER.sub("from dirk import ", ported)
    changed = [
        (old, new)
        for old, new in zip(source.splitlines(), ported.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        ("import dagger", "import dirk as dagger"),
        ("from dagger import dag", "from dirk import dag"),
    ], changed
    assert not re.search(r"^\s*(import|from) dagger\b", ported, re.MULTILINE)
    return ported


@pytest.fixture
def ported_program(tmp_path: Path) -> Path:
    path = tmp_path / "dirk_pipeline.py"
    path.write_text(port_to_dirk(DAGGER_PROGRAM.read_text()))
    return path


@pytest.mark.parametrize("style", ["connection", "dag"])
def test_the_dagger_pipeline_runs_on_dirks_sdk_with_only_its_imports_changed(
    request: pytest.FixtureRequest,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
    ported_program: Path,
    style: str,
) -> None:
    # dirk's interpreter and sources (not the compat venv's dagger-io); the engine is found
    # through DIRK_STATE_DIR, as a program on a machine with a running engine finds it.
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    result = run_program(
        request,
        [sys.executable, ported_program, style, python_image, nonce],
        cwd=workspace,
        engine=engine,
        extra_env={"PYTHONPATH": pythonpath},
    )
    assert_pipeline_result(result)
    assert_cleaned_up(result)
