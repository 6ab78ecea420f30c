"""Container resolvers against a stand-in solver: which operations a chain builds, what is
memoised, and which errors a user sees."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from dirk.api.values import Container, Directory, File
from dirk.errors import ExecError
from dirk.solver.ops import Copy, Exec, HostDirectory, ImagePull, MkFile, Ref, Scratch

from .api_fakes import IMAGE_DIGEST, Api

pytestmark = pytest.mark.anyio

BASE = 'container { from(address: "reg.local/busybox:1") { %s } }'


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


def chain(inner: str) -> str:
    return "{ " + BASE % inner + " }"


def pick(data: dict, *path: str) -> object:
    value: object = data
    for key in path:
        assert isinstance(value, dict)
        value = value[key]
    return value


async def container_id(api: Api, inner: str) -> str:
    data = await api.data(chain(inner + " { id }" if inner else "id"))
    node = data["container"]["from"]
    while "id" not in node:
        (node,) = node.values()
    return node["id"]


async def test_from_pins_the_image_and_takes_its_config(api: Api) -> None:
    data = await api.data(
        chain("id workdir user entrypoint defaultArgs envVariables { name value }")
    )
    ctr = data["container"]["from"]
    assert ctr["workdir"] == "/app" and ctr["user"] == "app"
    assert ctr["defaultArgs"] == ["sh"] and ctr["entrypoint"] == []
    assert ctr["envVariables"] == [
        {"name": "PATH", "value": "/usr/bin:/bin"},
        {"name": "LANG", "value": "C"},
    ]
    value = api.value(ctr["id"])
    assert value.rootfs.ref.op == ImagePull("reg.local/busybox:1", IMAGE_DIGEST, "linux/amd64")
    assert api.solver.resolved == [("reg.local/busybox:1", "linux/amd64")]
    assert api.solver.solved == []  # nothing ran: `from` only resolves the config


async def test_with_exec_stdout_runs_once_for_a_chain_sent_twice(api: Api) -> None:
    query = chain('withExec(args: ["echo", "hi"]) { stdout }')
    first = await api.data(query)
    second = await api.data(query)
    assert pick(first, "container", "from", "withExec", "stdout") == "ran echo hi\n"
    assert first == second
    assert len(api.solver.ran) == 1
    assert len(api.solver.solved) == 1  # the second query was answered from the session memo
    assert len(api.solver.resolved) == 1
    op = api.solver.ran[0]
    assert op.args == ("echo", "hi")
    assert op.cwd == "/app" and op.user == "app"
    assert op.env == ("PATH=/usr/bin:/bin", "LANG=C")


async def test_concurrent_identical_chains_build_and_run_once(api: Api) -> None:
    query = chain('withExec(args: ["echo", "hi"]) { stdout exitCode }')
    results: list[object] = []

    async def one() -> None:
        results.append(await api.data(query))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert len({str(r) for r in results}) == 1
    assert len(api.solver.resolved) == 1 and len(api.solver.ran) == 1


async def test_id_runs_nothing_and_defaults_do_not_change_identity(api: Api) -> None:
    implicit = await container_id(api, 'withExec(args: ["true"])')
    explicit = await container_id(
        api, 'withExec(args: ["true"], useEntrypoint: false, stdin: "", expect: SUCCESS)'
    )
    other = await container_id(api, 'withExec(args: ["true"], expect: ANY)')
    assert implicit == explicit != other
    assert implicit.startswith("dirk:Container:")
    assert api.solver.solved == []


async def test_default_path_when_the_container_sets_none(api: Api) -> None:
    await api.data('{ container { withExec(args: ["true"]) { exitCode } } }')
    assert api.solver.ran[0].env[0].startswith("PATH=/usr/local/sbin:")
    assert api.solver.ran[0].cwd == "/"


async def test_env_workdir_user_and_expand(api: Api) -> None:
    inner = (
        'withEnvVariable(name: "LANG", value: "en") {'
        ' withEnvVariable(name: "P", value: "$LANG-${LANG}", expand: true) {'
        ' withoutEnvVariable(name: "PATH") { withWorkdir(path: "sub") { withUser(name: "0") {'
        ' withExec(args: ["echo", "$P"], expand: true) { id workdir user envVariable(name: "P")'
        " } } } } } }"
    )
    data = await api.data(chain(inner))
    node = data["container"]["from"]
    for key in ("withEnvVariable", "withEnvVariable", "withoutEnvVariable", "withWorkdir"):
        node = node[key]
    ctr = node["withUser"]["withExec"]
    assert ctr["workdir"] == "/app/sub" and ctr["user"] == "0"
    assert ctr["envVariable"] == "en-en"
    op = api.value(ctr["id"]).last_exec
    assert op.args == ("echo", "en-en")
    assert op.env == (
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=en",
        "P=en-en",
    )
    assert op.cwd == "/app/sub" and op.user == "0"


async def test_entrypoint_and_default_args(api: Api) -> None:
    inner = (
        'withEntrypoint(args: ["python", "-u"], keepDefaultArgs: true) {'
        ' withExec(args: ["x.py"], useEntrypoint: true) { id }'
        ' withDefaultArgs(args: ["y.py"]) { entrypoint defaultArgs stdout } }'
    )
    data = await api.data(chain(inner))
    node = data["container"]["from"]["withEntrypoint"]
    assert api.value(node["withExec"]["id"]).last_exec.args == ("python", "-u", "x.py")
    assert node["withDefaultArgs"]["entrypoint"] == ["python", "-u"]
    assert node["withDefaultArgs"]["defaultArgs"] == ["y.py"]
    # stdout without an exec runs the default command, as Dagger does
    assert node["withDefaultArgs"]["stdout"] == "ran python -u y.py\n"


async def test_stdout_without_any_command_is_a_clear_error(api: Api) -> None:
    result = await api.run("{ container { stdout } }")
    assert result.errors and "no command has been set" in result.errors[0].message


async def test_exit_code_with_expect_any_and_exec_errors(api: Api) -> None:
    api.solver.exit_codes[("false",)] = 1
    data = await api.data(chain('withExec(args: ["false"], expect: ANY) { exitCode stderr }'))
    assert pick(data, "container", "from", "withExec", "exitCode") == 1
    result = await api.run(chain('withExec(args: ["false"]) { stdout }'))
    assert result.errors is not None
    error = result.errors[0]
    assert isinstance(error.original_error, ExecError)
    assert error.original_error.exit_code == 1
    assert error.path == ["container", "from", "withExec", "stdout"]


async def test_mounts_become_exec_mounts_and_outputs(api: Api, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "one.txt").write_text("1")
    data = await api.data(
        '{ host { directory(path: "src") { id } file(path: "one.txt") { id } }'
        ' cacheVolume(key: "pip") { id } }'
    )
    src, one = data["host"]["directory"]["id"], data["host"]["file"]["id"]
    cache = data["cacheVolume"]["id"]
    inner = (
        f'withMountedDirectory(path: "src", source: "{src}") {{'
        f' withMountedDirectory(path: "/ro", source: "{src}", readOnly: true) {{'
        f' withMountedFile(path: "/one", source: "{one}") {{'
        f' withMountedCache(path: "/root/.cache", cache: "{cache}", sharing: LOCKED) {{'
        ' withMountedTemp(path: "/tmp", size: 1024) {'
        ' withExec(args: ["make"]) { id directory(path: "src") { id } file(path: "/one") { id }'
        " } } } } } }"
    )
    data = await api.data(chain(inner))
    node = data["container"]["from"]
    for key in ("withMountedDirectory",) * 2 + ("withMountedFile", "withMountedCache"):
        node = node[key]
    ctr = node["withMountedTemp"]["withExec"]
    op = api.value(ctr["id"]).last_exec
    assert isinstance(op, Exec)
    by_target = {m.target: m for m in op.mounts}
    assert set(by_target) == {"/app/src", "/ro", "/one", "/root/.cache", "/tmp"}
    assert by_target["/app/src"].kind == "bind" and not by_target["/app/src"].readonly
    assert isinstance(by_target["/app/src"].source.op, HostDirectory)
    assert by_target["/app/src"].source.op.path == str(tmp_path / "src")
    assert by_target["/ro"].readonly
    assert by_target["/one"].source_path == "/one.txt"
    assert by_target["/root/.cache"].kind == "cache"
    assert by_target["/root/.cache"].cache_id == "pip"
    assert by_target["/root/.cache"].sharing == "LOCKED"
    assert by_target["/tmp"].kind == "tmpfs" and by_target["/tmp"].size == 1024
    # writable binds yield outputs 1.. in mount order: the next exec sees what this one wrote
    mounted_src = api.value(ctr["directory"]["id"])
    assert mounted_src == Directory(Ref(op, 1), "/")
    assert api.value(ctr["file"]["id"]) == File(Ref(op, 2), "/one.txt")
    assert api.solver.solved == []


async def test_files_written_into_the_rootfs_and_mounted_directories(api: Api) -> None:
    inner = (
        'withNewFile(path: "a.txt", contents: "A", permissions: 384) {'
        ' file(path: "/app/a.txt") { id } rootfs { id }'
        ' withMountedDirectory(path: "/m", source: "DIR") {'
        ' withNewFile(path: "/m/b.txt", contents: "B") { directory(path: "/m") { id } } } }'
    )
    scratch = (await api.data("{ directory { id } }"))["directory"]["id"]
    data = await api.data(chain(inner.replace("DIR", scratch)))
    node = data["container"]["from"]["withNewFile"]
    file = api.value(node["file"]["id"])
    assert isinstance(file.ref.op, MkFile)
    assert file.ref.op.path == "/app/a.txt" and file.ref.op.mode == 0o600
    assert file.path == "/app/a.txt"
    assert api.value(node["rootfs"]["id"]).ref == file.ref
    mounted = api.value(node["withMountedDirectory"]["withNewFile"]["directory"]["id"])
    assert isinstance(mounted.ref.op, MkFile)
    assert mounted.ref.op.path == "/b.txt" and mounted.ref.op.base == Ref(Scratch())


async def test_named_owner_is_resolved_by_a_copy(api: Api) -> None:
    data = await api.data(
        chain(
            'withNewFile(path: "/f", contents: "x", owner: "app:app") { file(path: "/f") { id } }'
        )
    )
    file = api.value(pick(data, "container", "from", "withNewFile", "file", "id"))
    assert isinstance(file.ref.op, Copy) and file.ref.op.owner == "app:app"
    numeric = await api.data(
        chain('withNewFile(path: "/f", contents: "x", owner: "7:8") { file(path: "/f") { id } }')
    )
    op = api.value(pick(numeric, "container", "from", "withNewFile", "file", "id")).ref.op
    assert isinstance(op, MkFile) and (op.uid, op.gid) == (7, 8)


async def test_redirected_stdout_is_part_of_the_exec_and_stays_lazy(api: Api) -> None:
    data = await api.data(
        chain(
            'withExec(args: ["echo", "hi"], redirectStdout: "out.txt") {'
            ' file(path: "/app/out.txt") { id } }'
        )
    )
    file = api.value(pick(data, "container", "from", "withExec", "file", "id"))
    assert isinstance(file.ref.op, Exec)
    assert file.ref.op.redirect_stdout == "/app/out.txt" and file.ref.op.redirect_stderr == ""
    assert api.solver.ran == []  # asking for the file's ID ran nothing


async def test_ids_load_back_through_node_and_load_from_id(api: Api) -> None:
    ctr_id = await container_id(api, 'withExec(args: ["echo", "x"])')
    data = await api.data(
        "query($id: ID!) { node(id: $id) { id ... on Container { stdout } }"
        " loadContainerFromID(id: $id) { exitCode } }",
        id=ctr_id,
    )
    assert data["node"] == {"id": ctr_id, "stdout": "ran echo x\n"}
    assert data["loadContainerFromID"] == {"exitCode": 0}
    # continuing a chain from a loaded object gives the same objects as the full chain
    direct = pick(
        await api.data(chain('withExec(args: ["echo", "x"]) { withUser(name: "1") { id } }')),
        "container",
        "from",
        "withExec",
        "withUser",
        "id",
    )
    via = await api.data(
        'query($id: ID!) { loadContainerFromID(id: $id) { withUser(name: "1") { id } } }',
        id=ctr_id,
    )
    assert via["loadContainerFromID"]["withUser"]["id"] == direct


async def test_unknown_and_wrong_type_ids_are_clear_errors(api: Api, tmp_path: Path) -> None:
    unknown = "dirk:Container:" + "a" * 52
    result = await api.run("query($id: ID!) { loadContainerFromID(id: $id) { id } }", id=unknown)
    assert result.errors
    assert "valid only in the session that created them" in result.errors[0].message
    dir_id = (await api.data("{ directory { id } }"))["directory"]["id"]
    result = await api.run("query($id: ID!) { loadContainerFromID(id: $id) { id } }", id=dir_id)
    assert result.errors and "is a Directory, but a Container is expected" in str(result.errors)
    # an ID of another session is unknown here
    other = Api(tmp_path)
    result = await other.run("query($id: ID!) { node(id: $id) { id } }", id=dir_id)
    assert result.errors and "unknown ID" in result.errors[0].message
    # the Python SDK sends integer-looking strings as Int literals
    result = await api.run("{ node(id: 123) { id } }")
    assert result.errors and "unknown ID" in result.errors[0].message


async def test_fields_without_a_resolver_say_so(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import graphql

    import dirk.api.schema as schema_module
    from dirk.schema import load_sdl

    from . import api_fakes

    sdl = load_sdl() + "\nextend type Container { noResolver(name: String!): Void }"
    monkeypatch.setattr(schema_module, "load_schema", lambda: graphql.build_schema(sdl))
    monkeypatch.setattr(api_fakes, "_SCHEMA", None)
    result = await api.run('{ container { noResolver(name: "x") } }')
    assert result.errors
    assert result.errors[0].message == "Container.noResolver is not supported by dirk yet"
    monkeypatch.setattr(api_fakes, "_SCHEMA", None)


async def test_sync_solves_the_rootfs_and_returns_the_id(api: Api) -> None:
    data = await api.data(chain('withExec(args: ["true"]) { id sync }'))
    node = pick(data, "container", "from", "withExec")
    assert node["sync"] == node["id"]
    assert [op.args for op in api.solver.ran] == [("true",)]


async def test_labels_and_exposed_ports(api: Api) -> None:
    data = await api.data(
        chain('withLabel(name: "a", value: "1") { label(name: "a") labels { id name value } }')
    )
    node = pick(data, "container", "from", "withLabel")
    assert node["label"] == "1"
    assert [(x["name"], x["value"]) for x in node["labels"]] == [("a", "1")]
    loaded = await api.data(
        "query($id: ID!) { loadLabelFromID(id: $id) { value } }", id=node["labels"][0]["id"]
    )
    assert loaded == {"loadLabelFromID": {"value": "1"}}


async def test_with_rootfs_of_a_subdirectory_is_rebased_for_exec(api: Api) -> None:
    dir_id = pick(
        await api.data(
            '{ directory { withNewDirectory(path: "r") { directory(path: "r") { id } } } }'
        ),
        "directory",
        "withNewDirectory",
        "directory",
        "id",
    )
    data = await api.data(
        "query($d: ID!) { container { withRootfs(directory: $d) {"
        ' withExec(args: ["true"]) { id } } } }',
        d=dir_id,
    )
    op = api.value(pick(data, "container", "withRootfs", "withExec", "id")).last_exec
    assert isinstance(op.root.op, Copy) and op.root.op.source_path == "/r"


def test_container_values_are_immutable() -> None:
    import attrs

    assert attrs.has(Container) and Container.__attrs_attrs__  # type: ignore[attr-defined]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Container(rootfs=Directory(Ref(Scratch())), platform="linux/amd64").workdir = "/x"  # type: ignore[misc]
