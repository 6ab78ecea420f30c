"""The writing side of Directory, File and Container end to end: a real engine (registry,
containers, overlay snapshots, cache) driven through the GraphQL schema, checked the way a user
would check it, by running commands in containers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import Session
from dirk.workers.snapshots.hostexport import remove_entries
from tests.integration.schema_client import SchemaClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Client(SchemaClient):
    def __init__(self, engine: EngineCore, workdir: Path) -> None:
        super().__init__(engine, Session("token", workdir, {}, time.time()))

    async def dir_id(self, files: dict[str, str]) -> str:
        """The ID of a directory holding `files` (path -> contents)."""
        chain = "directory"
        for path, contents in files.items():
            chain += f" {{ withNewFile(path: {json.dumps(path)}, contents: {json.dumps(contents)})"
        query = "{ " + chain + " { id }" + " }" * len(files) + " }"
        data = await self.data(query)
        return str(_innermost(data)["id"])

    async def run_in(self, image: str, directory: str, script: str) -> str:
        """stdout of `script` run in `image` with `directory` mounted at /d."""
        data = await self.data(
            "query($image: String!, $d: ID!, $script: String!) { container { from(address:"
            ' $image) { withMountedDirectory(path: "/d", source: $d) {'
            ' withExec(args: ["sh", "-c", $script]) { stdout } } } } }',
            image=image,
            d=directory,
            script=script,
        )
        return str(_innermost(data)["stdout"])


def _innermost(data: Any) -> Any:
    while isinstance(data, dict) and len(data) == 1:
        (value,) = data.values()
        if not isinstance(value, dict):
            break
        data = value
    return data


@pytest.fixture
def client(engine: EngineCore, tmp_path: Path) -> Client:
    work = tmp_path / "work"
    work.mkdir()
    return Client(engine, work)


async def _id(client: Client, query: str, **variables: Any) -> str:
    return str(_innermost(await client.data(query, **variables))["id"])


async def test_symlink_timestamps_and_chown_seen_in_a_container(
    client: Client, busybox_ref: str
) -> None:
    base = await client.dir_id({"a/f.txt": "x", "b.txt": "y"})
    changed = await _id(
        client,
        "query($d: ID!) { loadDirectoryFromID(id: $d) {"
        ' withSymlink(target: "a/f.txt", linkName: "links/to-f") {'
        " withTimestamps(timestamp: 1700000000) {"
        ' chown(path: "a", owner: "1234:99") { id } } } } }',
        d=base,
    )
    out = await client.run_in(
        busybox_ref,
        changed,
        "readlink /d/links/to-f; cat /d/links/../links/to-f 2>&1 | head -1;"
        " stat -c %Y /d/b.txt /d/a /d/a/f.txt; stat -c %u:%g /d/a /d/a/f.txt /d/b.txt",
    )
    lines = out.splitlines()
    assert lines[0] == "a/f.txt"  # written as given, relative to the link's directory
    assert lines[2:5] == ["1700000000"] * 3
    assert lines[5:8] == ["1234:99", "1234:99", "0:0"]


async def test_file_timestamps_and_chown(client: Client, busybox_ref: str) -> None:
    base = await client.dir_id({"f.txt": "x"})
    data = await client.data(
        'query($d: ID!) { loadDirectoryFromID(id: $d) { file(path: "f.txt") {'
        ' withTimestamps(timestamp: 86400) { chown(owner: "7") { id } } } } }',
        d=base,
    )
    file_id = _innermost(data)["id"]
    stdout = _innermost(
        await client.data(
            "query($image: String!, $f: ID!) { container { from(address: $image) {"
            ' withFile(path: "/g.txt", source: $f) {'
            ' withExec(args: ["stat", "-c", "%Y %u:%g", "/g.txt"]) { stdout } } } } }',
            image=busybox_ref,
            f=file_id,
        )
    )["stdout"]
    assert stdout == "86400 7:7\n"


async def test_with_files_and_without_files(client: Client) -> None:
    base = await client.dir_id({"one.txt": "1", "sub/two.txt": "2", "keep.txt": "k"})
    one = await _id(
        client,
        'query($d: ID!) { loadDirectoryFromID(id: $d) { file(path: "one.txt") { id } } }',
        d=base,
    )
    two = await _id(
        client,
        'query($d: ID!) { loadDirectoryFromID(id: $d) { file(path: "sub/two.txt") { id } } }',
        d=base,
    )
    data = await client.data(
        "query($d: ID!, $files: [ID!]!) { loadDirectoryFromID(id: $d) {"
        ' withFiles(path: "copies", sources: $files, permissions: 384) {'
        ' withoutFiles(paths: ["one.txt", "sub/two.txt", "missing"]) {'
        ' entries copies: entries(path: "copies") sub: entries(path: "sub") } } } }',
        d=base,
        files=[one, two],
    )
    result = data["loadDirectoryFromID"]["withFiles"]["withoutFiles"]
    assert result["entries"] == ["copies/", "keep.txt", "sub/"]
    assert result["copies"] == ["one.txt", "two.txt"]
    assert result["sub"] == []


async def test_patch_then_changes_then_as_patch_applies_back(
    client: Client, tmp_path: Path
) -> None:
    before = await client.dir_id({"keep.txt": "same\n", "edit.txt": "one\ntwo\n", "old/x": "x\n"})
    text = (
        "diff --git a/edit.txt b/edit.txt\n--- a/edit.txt\n+++ b/edit.txt\n"
        "@@ -1,2 +1,2 @@\n one\n-two\n+three\n"
        "diff --git a/new/n.txt b/new/n.txt\nnew file mode 100644\n--- /dev/null\n"
        "+++ b/new/n.txt\n@@ -0,0 +1 @@\n+hello\n"
        "diff --git a/old/x b/old/x\ndeleted file mode 100644\n--- a/old/x\n+++ /dev/null\n"
        "@@ -1 +0,0 @@\n-x\n"
    )
    after = await _id(
        client,
        "query($d: ID!, $p: String!) { loadDirectoryFromID(id: $d) {"
        ' withPatch(patch: $p) { withoutDirectory(path: "old") { id } } } }',
        d=before,
        p=text,
    )
    data = await client.data(
        "query($a: ID!, $b: ID!) { loadDirectoryFromID(id: $a) { changes(from: $b) {"
        " addedPaths modifiedPaths removedPaths isEmpty"
        " diffStats { path kind addedLines removedLines }"
        ' layer { entries new: entries(path: "new") }'
        " asPatch { name contents } } } }",
        a=after,
        b=before,
    )
    changes = data["loadDirectoryFromID"]["changes"]
    assert changes["addedPaths"] == ["new/", "new/n.txt"]
    assert changes["modifiedPaths"] == ["edit.txt"]
    assert changes["removedPaths"] == ["old/"]
    assert changes["isEmpty"] is False
    assert {
        (s["path"], s["kind"], s["addedLines"], s["removedLines"]) for s in changes["diffStats"]
    } >= {
        ("edit.txt", "MODIFIED", 1, 1),
        ("new/n.txt", "ADDED", 1, 0),
        ("old/x", "REMOVED", 0, 1),
    }
    assert changes["layer"]["entries"] == ["edit.txt", "new/"]
    assert changes["layer"]["new"] == ["n.txt"]
    assert changes["asPatch"]["name"] == "diff.patch"
    # The patch applies with git apply to a copy of `before` and gives `after`.
    tree = tmp_path / "tree"
    (tree / "old").mkdir(parents=True)
    (tree / "keep.txt").write_text("same\n")
    (tree / "edit.txt").write_text("one\ntwo\n")
    (tree / "old" / "x").write_text("x\n")
    subprocess.run(
        ["git", "apply", "-"], input=changes["asPatch"]["contents"].encode(), cwd=tree, check=True
    )
    assert (tree / "edit.txt").read_text() == "one\nthree\n"
    assert (tree / "new" / "n.txt").read_text() == "hello\n"
    assert not (tree / "old").exists() or not any((tree / "old").iterdir())


async def test_with_changes_and_diff_and_empty_changeset(client: Client) -> None:
    before = await client.dir_id({"a.txt": "a", "gone.txt": "g"})
    after = await _id(
        client,
        "query($d: ID!) { loadDirectoryFromID(id: $d) {"
        ' withNewFile(path: "b.txt", contents: "b") { withoutFile(path: "gone.txt") { id } } } }',
        d=before,
    )
    target = await client.dir_id({"gone.txt": "g", "other.txt": "o"})
    data = await client.data(
        "query($a: ID!, $b: ID!) {"
        " after: loadDirectoryFromID(id: $a) { changes(from: $b) { id } }"
        " before: loadDirectoryFromID(id: $b) { diff(other: $a) { entries } }"
        " changeset { isEmpty addedPaths }"
        " same: loadDirectoryFromID(id: $b) { changes(from: $b) { isEmpty } }"
        " }",
        a=after,
        b=before,
    )
    assert data["before"]["diff"]["entries"] == ["b.txt"]
    assert data["changeset"] == {"isEmpty": True, "addedPaths": []}
    assert data["same"]["changes"]["isEmpty"] is True
    changes_id = data["after"]["changes"]["id"]
    applied = await client.data(
        "query($t: ID!, $c: ID!) { loadDirectoryFromID(id: $t) { withChanges(changes: $c) {"
        " entries } } }",
        t=target,
        c=changes_id,
    )
    assert applied["loadDirectoryFromID"]["withChanges"]["entries"] == ["b.txt", "other.txt"]


async def test_a_patch_that_does_not_apply_names_the_problem(client: Client) -> None:
    base = await client.dir_id({"f.txt": "one\n"})
    message = await client.error_message(
        "query($d: ID!, $p: String!) { loadDirectoryFromID(id: $d) { withPatch(patch: $p) {"
        " entries } } }",
        d=base,
        p="--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-other\n+two\n",
    )
    assert "the patch does not apply" in message


async def test_container_files_symlink_and_without(client: Client, busybox_ref: str) -> None:
    src = await client.dir_id({"one.txt": "1", "two.txt": "2"})
    one = await _id(
        client,
        'query($d: ID!) { loadDirectoryFromID(id: $d) { file(path: "one.txt") { id } } }',
        d=src,
    )
    two = await _id(
        client,
        'query($d: ID!) { loadDirectoryFromID(id: $d) { file(path: "two.txt") { id } } }',
        d=src,
    )
    data = await client.data(
        "query($image: String!, $files: [ID!]!) { container { from(address: $image) {"
        ' withEnvVariable(name: "DEST", value: "/srv") {'
        ' withFiles(path: "$DEST/files", sources: $files, owner: "5:6", expand: true) {'
        ' withSymlink(target: "/srv/files/one.txt", linkName: "/srv/link") {'
        ' withoutFiles(paths: ["/srv/files/two.txt"]) { withoutFile(path: "/etc/hostname") {'
        ' withoutDirectory(path: "/home") {'
        ' withExec(args: ["sh", "-c", "ls /srv/files; readlink /srv/link; cat /srv/link;'
        ' stat -c %u:%g /srv/files/one.txt; ls /etc/hostname /home 2>&1 | wc -l"]) { stdout }'
        " } } } } } } } } }",
        image=busybox_ref,
        files=[one, two],
    )
    out = _innermost(data)["stdout"].splitlines()
    assert out[0] == "one.txt"
    assert out[1] == "/srv/files/one.txt"
    assert out[2] == "15:6"  # "1" from cat without newline, then stat's "5:6"
    assert out[3] == "2"  # two "No such file" lines


async def test_without_mount_really_unmounts(client: Client, busybox_ref: str) -> None:
    src = await client.dir_id({"m.txt": "mounted"})
    data = await client.data(
        "query($image: String!, $d: ID!) { container { from(address: $image) {"
        ' withMountedDirectory(path: "/mnt/x", source: $d) {'
        ' withMountedTemp(path: "/tmp/t") {'
        ' with: withExec(args: ["cat", "/mnt/x/m.txt"]) { stdout }'
        " mounts"
        ' withoutMount(path: "/mnt/x") { mounts'
        ' withExec(args: ["sh", "-c", "cat /mnt/x/m.txt || echo gone;'
        ' grep -c /mnt/x /proc/mounts"],'
        " expect: ANY) { stdout } } } } } } }",
        image=busybox_ref,
        d=src,
    )
    c = data["container"]["from"]["withMountedDirectory"]["withMountedTemp"]
    assert c["with"]["stdout"] == "mounted"
    assert c["mounts"] == ["/mnt/x", "/tmp/t"]
    assert c["withoutMount"]["mounts"] == ["/tmp/t"]
    assert c["withoutMount"]["withExec"]["stdout"] == "gone\n0\n"


async def test_combined_output_interleaves_in_order(client: Client, busybox_ref: str) -> None:
    data = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2;'
        ' echo out2; sleep 0.2; echo err2 >&2"]) { combinedOutput stdout stderr } } } }',
        image=busybox_ref,
    )
    result = data["container"]["from"]["withExec"]
    assert result["combinedOutput"] == "out1\nerr1\nout2\nerr2\n"
    assert result["stdout"] == "out1\nout2\n"
    assert result["stderr"] == "err1\nerr2\n"
    message = await client.error_message(
        "query($image: String!) { container { from(address: $image) { combinedOutput } } }",
        image=busybox_ref,
    )
    assert "no command has been run" in message


async def test_volatile_variable_reaches_the_command_but_not_the_cache_key(
    engine: EngineCore, busybox_ref: str, tmp_path: Path
) -> None:
    query = (
        "query($image: String!, $v: String!) { container { from(address: $image) {"
        ' withVolatileVariable(name: "VOL", value: $v) {'
        ' withExec(args: ["sh", "-c", "echo $VOL $(cat /proc/sys/kernel/random/uuid)"])'
        " { stdout } } } } }"
    )
    first = _innermost(await Client(engine, tmp_path).data(query, image=busybox_ref, v="one"))
    value, token = first["stdout"].split()
    assert value == "one"
    # Another session (no API memo), another value: the cached result (same token) is reused.
    second = _innermost(await Client(engine, tmp_path).data(query, image=busybox_ref, v="two"))
    assert second["stdout"].split() == ["one", token]
    # A plain variable is part of the key: the command runs again.
    plain = query.replace("withVolatileVariable", "withEnvVariable")
    third = _innermost(await Client(engine, tmp_path).data(plain, image=busybox_ref, v="two"))
    assert third["stdout"].split()[0] == "two"
    assert third["stdout"].split()[1] != token
    removed = await Client(engine, tmp_path).data(
        "query($image: String!) { container { from(address: $image) {"
        ' withVolatileVariable(name: "VOL", value: "x") { withoutVolatileVariable(name: "VOL")'
        ' { withExec(args: ["sh", "-c", "echo [$VOL]"]) { stdout } } } } } }',
        image=busybox_ref,
    )
    assert _innermost(removed)["stdout"] == "[]\n"


async def test_configuration_fields(client: Client, busybox_ref: str) -> None:
    data = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        " imageRef platform"
        ' withWorkdir(path: "/tmp") { withUser(name: "nobody") {'
        ' withEntrypoint(args: ["sh"]) { withDefaultArgs(args: ["-c", "id"]) {'
        ' withLabel(name: "l", value: "v") { withAnnotation(name: "org.a", value: "1") {'
        ' withAnnotation(name: "org.b", value: "2") { withoutAnnotation(name: "org.a") {'
        ' withDefaultTerminalCmd(args: ["/bin/sh"]) {'
        ' withDockerHealthcheck(args: ["wget", "-q", "localhost"], interval: "30s",'
        ' timeout: "3s", retries: 3) {'
        " dockerHealthcheck { args shell interval timeout startPeriod startInterval retries }"
        " withoutDockerHealthcheck { dockerHealthcheck { args } }"
        " withoutWorkdir { withoutUser { withoutEntrypoint(keepDefaultArgs: true) {"
        " workdir user entrypoint defaultArgs"
        ' withoutDefaultArgs { defaultArgs withoutLabel(name: "l") { labels { name } } }'
        ' withExec(args: ["sh", "-c", "pwd; id -u"]) { stdout }'
        " } } } } } } } } } } } } } } } }",
        image=busybox_ref,
    )
    c = data["container"]["from"]
    assert c["imageRef"].startswith(busybox_ref + "@sha256:")
    assert c["platform"] == "linux/amd64"
    hc = _dig(c, "withDockerHealthcheck")
    assert hc["dockerHealthcheck"] == {
        "args": ["wget", "-q", "localhost"],
        "shell": False,
        "interval": "30s",
        "timeout": "3s",
        "startPeriod": "",
        "startInterval": "",
        "retries": 3,
    }
    assert hc["withoutDockerHealthcheck"]["dockerHealthcheck"] is None
    reset = hc["withoutWorkdir"]["withoutUser"]["withoutEntrypoint"]
    assert reset["workdir"] == "" and reset["user"] == "" and reset["entrypoint"] == []
    assert reset["defaultArgs"] == ["-c", "id"]
    assert reset["withoutDefaultArgs"]["defaultArgs"] == []
    assert not any(
        label["name"] == "l" for label in reset["withoutDefaultArgs"]["withoutLabel"]["labels"]
    )
    assert reset["withExec"]["stdout"] == "/\n0\n"
    message = await client.error_message(
        "query($image: String!) { container { from(address: $image) {"
        ' withNewFile(path: "/x", contents: "x") { imageRef } } } }',
        image=busybox_ref,
    )
    assert "right after `from`" in message
    bad = await client.error_message(
        "query($image: String!) { container { from(address: $image) {"
        ' withDockerHealthcheck(args: ["true"], interval: "often") { id } } } }',
        image=busybox_ref,
    )
    assert "not a duration" in bad


def _dig(data: Any, key: str) -> Any:
    """The first object under `key` at any depth."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            found = _dig(value, key)
            if found is not None:
                return found
    return None


