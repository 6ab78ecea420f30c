"""`Query.file`, `Query.id`, `Query.json`, `JSONValue` and `File.asJSON` through the dirk SDK
against a real `dirk engine`: a file made from contents used in a container, the root's ID,
and JSON built in values and read from files a container wrote."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import InvalidJSONError, JSONFieldNotFoundError, JSONTypeError
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def config(engine: RunningEngine, workdir: Path) -> dirk.Config:
    return dirk.Config(engine=engine.socket_url, workdir=workdir)


def test_query_file_in_a_container_and_exported(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex
    with dirk.Connection(config(engine, tmp_path)) as client:
        made = client.file("run.sh", f"echo {nonce}\n", permissions=0o755)
        assert (made.name(), made.contents(), made.size()) == ("run.sh", f"echo {nonce}\n", 38)
        out = (
            client.container()
            .from_(busybox_ref)
            .with_file("/bin/run.sh", made)
            .with_exec(["sh", "-c", "stat -c %a /bin/run.sh && run.sh"])
            .stdout()
        )
        assert out == f"755\n{nonce}\n"
        made.export(str(tmp_path / "out.sh"))
        assert (tmp_path / "out.sh").read_text() == f"echo {nonce}\n"
        with pytest.raises(dirk.errors.InvalidArgumentError, match="one path component"):
            client.file("a/b", "x").sync()


def test_query_id_names_the_root(engine: RunningEngine, tmp_path: Path) -> None:
    with dirk.Connection(config(engine, tmp_path)) as client:
        root = client.id()
        assert root.startswith("dirk:Query:") and client.id() == root
        assert client.node(root).id() == root


def test_json_values_built_and_read_from_a_container_file(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex
    with dirk.Connection(config(engine, tmp_path)) as client:
        empty = client.json()
        assert empty.contents() == "null"
        doc = (
            empty.with_field(["app", "name"], empty.new_string("dirk"))
            .with_field(["app", "replicas"], empty.new_integer(3))
            .with_field(["debug"], empty.new_boolean(False))
        )
        assert json.loads(doc.contents()) == {
            "app": {"name": "dirk", "replicas": 3},
            "debug": False,
        }
        assert doc.fields() == ["app", "debug"]
        assert doc.field(["app", "replicas"]).as_integer() == 3
        assert doc.field(["debug"]).as_boolean() is False
        assert json.loads(doc.contents(pretty=True)) == json.loads(doc.contents())
        assert "\n    " in doc.contents(pretty=True, indent="    ")

        # A container writes JSON; asJSON reads the file it left.
        written = (
            client.container()
            .from_(busybox_ref)
            .with_exec(
                ["sh", "-c", f'printf \'{{"token": "{nonce}", "tags": ["a", "b"]}}\' > /o.json']
            )
            .file("/o.json")
            .as_json()
        )
        assert written.field(["token"]).as_string() == nonce
        assert [t.as_string() for t in written.field(["tags"]).as_array()] == ["a", "b"]

        # Errors come back as dirk's classes, naming the problem.
        with pytest.raises(InvalidJSONError, match="not valid JSON"):
            client.file("bad.json", "{oops").as_json().contents()
        with pytest.raises(InvalidJSONError, match="not valid JSON"):
            empty.with_contents("[1,").contents()
        with pytest.raises(JSONTypeError, match="is a number, not a string"):
            doc.field(["app", "replicas"]).as_string()
        with pytest.raises(JSONFieldNotFoundError, match="no field 'nope'"):
            doc.field(["app", "nope"]).as_string()
