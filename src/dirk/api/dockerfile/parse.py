"""Dockerfile text -> stages of instructions, with `dockerfile-parse` doing the lexing
(comments, line continuations). Nothing is expanded or checked against the context here."""

from __future__ import annotations

import io
import json
import re

import attrs
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

from dirk.errors import DockerfileError

#: Instructions the frontend builds (MAINTAINER is read and ignored, as it is deprecated).
KNOWN = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
_HEREDOC = re.compile(r"(?<!<)<<-?\s*[\"']?[A-Za-z_][A-Za-z0-9_]*[\"']?")
_FLAG = re.compile(r"\s*--([A-Za-z][A-Za-z0-9-]*)(?:=(\"[^\"]*\"|'[^']*'|\S*))?(?=\s|$)")


@attrs.frozen
class Instruction:
    """One instruction; `line` is 1-based, `value` is the text after the keyword."""

    line: int
    name: str
    value: str

    def error(self, problem: str) -> DockerfileError:
        return DockerfileError(f"Dockerfile line {self.line} ({self.name}): {problem}")


@attrs.frozen
class Stage:
    """A `FROM` and the instructions up to the next one; `name` is lower-case ("" unnamed)."""

    index: int
    name: str
    base: str
    platform: str
    start: Instruction
    instructions: tuple[Instruction, ...]

    def describe(self) -> str:
        return f"stage {self.name!r}" if self.name else f"stage {self.index}"


@attrs.frozen
class Dockerfile:
    """The `ARG`s before the first `FROM` (usable in `FROM` lines) and the stages."""

    global_args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]

    def stage(self, ref: str) -> Stage | None:
        """The stage a `FROM`/`--from=` names: by name (case-insensitive) or index."""
        wanted = ref.lower()
        for stage in self.stages:
            if stage.name and stage.name == wanted:
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


def parse_flags(inst: Instruction, value: str | None = None) -> tuple[dict[str, list[str]], str]:
    """The leading `--name[=value]` flags of an instruction and the text after them."""
    text = inst.value if value is None else value
    flags: dict[str, list[str]] = {}
    pos = 0
    while match := _FLAG.match(text, pos):
        raw = match.group(2)
        if raw is not None and len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
        flags.setdefault(match.group(1).lower(), []).append(raw if raw is not None else "")
        pos = match.end()
    return flags, text[pos:].strip()


def json_form(text: str) -> list[str] | None:
    """The exec form (`["a", "b"]`) of an instruction, or None for the shell form."""
    if not text.startswith("["):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
        return None
    return parsed


def parse(text: str) -> Dockerfile:
    parser = DockerfileParser(fileobj=io.BytesIO(), env_replace=False)
    parser.content = text
    instructions = [
        Instruction(int(item["startline"]) + 1, str(item["instruction"]).upper(), item["value"])
        for item in parser.structure
        if item["instruction"] != "COMMENT"
    ]
    global_args: list[Instruction] = []
    stages: list[tuple[Instruction, list[Instruction]]] = []
    for inst in instructions:
        if inst.name in ("RUN", "COPY", "ADD") and _HEREDOC.search(inst.value):
            raise inst.error(
                "heredocs (<<EOF) are not supported by dirk's Dockerfile frontend: put the "
                "script or file in the build context and COPY it, or use RUN sh -c '...'"
            )
        if inst.name == "ONBUILD":
            raise inst.error(
                "ONBUILD is not supported by dirk: write the instructions into the Dockerfile "
                "of the image that uses this one"
            )
        if inst.name not in KNOWN:
            raise inst.error(f"unknown instruction {inst.name}")
        if inst.name == "FROM":
            stages.append((inst, []))
        elif not stages:
            if inst.name != "ARG":
                raise inst.error("only ARG may come before the first FROM")
            global_args.append(inst)
        else:
            stages[-1][1].append(inst)
    if not stages:
        raise DockerfileError("the Dockerfile has no FROM instruction: nothing to build")
    return Dockerfile(tuple(global_args), tuple(_stage(i, s, b) for i, (s, b) in enumerate(stages)))


def _stage(index: int, start: Instruction, body: list[Instruction]) -> Stage:
    flags, rest = parse_flags(start)
    unknown = set(flags) - {"platform"}
    if unknown:
        raise start.error(f"unknown flag --{sorted(unknown)[0]} (FROM takes --platform)")
    words = rest.split()
    name = ""
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not re.fullmatch(r"[a-z][a-z0-9._-]*", name):
            raise start.error(f"invalid stage name {words[2]!r}")
    elif len(words) != 1:
        raise start.error("expected FROM [--platform=<platform>] <image> [AS <name>]")
    platform = flags.get("platform", [""])[-1]
    return Stage(index, name, words[0], platform, start, tuple(body))
