"""Call identities, ID strings and the path rules of the API layer."""

from __future__ import annotations

import pytest

from dirk.api.ids import ROOT, format_id, identity, keyed_identity, parse_id
from dirk.api.paths import container_path, expand, inside, relative_to
from dirk.errors import InvalidArgumentError, UnknownIDError


def test_identity_depends_on_parent_field_and_every_argument() -> None:
    base = identity(ROOT, "container", {"platform": None})
    assert base == identity(ROOT, "container", {"platform": None})
    assert base != identity(ROOT, "container", {"platform": "linux/arm64"})
    assert base != identity("other", "container", {"platform": None})
    assert base != identity(ROOT, "directory", {"platform": None})
    # argument order does not matter
    assert identity("p", "f", {"a": 1, "b": [1, 2]}) == identity("p", "f", {"b": [1, 2], "a": 1})


def test_ids_are_opaque_non_numeric_and_round_trip() -> None:
    ident = identity(ROOT, "container", {})
    text = format_id("Container", ident)
    assert text.startswith("dirk:Container:")
    assert not text.isdigit()
    assert parse_id(text) == ("Container", ident)
    assert parse_id(text, "Container") == ("Container", ident)


@pytest.mark.parametrize("bad", ["", "42", "dirk:Container:short", "ctr:abc", 17, None])
def test_malformed_ids_are_rejected_with_the_session_hint(bad: object) -> None:
    with pytest.raises(UnknownIDError, match="valid only in the session that created them"):
        parse_id(bad)


def test_an_id_of_another_type_is_rejected() -> None:
    text = format_id("Directory", identity(ROOT, "directory", {}))
    with pytest.raises(UnknownIDError, match="is a Directory, but a Container is expected"):
        parse_id(text, "Container")


def test_keyed_identity_hides_the_arguments() -> None:
    args = {"name": "token", "v": "hunter2"}
    assert keyed_identity(b"k1", ROOT, "setSecret", args) != keyed_identity(
        b"k2", ROOT, "setSecret", args
    )
    assert keyed_identity(b"k1", ROOT, "setSecret", args) != identity(ROOT, "setSecret", args)


def test_container_paths_resolve_against_the_workdir() -> None:
    assert container_path("/app", "src/main.py") == "/app/src/main.py"
    assert container_path("", "x") == "/x"
    assert container_path("/app", "/etc/../etc/hosts") == "/etc/hosts"
    assert container_path("/app", "..") == "/"
    assert container_path("/", "//double") == "/double"
    with pytest.raises(InvalidArgumentError):
        container_path("/app", "")


def test_directory_paths_stay_inside_their_directory() -> None:
    assert inside("/", "a/b") == "/a/b"
    assert inside("/src", "/main.py") == "/src/main.py"
    assert inside("/src", ".") == "/src"
    assert inside("/src", "") == "/src"
    assert inside("/", "../x") == "/x"
    with pytest.raises(InvalidArgumentError, match="leaves its directory"):
        inside("/src", "../etc/passwd")


def test_relative_to() -> None:
    assert relative_to("/cache", "/cache") == ""
    assert relative_to("/cache", "/cache/a/b") == "a/b"
    assert relative_to("/cache", "/cachet") is None
    assert relative_to("/", "/x") == "x"


def test_expand_replaces_both_forms_and_blanks_unset() -> None:
    env = {"HOME": "/root", "N": "1"}
    assert expand("$HOME/x-${N}-$MISSING.", env) == "/root/x-1-."
