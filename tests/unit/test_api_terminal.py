"""`Container.terminal`, `Directory.terminal`, `Service.terminal` and `withDefaultTerminalCmd`
against the fake solver: which command runs in which container, when a terminal is refused,
that a terminal call is made once per identity, and that nesting reaches the exec; the
`Terminal` type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest

from dirk.errors import TerminalError
from dirk.solver.keys import cache_key
from dirk.solver.terminal import OpenTerminal, TerminalRequest
from dirk.workers.hostaccess import HostUser

from .api_fakes import Api

pytestmark = pytest.mark.anyio

IMAGE = 'container { from(address: "reg.local/busybox:1") { %s } }'


@attrs.define
class HeldTerminal:
    """A client holding the session's terminal (the fake solver never opens it)."""

    attached: bool = True
    on_failure: bool = False

    @asynccontextmanager
    async def open(self, request: TerminalRequest) -> AsyncIterator[OpenTerminal]:
        raise AssertionError("the fake solver opens no terminal")
        yield


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


@pytest.fixture
def held(api: Api) -> Api:
    api.session.terminals = HeldTerminal()
    return api


async def test_terminal_without_a_held_terminal_says_how_to_get_one(api: Api) -> None:
    result = await api.run("{ " + IMAGE % "terminal { id }" + " }")
    assert result.errors is not None
    message = result.errors[0].message
    assert "no terminal is attached" in message
    assert "dirk run -i" in message
    assert isinstance(result.errors[0].original_error, TerminalError)
    assert api.solver.terminals == []


async def test_terminal_runs_sh_in_the_container_and_returns_it_unchanged(held: Api) -> None:
    data = await held.data(
        "{ "
        + IMAGE
        % 'withEnvVariable(name: "A", value: "1") { terminal { envVariable(name: "A") workdir } }'
        + " }"
    )
    ctr = data["container"]["from"]["withEnvVariable"]["terminal"]
    assert ctr == {"envVariable": "1", "workdir": "/app"}
    [(op, request)] = held.solver.terminals
    assert op.args == ("sh",)
    assert "A=1" in op.env
    assert (op.cwd, op.user) == ("/app", "app")
    assert request == TerminalRequest("Container.terminal", ("sh",))


async def test_terminal_command_default_and_override(held: Api) -> None:
    await held.data(
        "{ " + IMAGE % 'withDefaultTerminalCmd(args: ["bash", "-l"]) { terminal { id } }' + " }"
    )
    await held.data(
        "{ "
        + IMAGE % 'withDefaultTerminalCmd(args: ["bash"]) { terminal(cmd: ["python3"]) { id } }'
        + " }"
    )
    assert [op.args for op, _ in held.solver.terminals] == [("bash", "-l"), ("python3",)]


async def test_a_terminal_call_opens_once_per_identity(held: Api) -> None:
    query = "{ " + IMAGE % "terminal { id }" + " }"
    await held.data(query)
    await held.data(query)
    assert len(held.solver.terminals) == 1


async def test_privileged_terminals_need_a_root_session(held: Api) -> None:
    held.session.owner = HostUser.of_uid(1000, 1000)
    for field in (
        "terminal(insecureRootCapabilities: true) { id }",
        'withDefaultTerminalCmd(args: ["sh"], insecureRootCapabilities: true) { id }',
    ):
        result = await held.run("{ " + IMAGE % field + " }")
        assert result.errors is not None
        assert "needs a session opened by root" in result.errors[0].message
    assert held.solver.terminals == []


async def test_a_privileged_default_terminal_cmd_runs_privileged(held: Api) -> None:
    await held.data(
        "{ "
        + IMAGE
        % 'withDefaultTerminalCmd(args: ["sh"], insecureRootCapabilities: true) { terminal { id } }'
        + " }"
    )
    [(op, _)] = held.solver.terminals
    assert op.insecure_root_capabilities


async def test_directory_terminal_mounts_the_directory_at_src(held: Api) -> None:
    ctr = await held.data("{ " + IMAGE % "id" + " }")
    ctr_id = ctr["container"]["from"]["id"]
    new_file = 'withNewFile(path: "f", contents: "x")'
    await held.data(
        f'{{ directory {{ {new_file} {{ terminal(container: "{ctr_id}") {{ id }} }} }} }}'
    )
    [(op, request)] = held.solver.terminals
    assert op.args == ("sh",)
    assert op.cwd == "/src"
    [mount] = op.mounts
    assert (mount.target, mount.readonly) == ("/src", True)
    assert request.title == "Directory.terminal"


