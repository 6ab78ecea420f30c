"""What `import dirk` offers: every SDK name at the top level, without the engine's weight."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest

import dirk
import dirk.errors
import dirk.sdk.gen

#: The top-level names of Dagger's Python SDK (dagger-io 0.21) that a pipeline script uses, each
#: of which dirk has under the same name: changing `import dagger` to `import dirk as dagger`
#: ports such a script. (Dagger's module-runtime names, `Retry`/`Timeout` and the transport's
#: internal errors have no dirk counterpart.)
DAGGER_NAMES = [
    "CacheSharingMode",
    "CacheVolume",
    "ClientConnectionError",
    "Config",
    "Connection",
    "Container",
    "DaggerError",
    "Directory",
    "EnvVariable",
    "ExecError",
    "File",
    "Host",
    "JSON",
    "Label",
    "NetworkProtocol",
    "Node",
    "Platform",
    "Port",
    "ProvisionError",
    "QueryError",
    "ReturnType",
    "Secret",
    "connection",
    "dag",
]


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
        "dirk.Connection, dirk.Container, dirk.M, dirk.dag, dirk.connection, dirk.ExecError\n"
        "heavy = ['aiohttp', 'graphql', 'dirk.engine', 'dirk.api', 'dirk.solver', 'dirk.workers']\n"
        "print([name for name in heavy if name in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", DAGGER_NAMES)
def test_daggers_top_level_names_exist(name: str) -> None:
    assert name in dirk.__all__
    assert getattr(dirk, name) is not None


def test_daggers_error_names_are_dirks_classes() -> None:
    assert dirk.DaggerError is dirk.DirkError is dirk.errors.DirkError
    assert dirk.QueryError is dirk.errors.QueryError
    assert dirk.ExecError is dirk.errors.ExecError
    assert issubclass(dirk.ExecError, dirk.QueryError)
    assert issubclass(dirk.QueryError, dirk.DaggerError)
    error = dirk.ExecError(["sh", "-c", "exit 2"], 2, "out", "err")
    # Dagger's attribute names, and its `error` value with message and path.
    assert (error.command, error.exit_code, error.stdout, error.stderr) == (
        ["sh", "-c", "exit 2"],
        2,
        "out",
        "err",
    )
    assert error.message == 'process "sh -c exit 2" did not complete successfully: exit code: 2'
    assert error.error.message == error.message and error.errors == [error.error]


def test_connection_is_a_context_manager_for_both_modes_and_dag_a_client() -> None:
    conn = dirk.connection(dirk.Config())
    for method in ("__aenter__", "__aexit__", "__enter__", "__exit__"):
        assert callable(getattr(conn, method))
    assert isinstance(dirk.dag, dirk.Client)


def test_every_chainable_class_has_daggers_with_helper() -> None:
    for name in ("Container", "Directory"):
        cls = getattr(dirk, name)
        assert list(inspect.signature(cls.with_).parameters) == ["self", "cb"]
    for name in ("Container", "Directory", "File"):
        assert "__await__" in vars(getattr(dirk, name))
