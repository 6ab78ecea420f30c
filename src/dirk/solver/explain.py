"""Why did this step run again? Each executed step's inputs are remembered by its pipeline
position; a step that misses the cache is compared with the most similar earlier run at the
same position, and the difference is said in words (an argument, an env value, a file by
path, the base image's digest, a parent step).

A *position* names where a step sits in a pipeline independently of the values that feed it:
its operation type, a few identifying fields (the image reference, the host path, the
command's program, a URL) and its inputs' positions. Two runs of the same program give their
corresponding steps the same position even when an argument, a file or the base image
changed. Sibling steps can share a position (two `with_exec("sh", ...)` on one base), which
is why the earlier run compared with is the most similar one there, not simply the last.

A step's *fields* are the named parts of what its cache key covers (`keys.cache_key`), as
short strings: `args`, `env GOFLAGS`, `workdir`, `mount /src`, `input 1` (an input's key),
`file src/main.py` (a host directory's file digests, from its handler). Values are never
secret: secret values do not reach operations at all.

Recording is one small row per executed step (and the file list of a host directory read);
the comparison runs only when a job asked for it (`Job.explain`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from dirk.solver.keys import provenance_fields
from dirk.solver.opmemo import OpMemo
from dirk.solver.ops import (
    Exec,
    ExecMount,
    GitCheckout,
    HostDirectory,
    HostFile,
    HttpFetch,
    ImagePull,
    Op,
    Ref,
)
from dirk.state.db import Database

#: Earlier runs kept per position (the comparison picks the most similar of them).
RUNS_PER_POSITION = 4
#: Rows kept in all; the oldest go first once there are more.
MAX_ROWS = 50_000
#: Values longer than this are shown shortened in explanations.
_SHOWN = 60
#: Files named one by one in an explanation, per kind of change.
_FILES_SHOWN = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS step_runs (
    position TEXT NOT NULL,       -- where the step sits in a pipeline (see solver.explain)
    key TEXT NOT NULL,            -- its cache key in that run
    fields TEXT NOT NULL,         -- JSON: {"f": {name: value}, "l": {name: label}}
    at REAL NOT NULL,
    PRIMARY KEY (position, key)
);
CREATE INDEX IF NOT EXISTS step_runs_at ON step_runs(at);
"""

Fields = dict[str, str]


@attrs.frozen
class StepRun:
    """One run of a step: what its key covered (`fields`) and names for its inputs."""

    key: str
    fields: Mapping[str, str]
    #: A readable name for each `input N` field (the input step's description).
    labels: Mapping[str, str] = attrs.field(factory=dict)


def _identity(op: Op) -> list[str]:
    """The fields that say which step this is rather than what goes into it."""
    if isinstance(op, ImagePull):
        return [op.reference.split("@", 1)[0], op.platform]
    if isinstance(op, HostDirectory | HostFile):
        return [op.path]
    if isinstance(op, Exec):
        return list(op.args[:1])
    if isinstance(op, GitCheckout | HttpFetch):
        return [op.url]
    return []


