"""Directory, File and Host resolvers against a stand-in solver."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirk.errors import HostPathError
from dirk.solver.ops import Copy, HostDirectory, HostFile, MkDir, MkFile, Ref, Remove, Scratch

from .api_fakes import Api

pytestmark = pytest.mark.anyio


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


async def test_directory_chain_builds_file_operations(api: Api) -> None:
    data = await api.data(
        "{ directory {"
        ' withNewFile(path: "a/b.txt", contents: "hi") {'
        ' withNewDirectory(path: "d") { withoutFile(path: "a/b.txt") {'
        ' directory(path: "a") { id file(path: "c") { id } } } } } } }'
    )
    node = data["directory"]["withNewFile"]["withNewDirectory"]["withoutFile"]["directory"]
    sub = api.value(node["id"])
    assert sub.subdir == "/a"
    remove = sub.ref.op
    assert isinstance(remove, Remove) and remove.path == "/a/b.txt"
    mkdir = remove.base.op
    assert isinstance(mkdir, MkDir) and mkdir.path == "/d" and mkdir.mode == 0o644
    mkfile = mkdir.base.op
    assert isinstance(mkfile, MkFile)
    assert (mkfile.path, mkfile.contents, mkfile.mode) == ("/a/b.txt", b"hi", 0o644)
    assert mkfile.base == Ref(Scratch())
    assert api.value(node["file"]["id"]).path == "/a/c"
    assert api.solver.solved == []


async def test_with_directory_and_with_file_copy_with_filters(api: Api, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "f.txt").write_text("x")
    ids = await api.data(
        '{ host { directory(path: "src", exclude: ["*.pyc"]) { id } file(path: "f.txt") { id } } }'
    )
    src, f = ids["host"]["directory"]["id"], ids["host"]["file"]["id"]
    data = await api.data(
        "query($src: ID!, $f: ID!) { directory {"
        ' withDirectory(path: "s", source: $src, include: ["**/*.py"], owner: "1:2")'
        ' { withFile(path: "s/f", source: $f, permissions: 493) { id } } } }',
        src=src,
        f=f,
    )
    value = api.value(data["directory"]["withDirectory"]["withFile"]["id"])
    with_file = value.ref.op
    assert isinstance(with_file, Copy)
    assert (with_file.dest_path, with_file.source_path, with_file.mode) == ("/s/f", "/f.txt", 0o755)
    assert with_file.source.op == HostFile(str(tmp_path / "f.txt"))
    with_dir = with_file.base.op
    assert isinstance(with_dir, Copy)
    assert with_dir.include == ("**/*.py",) and with_dir.owner == "1:2"
    assert with_dir.source.op == HostDirectory(str(tmp_path / "src"), exclude=("*.pyc",))


async def test_host_paths_resolve_against_the_session_workdir(api: Api, tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    data = await api.data('{ host { directory(path: "proj/../proj") { id } } }')
    op = api.value(data["host"]["directory"]["id"]).ref.op
    assert op == HostDirectory(str(tmp_path / "proj"))


async def test_missing_host_paths_name_the_absolute_path(api: Api, tmp_path: Path) -> None:
    result = await api.run('{ host { directory(path: "nope") { id } } }')
    assert result.errors is not None
    error = result.errors[0]
    assert isinstance(error.original_error, HostPathError)
    assert error.message.startswith(f"{tmp_path / 'nope'}: no such file or directory")
    (tmp_path / "file").write_text("x")
    result = await api.run('{ host { directory(path: "file") { id } } }')
    assert result.errors and "is not a directory" in result.errors[0].message
    result = await api.run('{ host { file(path: ".") { id } } }')
    assert result.errors and "is not a regular file" in result.errors[0].message


async def test_gitignore_reaches_the_host_directory_operation(api: Api, tmp_path: Path) -> None:
    data = await api.data('{ host { directory(path: ".", gitignore: true) { id } } }')
    op = api.value(data["host"]["directory"]["id"]).ref.op
    assert isinstance(op, HostDirectory) and op.gitignore is True


async def test_paths_may_not_leave_a_directory(api: Api) -> None:
    result = await api.run('{ directory { directory(path: "a") { file(path: "../b") { id } } } }')
    assert result.errors and "leaves its directory" in result.errors[0].message


async def test_file_leaves_and_entries(api: Api) -> None:
    api.solver.files.update(
        {"/d/one.txt": b"l1\nl2\nl3\n", "/d/sub/two": b"", "/d/z": b"\xffbinary"}
    )
    data = await api.data(
        '{ directory { directory(path: "d") { entries sync'
        ' file(path: "one.txt") { name size contents'
        " part: contents(offsetLines: 1, limitLines: 1) sync } } } }"
    )
    d = data["directory"]["directory"]
    assert d["entries"] == ["one.txt", "sub/", "z"]
    assert d["sync"].startswith("dirk:Directory:")
    f = d["file"]
    assert (f["name"], f["size"], f["contents"], f["part"]) == (
        "one.txt",
        9,
        "l1\nl2\nl3\n",
        "l2\n",
    )
    assert f["sync"].startswith("dirk:File:")
    binary = await api.data('{ directory { file(path: "/d/z") { contents } } }')
    assert binary["directory"]["file"]["contents"] == "\ufffdbinary"


async def test_missing_file_size_is_an_error(api: Api) -> None:
    result = await api.run('{ directory { file(path: "ghost") { size } } }')
    assert result.errors and "/ghost: no such file or directory" in result.errors[0].message


async def test_cache_volume_ids_are_stable_per_key(api: Api) -> None:
    a = await api.data('{ cacheVolume(key: "k") { id } }')
    b = await api.data('{ cacheVolume(key: "k", sharing: SHARED) { id } }')
    c = await api.data('{ cacheVolume(key: "other") { id } }')
    assert a == b != c
    assert api.value(a["cacheVolume"]["id"]).key == "k"
    result = await api.run('{ cacheVolume(key: "") { id } }')
    assert result.errors and "non-empty key" in result.errors[0].message


async def test_version_and_default_platform(api: Api) -> None:
    data = await api.data("{ version defaultPlatform }")
    assert data["version"]
    assert data["defaultPlatform"].startswith("linux/")