async def test_execs_carry_the_default_terminal_cmd_outside_their_key(api: Api) -> None:
    data = await api.data(
        "{ "
        + IMAGE % 'withDefaultTerminalCmd(args: ["bash"]) { withExec(args: ["false"]) { id } }'
        + " }"
    )
    ctr = api.value(data["container"]["from"]["withDefaultTerminalCmd"]["withExec"]["id"])
    op = ctr.last_exec
    assert op.debug_shell == ("bash",)
    assert cache_key(op, ["k"]) == cache_key(attrs.evolve(op, debug_shell=()), ["k"])


SERVICE = (
    'container { from(address: "reg.local/busybox:1") { withExposedPort(port: 80) {'
    ' asService(args: ["httpd", "-f"]) { id } } } }'
)


async def _service_id(api: Api, query: str = SERVICE) -> str:
    data = await api.data("{ " + query + " }")
    return str(data["container"]["from"]["withExposedPort"]["asService"]["id"])


async def test_service_terminal_opens_sh_in_the_service_and_returns_it(held: Api) -> None:
    sid = await _service_id(held)
    data = await held.data(f'{{ loadServiceFromID(id: "{sid}") {{ terminal {{ id }} }} }}')
    assert data["loadServiceFromID"]["terminal"]["id"].startswith("dirk:Service:")
    await held.data(
        f'{{ loadServiceFromID(id: "{sid}") {{ terminal(cmd: ["ash", "-l"]) {{ id }} }} }}'
    )
    [(service, argv, request), (_, override, _)] = held.solver.service_terminals
    assert service.exec.args == ("httpd", "-f")
    assert argv == ("sh",)
    assert override == ("ash", "-l")
    assert request == TerminalRequest("Service.terminal", ("sh",))


async def test_service_terminal_uses_the_default_terminal_cmd(held: Api) -> None:
    query = SERVICE.replace(
        "withExposedPort(port: 80) {",
        'withDefaultTerminalCmd(args: ["bash"]) { withExposedPort(port: 80) {',
    ).replace("{ id } } } }", "{ id } } } } }")
    data = await held.data("{ " + query + " }")
    sid = data["container"]["from"]["withDefaultTerminalCmd"]["withExposedPort"]["asService"]["id"]
    await held.data(f'{{ loadServiceFromID(id: "{sid}") {{ terminal {{ id }} }} }}')
    [(_, argv, _)] = held.solver.service_terminals
    assert argv == ("bash",)


async def test_service_terminal_refuses_a_host_service_and_needs_a_terminal(
    api: Api, held: Api
) -> None:
    sid = await _service_id(api)
    api.session.terminals = None
    result = await api.run(f'{{ loadServiceFromID(id: "{sid}") {{ terminal {{ id }} }} }}')
    assert result.errors is not None
    assert isinstance(result.errors[0].original_error, TerminalError)
    api.session.terminals = HeldTerminal()
    data = await api.data(
        '{ host { service(ports: [{frontend: 80, backend: 8080}], host: "localhost") { id } } }'
    )
    host_sid = data["host"]["service"]["id"]
    result = await api.run(f'{{ loadServiceFromID(id: "{host_sid}") {{ terminal {{ id }} }} }}')
    assert result.errors is not None
    assert "runs no container" in result.errors[0].message
    assert api.solver.service_terminals == []


async def test_nesting_reaches_the_exec_of_terminals_and_services(held: Api) -> None:
    await held.data("{ " + IMAGE % "terminal(experimentalPrivilegedNesting: true) { id }" + " }")
    await held.data(
        "{ " + IMAGE % 'withDefaultTerminalCmd(args: ["sh"], experimentalPrivilegedNesting: true)'
        " { terminal { id } }" + " }"
    )
    await held.data("{ " + IMAGE % "terminal { id }" + " }")
    assert [op.nesting for op, _ in held.solver.terminals] == [True, True, False]
    sid = await _service_id(
        held,
        SERVICE.replace(
            'asService(args: ["httpd", "-f"])', "asService(experimentalPrivilegedNesting: true)"
        ),
    )
    assert held.value(sid).definition.exec.nesting


async def test_a_terminal_loaded_by_its_id_syncs_to_its_id(api: Api) -> None:
    from dirk.api.ids import format_id
    from dirk.api.table import SessionTable
    from dirk.api.values import Handle, Terminal

    handle = SessionTable.of(api.session).add(Handle("Terminal", "t" * 52, Terminal(("sh",))))
    tid = format_id("Terminal", handle.ident)
    data = await api.data(
        f'{{ node(id: "{tid}") {{ ... on Terminal {{ id sync }} }}'
        f' loadTerminalFromID(id: "{tid}") {{ sync }} }}'
    )
    assert data == {"node": {"id": tid, "sync": tid}, "loadTerminalFromID": {"sync": tid}}
