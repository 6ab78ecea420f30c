"""One handler per operation type; the solver looks them up here and nowhere else.

To add an operation: its class in `ops.py` (and in the `Op` union), a handler module here,
and one line in `HANDLERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dirk.solver.handlers.base import Handler, Key, Step, Workers
from dirk.solver.handlers.exec import ExecHandler
from dirk.solver.handlers.fileops import FileOpHandler
from dirk.solver.handlers.git import GitCheckoutHandler
from dirk.solver.handlers.host import HostDirectoryHandler, HostFileHandler
from dirk.solver.handlers.http import HttpFetchHandler
from dirk.solver.handlers.image_out import (
    DockerImageSaveHandler,
    ImageImportHandler,
    ImageTarballHandler,
)
from dirk.solver.handlers.image_pull import ImagePullHandler
from dirk.solver.handlers.scratch import ScratchHandler
from dirk.solver.handlers.treeops import TreeOpHandler
from dirk.solver.ops import (
    ApplyChanges,
    ApplyPatch,
    Chown,
    Copy,
    DiffTrees,
    DockerImageSave,
    Exec,
    ExtractArchive,
    GitCheckout,
    HostDirectory,
    HostFile,
    HttpFetch,
    ImageImport,
    ImagePull,
    ImageTarball,
    MergeChanges,
    MkDir,
    MkFile,
    Remove,
    RenderEnvFile,
    Scratch,
    SetTimestamps,
    Symlink,
)

#: Makes the handler of one operation type from the engine's workers.
HandlerFactory = Callable[[Workers], Handler[Any]]

#: Operation type -> its handler. One line per operation.
HANDLERS: Mapping[type, HandlerFactory] = {
    Scratch: ScratchHandler,
    ImagePull: ImagePullHandler,
    HostDirectory: HostDirectoryHandler,
    HostFile: HostFileHandler,
    Exec: ExecHandler,
    GitCheckout: GitCheckoutHandler,
    HttpFetch: HttpFetchHandler,
    MkFile: FileOpHandler,
    MkDir: FileOpHandler,
    Remove: FileOpHandler,
    Copy: FileOpHandler,
    ExtractArchive: FileOpHandler,
    Symlink: TreeOpHandler,
    SetTimestamps: TreeOpHandler,
    Chown: TreeOpHandler,
    ApplyPatch: TreeOpHandler,
    DiffTrees: TreeOpHandler,
    ApplyChanges: TreeOpHandler,
    MergeChanges: TreeOpHandler,
    RenderEnvFile: TreeOpHandler,
    ImageTarball: ImageTarballHandler,
    ImageImport: ImageImportHandler,
    DockerImageSave: DockerImageSaveHandler,
}

__all__ = ["HANDLERS", "Handler", "HandlerFactory", "Key", "Step", "Workers"]