def position_of(op: Op, input_positions: Sequence[str]) -> str:
    """The position of `op` given its inputs' positions in `op.inputs()` order."""
    body = json.dumps([type(op).__name__, _identity(op), list(input_positions)])
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _short(value: str, limit: int = _SHOWN) -> str:
    if value.startswith("sha256:") and len(value) == 71:
        return value[:19]  # enough to tell two digests apart
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _value(value: Any) -> str:
    """A compact string for a field value (bytes as a digest; nested values as JSON)."""
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, str):
        return value
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()[:16]
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Ref):
        return "<input>"
    if attrs.has(type(value)):
        skip = provenance_fields(type(value))
        return {
            f.name: _plain(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if f.name not in skip
        }
    return value


class _Fields:
    """Builds the fields of one operation, numbering its inputs as `op.inputs()` does."""

    def __init__(self, input_keys: Sequence[str], input_labels: Sequence[str]) -> None:
        self.fields: Fields = {}
        self.labels: Fields = {}
        self._keys = iter(input_keys)
        self._labels = iter(input_labels)
        self._n = 0

    def ref(self, name: str) -> None:
        self._n += 1
        field = f"input {self._n}" if name == "" else name
        self.fields[field] = next(self._keys)
        self.labels[field] = next(self._labels)

    def add(self, op: Op) -> None:
        skip = provenance_fields(type(op))
        for f in attrs.fields(type(op)):
            if f.name in skip:
                continue
            value = getattr(op, f.name)
            if isinstance(op, Exec) and self._exec_field(f.name, value):
                continue
            if isinstance(value, Ref):
                self.ref("")
            elif value not in ((), None, "", b""):
                self.fields[f.name] = _value(value)

    def _exec_field(self, name: str, value: Any) -> bool:
        """Exec fields named the way a user wrote them (True when handled)."""
        if name == "args":
            self.fields["command"] = shlex.join(value)
        elif name == "env":
            for pair in value:
                var, _, val = pair.partition("=")
                self.fields[f"env {var}"] = val
        elif name == "volatile_env":
            for var, _ in value:
                self.fields[f"env {var}"] = "(volatile)"
        elif name == "secret_env":
            for var, ref in value:
                self.fields[f"secret env {var}"] = _value(ref)
        elif name == "cwd":
            self.fields["workdir"] = value
        elif name == "mounts":
            for mount in value:
                self._mount(mount)
        else:
            return False
        return True

    def _mount(self, mount: ExecMount) -> None:
        described = _plain(attrs.evolve(mount, source=None))
        if mount.source is not None:
            self.ref(f"mount {mount.target}")
            self.fields[f"mount {mount.target} (options)"] = json.dumps(
                described, sort_keys=True, separators=(",", ":")
            )
        else:
            self.fields[f"mount {mount.target}"] = json.dumps(
                described, sort_keys=True, separators=(",", ":")
            )


def fields_of(
    op: Op, input_keys: Sequence[str], input_labels: Sequence[str]
) -> tuple[Fields, Fields]:
    """(fields, labels) of `op`: what its key covers, named; its inputs by key and label."""
    builder = _Fields(input_keys, input_labels)
    builder.add(op)
    return builder.fields, builder.labels


def _differences(now: Mapping[str, str], before: Mapping[str, str]) -> int:
    return sum(1 for name in set(now) | set(before) if now.get(name) != before.get(name))


def explain(current: StepRun, earlier: Iterable[StepRun]) -> str:
    """Why `current` ran: what changed since the most similar earlier run of its position."""
    runs = list(earlier)
    same = [run for run in runs if run.key == current.key]
    if same:
        return (
            "same inputs as an earlier run, whose result is not in the cache "
            "(that run failed or was cancelled, or its entry was evicted)"
        )
    if not runs:
        return "first run of this step (no earlier run at this pipeline position)"
    best = min(runs, key=lambda run: _differences(current.fields, run.fields))
    return "; ".join(_changes(current, best)) or "its cache key changed (dirk was upgraded?)"


def _changes(now: StepRun, before: StepRun) -> list[str]:
    said: list[str] = []
    files: dict[str, list[str]] = {"changed": [], "added": [], "removed": []}
    for name in sorted(set(now.fields) | set(before.fields)):
        old, new = before.fields.get(name), now.fields.get(name)
        if old == new:
            continue
        if name.startswith("file "):
            kind = "added" if old is None else "removed" if new is None else "changed"
            files[kind].append(name.removeprefix("file "))
        elif name.startswith("input ") or (name.startswith("mount ") and name in now.labels):
            label = _short(now.labels.get(name) or before.labels.get(name) or "", 4 * _SHOWN)
            said.append(
                f"{name} (`{label}`) changed"
                if name.startswith("mount ")
                else f"input `{label}` changed"
            )
        elif name == "digest" and any(n.startswith("file ") for n in now.fields):
            continue  # the files say what changed
        elif name == "digest" and isinstance(now.labels.get("kind"), str):
            said.append(f"{now.labels['kind']} changed: {_short(old or '')} → {_short(new or '')}")
        elif old is None:
            said.append(f"{name} added: {_short(new or '')!r}")
        elif new is None:
            said.append(f"{name} removed (was {_short(old)!r})")
        else:
            said.append(f"{name} changed: {_short(old)!r} → {_short(new)!r}")
    for kind in ("changed", "added", "removed"):
        paths = files[kind]
        if paths:
            shown = ", ".join(paths[:_FILES_SHOWN])
            more = f" (+{len(paths) - _FILES_SHOWN} more)" if len(paths) > _FILES_SHOWN else ""
            said.insert(0, f"file{'s' if len(paths) > 1 else ''} {kind}: {shown}{more}")
    return said


def _digest_kind(op: Op) -> str | None:
    """What the `digest` field of `op` stands for, in words."""
    if isinstance(op, ImagePull):
        return f"base image {op.reference.split('@', 1)[0]} digest"
    if isinstance(op, HostDirectory | HostFile):
        return f"host path {op.path} content"
    return None


class StepRuns:
    """The `step_runs` table: earlier runs by position, and the positions of operations."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ready = False  # the table is made on first use (key-only solvers have no db)
        self._positions: OpMemo[str] = OpMemo()
        self._writes = 0

    def position(self, top: Op) -> str:
        """The position of `top`, walking unpositioned inputs first without recursion."""
        known = self._positions
        walked: dict[Op, str] = {}  # this walk's, whatever the memo evicts meanwhile

        def position(op: Op) -> str | None:
            return walked.get(op) or known.get(op)

        stack: list[tuple[Op, bool]] = [(top, False)]
        while stack:
            op, expanded = stack.pop()
            if op in walked:
                continue
            if not expanded:
                found = known.get(op)
                if found is not None:
                    walked[op] = found
                    continue
                stack.append((op, True))
                stack.extend((r.op, False) for r in op.inputs() if position(r.op) is None)
                continue
            inputs = [position(r.op) or "" for r in op.inputs()]
            walked[op] = position_of(op, inputs)
            known.put(op, walked[op])
        return walked[top]

    def run_of(
        self,
        op: Op,
        key: str,
        input_keys: Sequence[str],
        input_labels: Sequence[str],
        extra: Mapping[str, str] | None = None,
    ) -> StepRun:
        """This run of `op` as a record (`extra`: fields its handler adds, e.g. files)."""
        fields, labels = fields_of(op, input_keys, input_labels)
        kind = _digest_kind(op)
        if kind is not None:
            labels["kind"] = kind
        if extra:
            fields.update(extra)
        return StepRun(key, fields, labels)

    def _table(self) -> Database:
        if not self._ready:
            for statement in _SCHEMA.strip().split(";\n"):
                self._db.execute(statement)
            self._ready = True
        return self._db

    def earlier(self, position: str) -> list[StepRun]:
        rows = self._table().execute(
            "SELECT key, fields FROM step_runs WHERE position = ? ORDER BY at DESC LIMIT ?",
            (position, RUNS_PER_POSITION),
        )
        runs = []
        for key, text in rows:
            body = json.loads(text)
            runs.append(StepRun(str(key), body["f"], body["l"]))
        return runs

    def record(self, position: str, run: StepRun) -> None:
        """Remember `run` at `position`, keeping the newest few there and a bounded table."""
        body = json.dumps({"f": dict(run.fields), "l": dict(run.labels)}, separators=(",", ":"))
        db = self._table()
        db.execute(
            "INSERT OR REPLACE INTO step_runs(position, key, fields, at) VALUES (?, ?, ?, ?)",
            (position, run.key, body, time.time()),
        )
        db.execute(
            "DELETE FROM step_runs WHERE position = ? AND key NOT IN "
            "(SELECT key FROM step_runs WHERE position = ? ORDER BY at DESC LIMIT ?)",
            (position, position, RUNS_PER_POSITION),
        )
        self._writes += 1
        if self._writes % 1000 == 0:
            db.execute(
                "DELETE FROM step_runs WHERE at <= (SELECT at FROM step_runs "
                "ORDER BY at DESC LIMIT 1 OFFSET ?)",
                (MAX_ROWS,),
            )
