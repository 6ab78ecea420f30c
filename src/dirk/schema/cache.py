"""The parsed SDL, kept beside the schema file as Python keeps byte code beside a module.

Parsing and validating the SDL was a fifth of the engine's cold start (about 100 ms of CPU);
building the schema from an already parsed document (without source locations) and trusting
it valid takes a sixth of that. So the first build parses and validates in full and, if the
schema is valid, stores the document (pickled) in `__pycache__/` next to the SDL file, named by
the digest of what it depends on: the SDL text, graphql-core's version, the Python version and
this format. A later build with the same digest loads it and skips validation; any other SDL
text or library version has another name and is built (and stored) anew. Nothing stored is
trusted beyond its name: an unreadable or broken file is ignored and replaced.

The file lives in the package directory, as trusted as the package's own byte code; where the
directory is not writable, every build is a full one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import sys
from pathlib import Path

import graphql
from graphql import DocumentNode, GraphQLSchema

log = logging.getLogger(__name__)

#: Bumped whenever what is stored, or how it is read, changes.
FORMAT = "1"
CACHE_DIR = "__pycache__"


def cache_path(sdl_path: Path, sdl: bytes) -> Path:
    """Where the parsed form of `sdl` (the text of `sdl_path`) is kept."""
    digest = hashlib.sha256()
    for part in (FORMAT, graphql.version, sys.version, sys.implementation.cache_tag or ""):
        digest.update(part.encode() + b"\0")
    digest.update(sdl)
    return sdl_path.parent / CACHE_DIR / f"{sdl_path.name}.{digest.hexdigest()[:24]}.pickle"


def build_cached(sdl_path: Path) -> GraphQLSchema:
    """The schema of the SDL file `sdl_path`, from its stored parsed form when there is one."""
    sdl = sdl_path.read_bytes()
    stored = cache_path(sdl_path, sdl)
    document = _load(stored)
    if document is not None:
        # Validated in full when it was stored (see `_build_and_store`).
        return graphql.build_ast_schema(document, assume_valid_sdl=True, assume_valid=True)
    return _build_and_store(sdl.decode("utf-8"), stored)


def _load(stored: Path) -> DocumentNode | None:
    try:
        data = stored.read_bytes()
    except OSError:
        return None
    try:
        document = pickle.loads(data)
    except Exception:  # a torn or foreign file: rebuilt and replaced
        log.warning("ignoring the unreadable parsed schema %s", stored)
        return None
    return document if isinstance(document, DocumentNode) else None


def _build_and_store(sdl: str, stored: Path) -> GraphQLSchema:
    """A full build (SDL and schema validated, errors with source locations); its document
    is stored only when the schema is valid."""
    schema = graphql.build_schema(sdl)
    if graphql.validate_schema(schema):
        return schema  # its errors show where they always did: at the first query
    document = graphql.parse(sdl, no_location=True)
    tmp = stored.with_name(f".{stored.name}.{os.getpid()}.tmp")
    try:
        stored.parent.mkdir(exist_ok=True)
        tmp.write_bytes(pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, stored)
        _remove_others(stored)
    except OSError as exc:
        log.debug("the parsed schema is not kept (%s): every start parses it", exc)
        with contextlib.suppress(OSError):
            tmp.unlink()
    return schema


def _remove_others(stored: Path) -> None:
    """Forgets the parsed forms of earlier SDL texts (each edit of the schema adds one)."""
    sdl_name = stored.name.rsplit(".", 2)[0]
    for other in stored.parent.glob(f"{sdl_name}.*.pickle"):
        if other != stored:
            with contextlib.suppress(OSError):
                other.unlink()
