"""`COPY` and `ADD`: sources (globs expanded) and the copies they become.

Each source becomes the SDK's `withDirectory`/`withFile` on the stage's container (the same
`Copy` operation): a directory's contents go into the destination, a file goes to the
destination, or into it when the destination ends with `/`. `--chown` names are resolved in
the destination's /etc/passwd, `--chmod` applies to every copied entry. `ADD` of a local tar
archive (plain, gzip, bzip2, xz) unpacks it into the destination instead (`ExtractArchive`).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Awaitable, Callable

import attrs

from dirk.api.container_ops import write_at
from dirk.api.context import RequestContext
from dirk.api.directory import with_directory
from dirk.api.dockerfile.parse import Instruction, json_form, parse_flags
from dirk.api.dockerfile.scope import StageState
from dirk.api.dockerfile.words import process_word, process_words
from dirk.api.paths import container_path, inside
from dirk.api.values import Container, Directory
from dirk.errors import InvalidArgumentError
from dirk.solver.ops import ExtractArchive, Ref

SourceRoot = Callable[[str | None], Awaitable[Directory]]
_GLOB = re.compile(r"[*?\[]")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_FLAGS = {"COPY": {"from", "chown", "chmod", "link", "exclude"}, "ADD": {"chown", "chmod", "link"}}
_ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


@attrs.frozen
class Source:
    """One path of a source root; `kind` is "dir", "file", ... or "" when not looked at."""

    path: str
    kind: str = ""


async def copy(
    ctx: RequestContext,
    inst: Instruction,
    state: StageState,
    source_root: SourceRoot,
) -> StageState:
    flags, rest = parse_flags(inst)
    unknown = set(flags) - _FLAGS[inst.name]
    if unknown:
        allowed = ", ".join(f"--{f}" for f in sorted(_FLAGS[inst.name]))
        raise inst.error(f"unknown flag --{sorted(unknown)[0]} ({inst.name} takes {allowed})")
    if "parents" in flags:
        raise inst.error("COPY --parents is not supported by dirk")
    lookup = state.lookup()
    words = json_form(rest)
    words = [process_word(w, lookup) for w in words] if words is not None else None
    if words is None:
        words = process_words(rest, lookup)
    if len(words) < 2:
        raise inst.error(f"{inst.name} needs at least one source and a destination")
    *raw_sources, raw_dest = words
    c = state.container
    dest = container_path(c.workdir, raw_dest)
    dest_is_dir = raw_dest.endswith("/") or raw_dest in (".", "..") or raw_dest.endswith("/.")
    owner = process_word(flags["chown"][-1], lookup) if "chown" in flags else ""
    mode = _mode(inst, flags["chmod"][-1]) if "chmod" in flags else None
    exclude = tuple(p for f in flags.get("exclude", []) for p in [process_word(f, lookup)])
    origin = flags["from"][-1] if "from" in flags else None
    for raw in raw_sources:
        if _URL.match(raw):
            raise inst.error(
                f"{inst.name} of a URL ({raw}) is not supported by dirk: download it in a RUN "
                "step (curl, wget) or put the file in the build context"
            )
    root = await source_root(process_word(origin, lookup) if origin else None)
    sources: list[Source] = []
    for raw in raw_sources:
        sources.extend(await _expand(ctx, inst, root, raw, looked_up=origin is None))
    if len(sources) > 1 and not dest_is_dir:
        raise inst.error(
            f"{inst.name} with more than one source needs a directory destination ending "
            f"with '/': {raw_dest!r}"
        )
    if dest_is_dir and any(s.kind == "" for s in sources):
        sources = [await _looked_up(ctx, inst, root, s.path, s.path) for s in sources]
    for source in sources:
        src = Directory(root.ref, source.path)
        archive = inst.name == "ADD" and source.kind == "file"
        if archive and await _is_archive(ctx, root, source.path):
            state = attrs.evolve(state, container=_extracted(state.container, root, source, dest))
            continue
        target = dest
        if source.kind != "dir" and dest_is_dir:
            target = posixpath.join(dest, posixpath.basename(source.path))

        def change(d: Directory, rel: str, src: Directory = src) -> Directory:
            return with_directory(d, rel, src, exclude=exclude, owner=owner, mode=mode)

        state = attrs.evolve(state, container=write_at(state.container, target, change))
    return state


def _extracted(c: Container, root: Directory, source: Source, dest: str) -> Container:
    """`c` with the archive `source` unpacked into `dest` (ADD keeps the archive's owners)."""

    def change(d: Directory, rel: str) -> Directory:
        op = ExtractArchive(d.ref, inside(d.subdir, rel), root.ref, source.path)
        return Directory(Ref(op), d.subdir)

    return write_at(c, dest, change)


def _mode(inst: Instruction, text: str) -> int:
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise inst.error(f"--chmod={text}: dirk takes an octal mode such as 0755")
    return int(text, 8)


async def _expand(
    ctx: RequestContext, inst: Instruction, root: Directory, raw: str, looked_up: bool
) -> list[Source]:
    """The sources one word names: the glob's matches (sorted), or the path itself (checked
    to exist when `looked_up`: the context is already read, a stage would have to be built)."""
    try:
        path = inside(root.subdir, raw)
    except InvalidArgumentError:
        raise inst.error(f"source {raw!r} is outside the build context") from None
    if not _GLOB.search(raw):
        return [await _looked_up(ctx, inst, root, path, raw)] if looked_up else [Source(path)]
    matches = [root.subdir]
    kinds: dict[str, str] = {}
    parts = [p for p in path[len(root.subdir) :].split("/") if p]
    for part in parts:
        found: list[str] = []
        for base in matches:
            if not _GLOB.search(part):
                found.append(posixpath.join(base, part))
                continue
            if kinds.get(base, "dir") != "dir" or not await _is_dir(ctx, root, base):
                continue
            for name, kind in await ctx.solver.list_entries(ctx.job, root.ref, base):
                if fnmatch.fnmatchcase(name, part):
                    full = posixpath.join(base, name)
                    kinds[full] = kind
                    found.append(full)
        matches = found
    if not matches:
        raise inst.error(f"no source files match {raw!r}")
    return [
        Source(m, kinds[m]) if m in kinds else await _looked_up(ctx, inst, root, m, raw)
        for m in sorted(matches)
    ]


async def _is_dir(ctx: RequestContext, root: Directory, path: str) -> bool:
    info = await ctx.solver.stat(ctx.job, root.ref, path)
    return info is not None and info.kind == "dir"


async def _looked_up(
    ctx: RequestContext, inst: Instruction, root: Directory, path: str, shown: str
) -> Source:
    info = await ctx.solver.stat(ctx.job, root.ref, path)
    if info is None:
        raise inst.error(f"source {shown} does not exist")
    return Source(path, str(info.kind))


async def _is_archive(ctx: RequestContext, root: Directory, path: str) -> bool:
    head = await ctx.solver.read_file(ctx.job, root.ref, path, limit=512)
    return head.startswith(_ARCHIVE_MAGIC) or head[257:262] == b"ustar"
