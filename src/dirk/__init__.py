"""dirk: CI/CD pipelines as Python code, run in OCI containers by a caching DAG engine.

    import dirk
    from dirk import dag

    with dirk.connection():
        print(dag.container().from_("alpine:3.20").with_exec(["echo", "hi"]).stdout())

`async with dirk.connection():` gives the same `dag` with awaitable leaves; `dirk.Connection()`
gives a client of its own (`with dirk.Connection() as client:`). Dagger's names are here too
(`dag`, `connection`, `Config`, `QueryError`, `ExecError`, `DaggerError`, `Platform`, ...), so a
Dagger pipeline ports by changing its imports (`import dirk as dagger`).

A helper that works in both modes takes and returns objects of the mode type variable:
`def build(client: dirk.Client[dirk.M]) -> dirk.Container[dirk.M]`.

The SDK is imported on first use, so the engine and the CLI (`python -m dirk ...`) do not pay
for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the lazy names below, for type checkers
    from dirk import errors as errors
    from dirk.errors import ClientConnectionError as ClientConnectionError
    from dirk.errors import DaggerError as DaggerError
    from dirk.errors import DirkError as DirkError
    from dirk.errors import ExecError as ExecError
    from dirk.errors import ProvisionError as ProvisionError
    from dirk.errors import QueryError as QueryError
    from dirk.sdk.config import Config as Config
    from dirk.sdk.connection import Connection as Connection
    from dirk.sdk.gen import JSON as JSON
    from dirk.sdk.gen import BuildArg as BuildArg
    from dirk.sdk.gen import CacheSharingMode as CacheSharingMode
    from dirk.sdk.gen import CacheVolume as CacheVolume
    from dirk.sdk.gen import Changeset as Changeset
    from dirk.sdk.gen import ChangesetMergeConflict as ChangesetMergeConflict
    from dirk.sdk.gen import ChangesetsMergeConflict as ChangesetsMergeConflict
    from dirk.sdk.gen import Client as Client
    from dirk.sdk.gen import Container as Container
    from dirk.sdk.gen import DiffStat as DiffStat
    from dirk.sdk.gen import DiffStatKind as DiffStatKind
    from dirk.sdk.gen import Directory as Directory
    from dirk.sdk.gen import Engine as Engine
    from dirk.sdk.gen import EngineCache as EngineCache
    from dirk.sdk.gen import EngineCacheEntry as EngineCacheEntry
    from dirk.sdk.gen import EngineCacheEntrySet as EngineCacheEntrySet
    from dirk.sdk.gen import EnvFile as EnvFile
    from dirk.sdk.gen import EnvVariable as EnvVariable
    from dirk.sdk.gen import Error as Error
    from dirk.sdk.gen import ErrorValue as ErrorValue
    from dirk.sdk.gen import ExistsType as ExistsType
    from dirk.sdk.gen import File as File
    from dirk.sdk.gen import FileType as FileType
    from dirk.sdk.gen import GitRef as GitRef
    from dirk.sdk.gen import GitRepository as GitRepository
    from dirk.sdk.gen import HealthcheckConfig as HealthcheckConfig
    from dirk.sdk.gen import Host as Host
    from dirk.sdk.gen import ImageLayerCompression as ImageLayerCompression
    from dirk.sdk.gen import ImageMediaTypes as ImageMediaTypes
    from dirk.sdk.gen import JSONValue as JSONValue
    from dirk.sdk.gen import Label as Label
    from dirk.sdk.gen import NetworkProtocol as NetworkProtocol
    from dirk.sdk.gen import Node as Node
    from dirk.sdk.gen import Platform as Platform
    from dirk.sdk.gen import Port as Port
    from dirk.sdk.gen import PortForward as PortForward
    from dirk.sdk.gen import ReturnType as ReturnType
    from dirk.sdk.gen import SearchResult as SearchResult
    from dirk.sdk.gen import SearchSubmatch as SearchSubmatch
    from dirk.sdk.gen import Secret as Secret
    from dirk.sdk.gen import Service as Service
    from dirk.sdk.gen import Socket as Socket
    from dirk.sdk.gen import Stat as Stat
    from dirk.sdk.gen import Syncer as Syncer
    from dirk.sdk.gen import Terminal as Terminal
    from dirk.sdk.modes import Async as Async
    from dirk.sdk.modes import Either as Either
    from dirk.sdk.modes import M as M
    from dirk.sdk.modes import Mode as Mode
    from dirk.sdk.modes import Sync as Sync
    from dirk.sdk.shared import connection as connection
    from dirk.sdk.shared import dag as dag

#: Public name -> the module that defines it.
_EXPORTS = {
    "Config": "dirk.sdk.config",
    "Connection": "dirk.sdk.connection",
    **{name: "dirk.sdk.modes" for name in ("Async", "Either", "M", "Mode", "Sync")},
    **{name: "dirk.sdk.shared" for name in ("connection", "dag")},
    **{
        name: "dirk.errors"
        for name in (
            "ClientConnectionError",
            "DaggerError",
            "DirkError",
            "ExecError",
            "ProvisionError",
            "QueryError",
        )
    },
    **{
        name: "dirk.sdk.gen"
        for name in (
            "BuildArg",
            "CacheSharingMode",
            "CacheVolume",
            "Changeset",
            "ChangesetMergeConflict",
            "ChangesetsMergeConflict",
            "Client",
            "Container",
            "DiffStat",
            "DiffStatKind",
            "Directory",
            "Engine",
            "EngineCache",
            "EngineCacheEntry",
            "EngineCacheEntrySet",
            "EnvFile",
            "EnvVariable",
            "Error",
            "ErrorValue",
            "ExistsType",
            "File",
            "FileType",
            "GitRef",
            "GitRepository",
            "HealthcheckConfig",
            "Host",
            "JSON",
            "ImageLayerCompression",
            "ImageMediaTypes",
            "JSONValue",
            "Label",
            "NetworkProtocol",
            "Node",
            "Platform",
            "Port",
            "PortForward",
            "ReturnType",
            "SearchResult",
            "SearchSubmatch",
            "Secret",
            "Service",
            "Stat",
            "Socket",
            "Syncer",
            "Terminal",
        )
    },
}

__all__ = ["__version__", "errors", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module("dirk.errors")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dirk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