async def test_annotations_are_kept_on_the_container_value(client: Client) -> None:
    # Annotations have no read-back field in Dagger's API; they travel with the value (for
    # publishing) and never change what a container runs.
    data = await client.data(
        '{ container { withAnnotation(name: "a", value: "1") {'
        ' withoutAnnotation(name: "missing") { id } } } }'
    )
    handle = client.session.state["dirk.api"].load(_innermost(data)["id"])
    assert handle.value.annotations == (("a", "1"),)


async def test_env_files(client: Client, busybox_ref: str) -> None:
    text = (
        "# comment\nexport GREETING=hello\nNAME='lit $GREETING'\nMSG=\"$GREETING world\\n\"\n"
        "APP_TOKEN=secret # trailing\nAPP_NAME=${GREETING}-app\n"
    )
    src = await client.dir_id({".env": text})
    data = await client.data(
        "query($d: ID!) { loadDirectoryFromID(id: $d) {"
        ' file(path: ".env") { asEnvFile {'
        ' greeting: get(name: "GREETING") name: get(name: "NAME")'
        ' msg: get(name: "MSG") rawMsg: get(name: "MSG", raw: true)'
        ' has: exists(name: "APP_TOKEN") hasNot: exists(name: "NOPE")'
        ' namespace(prefix: "APP_") { variables { name value } }'
        ' withVariable(name: "EXTRA", value: "a b") { withoutVariable(name: "NAME") {'
        " asFile { contents } id } } } } } }",
        d=src,
    )
    env = data["loadDirectoryFromID"]["file"]["asEnvFile"]
    assert env["greeting"] == "hello"
    assert env["name"] == "lit $GREETING"
    assert env["msg"] == "hello world\n"
    assert env["rawMsg"] == '"$GREETING world\\n"'
    assert env["has"] is True and env["hasNot"] is False
    assert env["namespace"]["variables"] == [
        {"name": "TOKEN", "value": "secret"},
        {"name": "NAME", "value": "hello-app"},
    ]
    edited = env["withVariable"]["withoutVariable"]
    assert "NAME=" not in edited["asFile"]["contents"].replace("APP_NAME=", "")
    assert "EXTRA='a b'\n" in edited["asFile"]["contents"]
    assert "APP_NAME=hello-app\n" in edited["asFile"]["contents"]
    out = await client.data(
        "query($image: String!, $e: ID!) { container { from(address: $image) {"
        " withEnvFileVariables(source: $e) {"
        ' withExec(args: ["sh", "-c", "echo $EXTRA/$APP_NAME/$MSG"]) { stdout } } } } }',
        image=busybox_ref,
        e=edited["id"],
    )
    assert _innermost(out)["stdout"] == "a b/hello-app/hello world\n"  # echo drops the \\n
    empty = await client.data(
        '{ envFile { withVariable(name: "A", value: "1") { variables { name value } } } }'
    )
    assert empty["envFile"]["withVariable"]["variables"] == [{"name": "A", "value": "1"}]


