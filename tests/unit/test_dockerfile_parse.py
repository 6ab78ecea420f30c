"""The Dockerfile frontend's pure parts: word expansion, .dockerignore patterns, stages."""

from __future__ import annotations

import pytest

from dirk.api.directory import SCRATCH
from dirk.api.dockerfile.ignore import exclude_patterns
from dirk.api.dockerfile.parse import Instruction, json_form, parse, parse_flags
from dirk.api.dockerfile.scope import StageState
from dirk.api.dockerfile.secrets import secret_mount
from dirk.api.dockerfile.words import process_word, process_words
from dirk.api.values import Container, Secret
from dirk.errors import DockerfileError
from dirk.solver.ops import SecretRef
from dirk.workers.snapshots.tree import PathFilter

ENV = {"A": "1", "EMPTY": "", "NAME": "my app"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("$A ${A} x$A", ["1", "1", "x1"]),
        ("${MISSING:-fallback} ${EMPTY:-e} ${EMPTY-kept}", ["fallback", "e"]),
        ("${A:+set} ${MISSING:+no}", ["set"]),
        ("\"$NAME\" '$NAME'", ["my app", "$NAME"]),
        (r"a\ b \$A", ["a b", "$A"]),
        ('key="two words" k2=$A', ["key=two words", "k2=1"]),
        ('""', [""]),
        ("${MISSING:-$A/x}", ["1/x"]),
    ],
)
def test_words_expand_like_docker(text: str, words: list[str]) -> None:
    assert process_words(text, ENV) == words


def test_a_word_keeps_its_spaces_and_bad_substitutions_fail() -> None:
    assert process_word("a  $A  b", ENV) == "a  1  b"
    with pytest.raises(DockerfileError, match="unsupported substitution"):
        process_words("${A/x/y}", ENV)
    with pytest.raises(DockerfileError, match="unmatched double quote"):
        process_words('"open', ENV)


def test_dockerignore_patterns_are_anchored_and_keep_exceptions() -> None:
    patterns = exclude_patterns("# comment\n\n*.md\n./build/\n**/*.log\nbig\n!big/keep.txt\n")
    assert patterns == ("/*.md", "/build", "/**/*.log", "/big", "!/big/keep.txt")
    filt = PathFilter(exclude=patterns)
    assert filt.excluded("README.md", False)
    assert not filt.excluded("docs/README.md", False), "*.md only matches at the top"
    assert filt.excluded("a/b/c.log", False)
    assert filt.excluded("build", True)
    assert filt.excluded("big/data.bin", False)
    assert not filt.excluded("big/keep.txt", False)
    assert filt.reincludes


def test_stages_flags_and_forms() -> None:
    dockerfile = parse(
        "# syntax=docker/dockerfile:1\nARG BASE=busybox\n"
        "FROM --platform=$BUILDPLATFORM $BASE AS Build\n"
        "RUN --mount=type=cache,target=/root/.cache \\\n    echo hi\n"
        'FROM build\nCMD ["sh", "-c", "true"]\n'
    )
    assert [a.value for a in dockerfile.global_args] == ["BASE=busybox"]
    first, second = dockerfile.stages
    assert (first.name, first.base, first.platform) == ("build", "$BASE", "$BUILDPLATFORM")
    run = first.instructions[0]
    assert run.line == 4
    assert parse_flags(run) == ({"mount": ["type=cache,target=/root/.cache"]}, "echo hi")
    assert dockerfile.stage("BUILD") is first and dockerfile.stage("1") is second
    assert json_form(second.instructions[0].value) == ["sh", "-c", "true"]
    assert json_form("[not json") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("RUN true\n", r"line 1 \(RUN\): only ARG may come before the first FROM"),
        ("FROM a\nONBUILD RUN x\n", r"line 2 \(ONBUILD\): ONBUILD is not supported"),
        ("FROM a\nRUN <<EOF\necho\nEOF\n", r"line 2 \(RUN\): heredocs"),
        ("FROM a\nFROBNICATE x\n", r"line 2 \(FROBNICATE\): unknown instruction"),
        ("FROM a b c d\n", r"line 1 \(FROM\): expected FROM"),
        ("# nothing\n", "no FROM instruction"),
    ],
)
def test_mistakes_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(DockerfileError, match=problem):
        parse(text)


def test_secret_mounts_carry_only_the_reference() -> None:
    token = Secret("token", "", SecretRef("name:token", "h1"))
    inst = Instruction(3, "RUN", "--mount=type=secret,id=token cat /run/secrets/token")
    state = StageState(Container(rootfs=SCRATCH, platform="linux/amd64", workdir="/src"))
    mounted = secret_mount(inst, state, {"type": "secret", "id": "token"}, {"token": token})
    (mount,) = mounted.container.mounts
    assert (mount.target, mount.kind, mount.secret, mount.mode) == (
        "/run/secrets/token",
        "secret",
        token.ref,
        0o400,
    )
    as_env = secret_mount(inst, state, {"id": "token", "env": "TOKEN"}, {"token": token})
    assert as_env.container.secret_env == (("TOKEN", token.ref),)
    assert as_env.container.mounts == ()
    optional = {"id": "other", "required": "false"}
    assert secret_mount(inst, state, optional, {"token": token}) is state
    with pytest.raises(DockerfileError, match=r"line 3 \(RUN\): the secret 'other' is required"):
        secret_mount(inst, state, {"id": "other", "required": "true"}, {"token": token})
