"""What `import dirk` offers: every SDK name at the top level, without the engine's weight."""

from __future__ import annotations

import subprocess
import sys
import typing

import dirk
import dirk.sdk.gen


def test_every_generated_class_and_enum_is_a_top_level_name() -> None:
    missing = sorted(set(dirk.sdk.gen.__all__) - set(dirk.__all__))
    assert not missing, f"add {missing} to dirk/__init__.py (_EXPORTS and TYPE_CHECKING)"
    for name in dirk.__all__:
        assert getattr(dirk, name) is not None


def test_mode_type_variable_for_helpers_of_both_modes() -> None:
    assert isinstance(dirk.M, typing.TypeVar)
    assert dirk.M.__bound__ is dirk.Mode
    assert issubclass(dirk.Async, dirk.Mode) and issubclass(dirk.Sync, dirk.Mode)


def test_the_sdk_does_not_import_the_engine_or_its_server() -> None:
    program = (
        "import sys, dirk\n"
        "assert 'dirk.sdk' not in sys.modules, 'import dirk alone must stay light'\n"
        "dirk.Connection, dirk.Container, dirk.M\n"
        "heavy = ['aiohttp', 'graphql', 'dirk.engine', 'dirk.api', 'dirk.solver', 'dirk.workers']\n"
        "print([name for name in heavy if name in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