async def test_errors_and_with_error(client: Client) -> None:
    data = await client.data(
        '{ error(message: "broken") { message withValue(name: "code", value: "42") {'
        " values { name value } } } }"
    )
    assert data["error"]["message"] == "broken"
    assert data["error"]["withValue"]["values"] == [{"name": "code", "value": "42"}]
    ok = await client.data('{ directory { withError(err: "") { entries } } }')
    assert ok["directory"]["withError"]["entries"] == []
    message = await client.error_message('{ container { withError(err: "stop here") { id } } }')
    assert message == "stop here"
    message = await client.error_message('{ directory { withError(err: "no dir") { entries } } }')
    assert message == "no dir"


MERGE_QUERY = (
    "query($base: ID!, $ours: ID!, $theirs: ID!, $both: [ID!]!) {"
    " ours: loadDirectoryFromID(id: $ours) { changes(from: $base) {"
    " clean: withChangeset(changes: $theirs) { addedPaths modifiedPaths removedPaths"
    ' after { a: file(path: "a.txt") { contents } entries } }'
    " octopus: withChangesets(changes: $both) { after { entries } } } } }"
)


async def test_with_changeset_merges_with_git(client: Client) -> None:
    base = await client.dir_id({"a.txt": "1\n2\n3\n4\n5\n", "gone.txt": "g\n"})
    ours = await _id(
        client,
        "query($d: ID!) { loadDirectoryFromID(id: $d) {"
        ' withNewFile(path: "a.txt", contents: "one\\n2\\n3\\n4\\n5\\n") {'
        ' withNewFile(path: "ours.txt", contents: "o") { id } } } }',
        d=base,
    )
    theirs = await _id(
        client,
        "query($d: ID!) { loadDirectoryFromID(id: $d) {"
        ' withNewFile(path: "a.txt", contents: "1\\n2\\n3\\n4\\nfive\\n") {'
        ' withoutFile(path: "gone.txt") { id } } } }',
        d=base,
    )
    third = await _id(
        client,
        "query($d: ID!) { loadDirectoryFromID(id: $d) {"
        ' withNewFile(path: "third/t.txt", contents: "t") { id } } }',
        d=base,
    )
    ids = {}
    for name, after in (("theirs", theirs), ("third", third)):
        ids[name] = await _id(
            client,
            "query($a: ID!, $b: ID!) { loadDirectoryFromID(id: $a) { changes(from: $b) { id } } }",
            a=after,
            b=base,
        )
    data = await client.data(
        MERGE_QUERY,
        base=base,
        ours=ours,
        theirs=ids["theirs"],
        both=[ids["theirs"], ids["third"]],
    )
    changes = data["ours"]["changes"]
    clean = changes["clean"]
    assert clean["after"]["a"]["contents"] == "one\n2\n3\n4\nfive\n"  # both edits, merged
    assert clean["after"]["entries"] == ["a.txt", "ours.txt"]
    assert clean["addedPaths"] == ["ours.txt"]
    assert clean["modifiedPaths"] == ["a.txt"]
    assert clean["removedPaths"] == ["gone.txt"]
    assert changes["octopus"]["after"]["entries"] == ["a.txt", "ours.txt", "third/"]
    # Both edit line 1: FAIL_EARLY and FAIL refuse, PREFER_* pick a side, markers are left.
    clash = await _id(
        client,
        "query($d: ID!) { loadDirectoryFromID(id: $d) {"
        ' withNewFile(path: "a.txt", contents: "uno\\n2\\n3\\n4\\n5\\n") { id } } }',
        d=base,
    )
    clash_changes = await _id(
        client,
        "query($a: ID!, $b: ID!) { loadDirectoryFromID(id: $a) { changes(from: $b) { id } } }",
        a=clash,
        b=base,
    )
    pick = (
        "query($o: ID!, $b: ID!, $c: ID!) { loadDirectoryFromID(id: $o) { changes(from: $b) {"
        " withChangeset(changes: $c, onConflict: MODE) { after {"
        ' file(path: "a.txt") { contents } } } } } }'
    )
    for mode, first_line in (("PREFER_OURS", "one"), ("PREFER_THEIRS", "uno")):
        got = await client.data(pick.replace("MODE", mode), o=ours, b=base, c=clash_changes)
        assert _innermost(got)["contents"].splitlines()[0] == first_line
    markers = await client.data(
        pick.replace("MODE", "LEAVE_CONFLICT_MARKERS"), o=ours, b=base, c=clash_changes
    )
    assert "<<<<<<<" in _innermost(markers)["contents"]
    for mode, words in (("FAIL_EARLY", "modified in both"), ("FAIL", "conflict")):
        message = await client.error_message(
            pick.replace("MODE", mode), o=ours, b=base, c=clash_changes
        )
        assert words in message


