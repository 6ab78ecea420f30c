"""Host files in and out, and reads of directories and files, end to end: a real engine
(registry, containers, cache) driven through the API schema as the wire server does."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import Session
from tests.integration.schema_client import SchemaClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Client(SchemaClient):
    def __init__(self, engine: EngineCore, workdir: Path) -> None:
        super().__init__(engine, Session("token", workdir, {}, time.time()))

    async def id_of(self, query: str, **variables: Any) -> str:
        data = await self.data(query, **variables)
        while isinstance(data, dict) and "id" not in data:
            (data,) = data.values()
        assert isinstance(data, dict)
        return str(data["id"])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def client(engine: EngineCore, workdir: Path) -> Client:
    return Client(engine, workdir)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


PROJECT = {
    ".gitignore": "*.log\nbuild/\n/secret.txt\n",
    "main.py": "print('hello')\n",
    "app.log": "noise\n",
    "secret.txt": "top secret\n",
    "build/out.bin": "built\n",
    "pkg/.gitignore": "!keep.log\n*.tmp\n",
    "pkg/keep.log": "kept log\n",
    "pkg/scratch.tmp": "tmp\n",
    "pkg/mod.py": "def hello():\n    return 'hello'\n",
    "pkg/secret.txt": "not anchored here\n",
    "docs/guide.md": "# Guide\nhello docs\n",
}


async def test_host_directory_gitignore_include_exclude(
    client: Client, workdir: Path, busybox_ref: str
) -> None:
    _write(workdir, PROJECT)
    data = await client.data(
        '{ host { all: directory(path: ".", gitignore: true) { glob(pattern: "**") }'
        ' py: directory(path: ".", include: ["**/*.py"]) { glob(pattern: "**") }'
        ' noDocs: directory(path: ".", exclude: ["docs/", "*.log", "!pkg/keep.log"])'
        " { entries } } }"
    )
    assert data["host"]["all"]["glob"] == [
        ".gitignore",
        "docs/",
        "docs/guide.md",
        "main.py",
        "pkg/",
        "pkg/.gitignore",
        "pkg/keep.log",
        "pkg/mod.py",
        "pkg/secret.txt",
    ]
    assert data["host"]["py"]["glob"] == ["main.py", "pkg/", "pkg/mod.py"]
    assert data["host"]["noDocs"]["entries"] == [
        ".gitignore",
        "build/",
        "main.py",
        "pkg/",
        "secret.txt",
    ]
    # The same filters on copies between directories and into a container.
    src = await client.id_of('{ host { directory(path: ".") { id } } }')
    data = await client.data(
        "query($src: ID!, $image: String!) {"
        ' directory { withDirectory(path: "x", source: $src, gitignore: true) {'
        ' glob(pattern: "x/**/*.log") filter(include: ["x/pkg/"]) { glob(pattern: "**") } } }'
        " container { from(address: $image) {"
        ' withDirectory(path: "/src", source: $src, gitignore: true, exclude: ["docs/"]) {'
        ' withExec(args: ["sh", "-c", "cd /src && find . -type f | sort"]) { stdout } } } } }',
        src=src,
        image=busybox_ref,
    )
    copied = data["directory"]["withDirectory"]
    assert copied["glob"] == ["x/pkg/keep.log"]
    assert copied["filter"]["glob"] == [
        "x/",
        "x/pkg/",
        "x/pkg/.gitignore",
        "x/pkg/keep.log",
        "x/pkg/mod.py",
        "x/pkg/secret.txt",
    ]
    found = data["container"]["from"]["withDirectory"]["withExec"]["stdout"].split()
    assert found == [
        "./.gitignore",
        "./main.py",
        "./pkg/.gitignore",
        "./pkg/keep.log",
        "./pkg/mod.py",
        "./pkg/secret.txt",
    ]


async def test_filtered_host_import_is_keyed_by_what_passes_the_filter(
    client: Client, workdir: Path, busybox_ref: str
) -> None:
    _write(workdir, PROJECT)
    query = '{ host { directory(path: ".", gitignore: true) { id } } }'

    async def token() -> str:
        fresh = Client(client.engine, workdir)  # a session memoises what it read
        src = await fresh.id_of(query)
        data = await fresh.data(
            "query($src: ID!, $image: String!) { container { from(address: $image) {"
            ' withMountedDirectory(path: "/src", source: $src) {'
            ' withExec(args: ["sh", "-c", "cat /proc/sys/kernel/random/uuid"]) { stdout } } } } }',
            src=src,
            image=busybox_ref,
        )
        return str(data["container"]["from"]["withMountedDirectory"]["withExec"]["stdout"])

    first = await token()
    (workdir / "app.log").write_text("more noise\n")  # ignored: same key, cached step
    (workdir / "build" / "new.bin").write_text("x\n")
    assert await token() == first
    (workdir / "main.py").write_text("print('changed')\n")
    assert await token() != first


async def test_exists_stat_name_and_find_up(client: Client, busybox_ref: str) -> None:
    data = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "mkdir -p /w/a/b && echo hi > /w/f && chmod 600 /w/f'
        ' && ln -s f /w/link && ln -s nowhere /w/dangling && touch /w/a/marker"]) {'
        ' withWorkdir(path: "/w") {'
        ' f: exists(path: "f") d: exists(path: "a", expectedType: DIRECTORY_TYPE)'
        ' notFile: exists(path: "a", expectedType: REGULAR_TYPE)'
        ' link: exists(path: "link", expectedType: SYMLINK_TYPE, doNotFollowSymlinks: true)'
        ' linkFollowed: exists(path: "link", expectedType: REGULAR_TYPE)'
        ' dangling: exists(path: "dangling") danglingItself: exists(path: "dangling",'
        " doNotFollowSymlinks: true)"
        ' missing: exists(path: "nope")'
        ' stat(path: "f") { fileType name permissions size }'
        ' linkStat: stat(path: "link", doNotFollowSymlinks: true) { fileType name }'
        ' directory(path: "/w") { name digest'
        ' sub: directory(path: "a/b") { name }'
        ' stat(path: "a") { fileType name }'
        ' exists(path: "a/marker")'
        ' up: findUp(name: "marker", start: "a/b")'
        ' none: findUp(name: "nothing", start: "a/b") } } } } } }',
        image=busybox_ref,
    )
    c = data["container"]["from"]["withExec"]["withWorkdir"]
    assert (c["f"], c["d"], c["notFile"], c["link"], c["linkFollowed"]) == (
        True,
        True,
        False,
        True,
        True,
    )
    assert (c["dangling"], c["danglingItself"], c["missing"]) == (False, True, False)
    assert c["stat"] == {"fileType": "REGULAR", "name": "f", "permissions": 0o600, "size": 3}
    assert c["linkStat"] == {"fileType": "SYMLINK", "name": "link"}
    d = c["directory"]
    assert d["name"] == "w/" and d["sub"]["name"] == "b/"
    assert d["stat"] == {"fileType": "DIRECTORY", "name": "a"}
    assert d["exists"] is True
    assert d["up"] == "a/marker" and d["none"] is None
    assert d["digest"].startswith("sha256:")


async def test_container_reads_see_mounts(client: Client, workdir: Path, busybox_ref: str) -> None:
    _write(workdir, {"m/inside.txt": "in the mount\n"})
    src = await client.id_of('{ host { directory(path: "m") { id } } }')
    data = await client.data(
        "query($src: ID!, $image: String!) { container { from(address: $image) {"
        ' withMountedDirectory(path: "/mnt/src", source: $src) {'
        ' exists(path: "/mnt/src/inside.txt")'
        ' stat(path: "/mnt/src/inside.txt") { size fileType }'
        ' rootfs: exists(path: "/bin/sh") } } } }',
        src=src,
        image=busybox_ref,
    )
    c = data["container"]["from"]["withMountedDirectory"]
    assert c == {"exists": True, "stat": {"size": 13, "fileType": "REGULAR"}, "rootfs": True}


async def test_digests_match_content(client: Client, workdir: Path, busybox_ref: str) -> None:
    _write(workdir, {"one/a.txt": "same\n", "two/a.txt": "same\n"})
    data = await client.data(
        "query($image: String!) { host {"
        ' one: directory(path: "one") { digest file(path: "a.txt") {'
        " digest content: digest(excludeMetadata: true) } }"
        ' two: directory(path: "two") { digest } }'
        " container { from(address: $image) {"
        ' withNewFile(path: "/x/a.txt", contents: "same\\n") {'
        ' withExec(args: ["sha256sum", "/x/a.txt"]) { stdout'
        ' directory(path: "/x") { digest } } } } } }',
        image=busybox_ref,
    )
    one, two = data["host"]["one"], data["host"]["two"]
    assert one["digest"] == two["digest"]
    expected = "sha256:" + hashlib.sha256(b"same\n").hexdigest()
    assert one["file"]["content"] == expected
    assert one["file"]["digest"] != expected
    exec_ = data["container"]["from"]["withNewFile"]["withExec"]
    assert exec_["stdout"].split()[0] == expected.removeprefix("sha256:")
    assert exec_["directory"]["digest"] == one["digest"]  # same names, modes, owners, contents


async def test_file_reads_and_rewrites(client: Client, workdir: Path) -> None:
    _write(workdir, {"conf.ini": "name = old\nport = 1\nname = old\n"})
    data = await client.data(
        '{ host { file(path: "conf.ini") {'
        " name contents(offsetLines: 1, limitLines: 1) stat { name size fileType permissions }"
        ' search(pattern: "name") { filePath lineNumber absoluteOffset matchedLines'
        " submatches { start end text } }"
        ' renamed: withName(name: "app.ini") { name contents }'
        ' all: withReplaced(search: "old", replacement: "new", all: true) { contents }'
        ' second: withReplaced(search: "old", replacement: "new", firstFrom: 2) { contents }'
        " } } }"
    )
    f = data["host"]["file"]
    assert f["name"] == "conf.ini"
    assert f["contents"] == "port = 1\n"
    assert f["stat"] == {
        "name": "conf.ini",
        "size": 31,
        "fileType": "REGULAR",
        "permissions": 0o644,
    }
    assert f["search"] == [
        {
            "filePath": "conf.ini",
            "lineNumber": 1,
            "absoluteOffset": 0,
            "matchedLines": "name = old\n",
            "submatches": [{"start": 0, "end": 4, "text": "name"}],
        },
        {
            "filePath": "conf.ini",
            "lineNumber": 3,
            "absoluteOffset": 20,
            "matchedLines": "name = old\n",
            "submatches": [{"start": 0, "end": 4, "text": "name"}],
        },
    ]
    assert f["renamed"] == {"name": "app.ini", "contents": "name = old\nport = 1\nname = old\n"}
    assert f["all"]["contents"] == "name = new\nport = 1\nname = new\n"
    assert f["second"]["contents"] == "name = old\nport = 1\nname = new\n"
    message = await client.error_message(
        '{ host { file(path: "conf.ini") { withReplaced(search: "old", replacement: "x")'
        " { contents } } } }"
    )
    assert "more than once" in message and "all: true" in message
    message = await client.error_message(
        '{ host { file(path: "conf.ini") { withReplaced(search: "absent", replacement: "x")'
        " { contents } } } }"
    )
    assert "not found" in message


async def test_directory_search(client: Client, workdir: Path) -> None:
    _write(workdir, PROJECT)
    data = await client.data(
        '{ host { directory(path: ".") {'
        ' all: search(pattern: "hello") { filePath lineNumber }'
        ' ignored: search(pattern: "hello", skipIgnored: true, globs: ["*.py"]) { filePath }'
        ' paths: search(pattern: "HELLO", insensitive: true, paths: ["docs"]) { filePath }'
        ' files: search(pattern: "e", filesOnly: true, limit: 2) { filePath }'
        " } } }"
    )
    d = data["host"]["directory"]
    assert d["all"] == [
        {"filePath": "docs/guide.md", "lineNumber": 2},
        {"filePath": "main.py", "lineNumber": 1},
        {"filePath": "pkg/mod.py", "lineNumber": 1},
        {"filePath": "pkg/mod.py", "lineNumber": 2},
    ]
    assert d["ignored"] == [
        {"filePath": "main.py"},
        {"filePath": "pkg/mod.py"},  # both lines of it
        {"filePath": "pkg/mod.py"},
    ]
    assert d["paths"] == [{"filePath": "docs/guide.md"}]
    assert len(d["files"]) == 2


async def test_missing_paths_use_daggers_words(client: Client, workdir: Path) -> None:
    for query, path in [
        ('{ host { directory(path: "gone") { id } } }', str(workdir / "gone")),
        ('{ host { file(path: "gone.txt") { id } } }', str(workdir / "gone.txt")),
        ('{ directory { file(path: "x/y") { contents } } }', "/x/y"),
        ('{ directory { directory(path: "x") { entries } } }', "/x"),
        ('{ directory { stat(path: "x") { size } } }', "x"),
        (
            '{ directory { withNewFile(path: "a", contents: "") { glob(pattern: "*")'
            ' directory(path: "b") { glob(pattern: "*") } } } }',
            "/b",
        ),
    ]:
        message = await client.error_message(query)
        assert message.startswith(f"{path}: no such file or directory"), message


async def test_host_find_up(client: Client, workdir: Path) -> None:
    (workdir.parent / "marker.cfg").write_text("x")
    data = await client.data(
        '{ host { up: findUp(name: "marker.cfg") none: findUp(name: "no-such-name-here") } }'
    )
    assert data["host"] == {"up": str(workdir.parent / "marker.cfg"), "none": None}


async def test_directory_export_merge_wipe_and_symlink_attacks(
    client: Client, workdir: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "b.txt").write_text("precious\n")
    out = workdir / "out"
    out.mkdir()
    (out / "mine.txt").write_text("mine\n")
    (out / "sub").symlink_to(victim)  # the export has a directory "sub"
    (out / "etc").symlink_to("/etc")
    src = await client.id_of(
        '{ directory { withNewFile(path: "sub/b.txt", contents: "exported\\n") {'
        ' withNewFile(path: "a.txt", contents: "a\\n") { id } } } }'
    )
    data = await client.data(
        'query($src: ID!) { loadDirectoryFromID(id: $src) { export(path: "out") } }', src=src
    )
    assert data["loadDirectoryFromID"]["export"] == str(out)
    assert (victim / "b.txt").read_text() == "precious\n" and len(list(victim.iterdir())) == 1
    assert not (out / "sub").is_symlink() and (out / "sub" / "b.txt").read_text() == "exported\n"
    assert (out / "mine.txt").read_text() == "mine\n"  # merged: kept
    assert os.readlink(out / "etc") == "/etc"
    await client.data(
        'query($src: ID!) { loadDirectoryFromID(id: $src) { export(path: "out", wipe: true) } }',
        src=src,
    )
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "sub"]
    assert not any(".dirk-" in p.name for p in workdir.iterdir())


async def test_file_export(client: Client, workdir: Path, busybox_ref: str) -> None:
    nonce = uuid.uuid4().hex
    query = (
        "query($image: String!, $script: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", $script]) { file(path: "/tool.sh") { EXPORT } } } } }'
    )
    to = await client.data(
        query.replace("EXPORT", 'export(path: "bin/tool")'),
        image=busybox_ref,
        script=f"echo {nonce} > /tool.sh && chmod 755 /tool.sh",
    )
    into = await client.data(
        query.replace("EXPORT", 'export(path: "bin", allowParentDirPath: true)'),
        image=busybox_ref,
        script=f"echo {nonce} > /tool.sh && chmod 755 /tool.sh",
    )
    assert to["container"]["from"]["withExec"]["file"]["export"] == str(workdir / "bin" / "tool")
    exported = into["container"]["from"]["withExec"]["file"]["export"]
    assert exported == str(workdir / "bin" / "tool.sh")
    for name in ("tool", "tool.sh"):
        path = workdir / "bin" / name
        assert path.read_text() == nonce + "\n" and os.access(path, os.X_OK)
    message = await client.error_message(
        "query($image: String!) { container { from(address: $image) {"
        ' file(path: "/bin/sh") { export(path: "bin") } } } }',
        image=busybox_ref,
    )
    assert "allowParentDirPath" in message


async def test_no_cache_reads_the_host_again_within_a_session(
    client: Client, workdir: Path
) -> None:
    (workdir / "d").mkdir()
    (workdir / "d" / "v.txt").write_text("one\n")
    memo = '{ host { directory(path: "d") { file(path: "v.txt") { contents } } } }'
    fresh = '{ host { directory(path: "d", noCache: true) { file(path: "v.txt") { contents } } } }'
    fresh_file = '{ host { file(path: "d/v.txt", noCache: true) { contents } } }'
    assert (await client.data(memo))["host"]["directory"]["file"]["contents"] == "one\n"
    assert (await client.data(fresh))["host"]["directory"]["file"]["contents"] == "one\n"
    (workdir / "d" / "v.txt").write_text("two\n")
    assert (await client.data(memo))["host"]["directory"]["file"]["contents"] == "one\n"
    assert (await client.data(fresh))["host"]["directory"]["file"]["contents"] == "two\n"
    assert (await client.data(fresh_file))["host"]["file"]["contents"] == "two\n"


async def test_paths_in_cache_and_tmpfs_mounts_cannot_be_read(
    client: Client, busybox_ref: str
) -> None:
    cache = await client.id_of('{ cacheVolume(key: "dirfiles-read-probe") { id } }')
    base = (
        "query($image: String!, $cache: ID!) { container { from(address: $image) {"
        ' withMountedCache(path: "/c", cache: $cache) {'
        ' withMountedTemp(path: "/t") { READ } } } } }'
    )
    for read in (
        'directory(path: "/c/sub") { entries }',
        'file(path: "/t/x") { contents }',
        'exists(path: "/c/x")',
    ):
        message = await client.error_message(
            base.replace("READ", read), image=busybox_ref, cache=cache
        )
        assert "belongs to no snapshot" in message and "withExec" in message, message