async def test_env_file_ids_run_nothing(client: Client, busybox_ref: str) -> None:
    chain = (
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "exit 7"]) { file(path: "/x.env") { asEnvFile {'
        ' withVariable(name: "A", value: "1") { asFile { LEAF } } } } } } } }'
    )
    data = await client.data(chain.replace("LEAF", "id"), image=busybox_ref)
    assert _innermost(data)["id"].startswith("dirk:File:")
    message = await client.error_message(chain.replace("LEAF", "contents"), image=busybox_ref)
    assert "exit code: 7" in message


async def test_paths_in_mounts_that_are_no_snapshot(client: Client) -> None:
    src = await client.dir_id({"f.txt": "old"})
    file_id = await _id(
        client,
        'query($d: ID!) { loadDirectoryFromID(id: $d) { file(path: "f.txt") { id } } }',
        d=src,
    )
    data = await client.data(
        'query($f: ID!) { container { withMountedFile(path: "/m/f.txt", source: $f) {'
        ' withNewFile(path: "/m/f.txt", contents: "new") { file(path: "/m/f.txt") {'
        " contents } } } } }",
        f=file_id,
    )
    assert _innermost(data)["contents"] == "new"
    message = await client.error_message(
        '{ container { withMountedTemp(path: "/t") {'
        ' withNewFile(path: "/t/x", contents: "x") { id } } } }'
    )
    assert "inside the tmpfs mounted at /t" in message
    message = await client.error_message(
        '{ container { withMountedCache(path: "/c", cache: CACHE) { directory(path: "/c/sub")'
        " { id } } } }".replace(
            "CACHE",
            '"'
            + (await client.data('{ cacheVolume(key: "dw-c") { id } }'))["cacheVolume"]["id"]
            + '"',
        )
    )
    assert "inside the cache volume mounted at /c" in message


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_with_healthcheck(registry: str, healthcheck: dict[str, Any]) -> str:
    """busybox:latest with a HEALTHCHECK in its config, pushed under a name of this test's own;
    its reference."""
    name = "dirfiles-write-test/busybox-healthcheck"
    with httpx.Client(base_url=f"http://{registry}", trust_env=False, timeout=30) as http:
        manifest = http.get("/v2/busybox/manifests/latest", headers={"Accept": OCI_MANIFEST}).json()
        config = http.get(f"/v2/busybox/blobs/{manifest['config']['digest']}").json()
        config["config"]["Healthcheck"] = healthcheck
        blob = json.dumps(config).encode()
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        for layer in manifest["layers"]:  # cross-repository mount: no upload
            http.post(
                f"/v2/{name}/blobs/uploads/", params={"mount": layer["digest"], "from": "busybox"}
            ).raise_for_status()
        start = http.post(f"/v2/{name}/blobs/uploads/")
        start.raise_for_status()
        location = start.headers["Location"]
        separator = "&" if "?" in location else "?"
        http.put(f"{location}{separator}digest={digest}", content=blob).raise_for_status()
        manifest["config"] = {**manifest["config"], "digest": digest, "size": len(blob)}
        http.put(
            f"/v2/{name}/manifests/latest",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": OCI_MANIFEST},
        ).raise_for_status()
    return f"{registry}/{name}:latest"


async def test_an_images_healthcheck_shows_and_can_be_replaced(
    client: Client, registry: str
) -> None:
    image = push_with_healthcheck(
        registry,
        {"Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": 90_000_000_000, "Retries": 2},
    )
    data = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        " dockerHealthcheck { args shell interval timeout retries }"
        ' withDockerHealthcheck(args: ["true"]) { dockerHealthcheck { args shell } } } } }',
        image=image,
    )
    c = data["container"]["from"]
    assert c["dockerHealthcheck"] == {
        "args": ["wget -q -O- localhost"],
        "shell": True,
        "interval": "1m30s",
        "timeout": "",
        "retries": 2,
    }
    assert c["withDockerHealthcheck"]["dockerHealthcheck"] == {"args": ["true"], "shell": False}


async def test_changes_of_a_step_on_a_whole_image(client: Client, python_ref: str) -> None:
    # `after` is the image plus the exec's layer: only what the layer holds is compared.
    data = await client.data(
        "query($image: String!) { container { from(address: $image) { rootfs { id }"
        ' withExec(args: ["sh", "-c", "echo x > /tmp/new; echo y >> /etc/hostname.d 2>/dev/null;'
        ' rm /etc/debian_version; echo changed > /etc/issue"]) { rootfs { id } } } } }',
        image=python_ref,
    )
    image = data["container"]["from"]
    got = await client.data(
        "query($a: ID!, $b: ID!) { loadDirectoryFromID(id: $a) { changes(from: $b) {"
        " addedPaths modifiedPaths removedPaths } } }",
        a=image["withExec"]["rootfs"]["id"],
        b=image["rootfs"]["id"],
    )
    changes = got["loadDirectoryFromID"]["changes"]
    assert "tmp/new" in changes["addedPaths"]
    assert changes["modifiedPaths"] == ["etc/issue"]
    assert changes["removedPaths"] == ["etc/debian_version"]


async def test_changeset_export_applies_to_the_host(client: Client, tmp_path: Path) -> None:
    before = await client.dir_id({"edit.txt": "old", "gone.txt": "g", "d/x": "x"})
    after = await _id(
        client,
        "query($d: ID!) { loadDirectoryFromID(id: $d) {"
        ' withNewFile(path: "edit.txt", contents: "new") { withoutFile(path: "gone.txt") {'
        ' withoutDirectory(path: "d") { withNewFile(path: "add/a.txt", contents: "a") {'
        " id } } } } } }",
        d=before,
    )
    host = client.session.workdir / "checkout"
    (host / "d").mkdir(parents=True)
    (host / "d" / "x").write_text("x")
    (host / "edit.txt").write_text("old")
    (host / "gone.txt").write_text("g")
    (host / "untracked.txt").write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "gone.txt").write_text("not yours")
    (host / "link").symlink_to(outside)
    data = await client.data(
        "query($a: ID!, $b: ID!) { loadDirectoryFromID(id: $a) { changes(from: $b) {"
        ' export(path: "checkout") } } }',
        a=after,
        b=before,
    )
    assert data["loadDirectoryFromID"]["changes"]["export"] == str(host)
    assert (host / "edit.txt").read_text() == "new"
    assert (host / "add" / "a.txt").read_text() == "a"
    assert not (host / "gone.txt").exists() and not (host / "d").exists()
    assert (host / "untracked.txt").read_text() == "mine"
    assert (outside / "gone.txt").read_text() == "not yours"


def test_removing_entries_never_follows_links(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "f").write_text("keep")
    dest.mkdir()
    (dest / "via").symlink_to(outside)
    (dest / "real").mkdir()
    (dest / "real" / "f").write_text("drop")
    remove_entries(dest, ["via/sub/f", "via/sub/", "real/f", "missing/x", "../outside/sub/f"])
    assert (outside / "sub" / "f").read_text() == "keep"
    assert not (dest / "real" / "f").exists()
    remove_entries(dest, ["via"])  # the link itself goes, not its target
    assert not (dest / "via").is_symlink() and (outside / "sub" / "f").exists()
