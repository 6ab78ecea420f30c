"""Secret resolvers against a stand-in solver: values stay out of IDs and operations, URIs are
read from the client's side on use, and errors name the secret and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirk.api.values import Container
from dirk.solver.keys import cache_key
from dirk.solver.ops import Exec

from .api_fakes import Api

pytestmark = pytest.mark.anyio


@pytest.fixture
def api(tmp_path: Path) -> Api:
    api = Api(tmp_path)
    api.session.client_env = {"API_TOKEN": "from-env", "PATH": "/usr/bin:/bin"}
    return api


async def test_set_secret_keeps_the_value_out_of_its_id(api: Api) -> None:
    data = await api.data('{ setSecret(name: "token", plaintext: "hunter2") { id name uri } }')
    secret = data["setSecret"]
    assert secret["name"] == "token" and secret["uri"] == ""
    assert "hunter2" not in secret["id"]
    again = await api.data('{ setSecret(name: "token", plaintext: "hunter2") { id } }')
    assert again["setSecret"]["id"] == secret["id"]
    loaded = await api.data(
        "query($s: ID!) { loadSecretFromID(id: $s) { plaintext } }", s=secret["id"]
    )
    assert loaded["loadSecretFromID"]["plaintext"] == "hunter2"
    other = await api.data('{ setSecret(name: "token", plaintext: "other") { id plaintext } }')
    assert other["setSecret"]["id"] != secret["id"]
    assert other["setSecret"]["plaintext"] == "other"


async def test_uri_secrets_read_the_clients_side(api: Api, tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("from-file")
    data = await api.data(
        '{ e: secret(uri: "env://API_TOKEN") { name uri plaintext }'
        ' f: secret(uri: "file://token.txt") { plaintext }'
        ' c: secret(uri: "cmd://printf from-cmd") { plaintext } }'
    )
    assert data["e"] == {
        "name": "env://API_TOKEN",
        "uri": "env://API_TOKEN",
        "plaintext": "from-env",
    }
    assert data["f"]["plaintext"] == "from-file"
    assert data["c"]["plaintext"] == "from-cmd"


async def test_an_id_reads_nothing_and_errors_name_the_uri(api: Api) -> None:
    # asking for the id of a secret whose variable is missing is fine: nothing is read
    data = await api.data('{ secret(uri: "env://MISSING") { id } }')
    assert data["secret"]["id"].startswith("dirk:Secret:")
    result = await api.run('{ secret(uri: "env://MISSING") { plaintext } }')
    assert result.errors
    message = result.errors[0].message
    assert "env://MISSING" in message and "export it" in message
    result = await api.run('{ secret(uri: "vault://kv/x") { id } }')
    assert result.errors and "unknown scheme" in result.errors[0].message


BUSYBOX = 'container { from(address: "reg.local/busybox:1") { %s } }'


async def secret_id(api: Api, name: str, value: str) -> str:
    data = await api.data(
        "query($n: String!, $v: String!) { setSecret(name: $n, plaintext: $v) { id } }",
        n=name,
        v=value,
    )
    return str(data["setSecret"]["id"])


async def last_exec(api: Api, inner: str, **ids: str) -> Exec:
    """The last exec of the container `inner` (a chain of calls on busybox) builds."""
    params = ", ".join(f"${k}: ID!" for k in ids)
    chain = inner.rstrip("} ")
    closing = inner[len(chain) :]
    data = await api.data(
        f"query({params}) {{ " + BUSYBOX % (chain + " { id }" + closing) + " }", **ids
    )
    node = data
    while "id" not in node:
        (node,) = node.values()
    container = api.value(node["id"])
    assert isinstance(container, Container) and container.last_exec is not None
    return container.last_exec


async def test_a_secret_variable_reaches_the_exec_by_reference_only(api: Api) -> None:
    token = await secret_id(api, "token", "hunter2")
    op = await last_exec(
        api,
        'withEnvVariable(name: "T", value: "plain")'
        ' { withSecretVariable(name: "T", secret: $s)'
        ' { withExec(args: ["sh", "-c", "echo $T"]) } }',
        s=token,
    )
    assert [(name, ref.cache_id) for name, ref in op.secret_env] == [("T", "name:token")]
    assert not any(e.startswith("T=") for e in op.env)  # the plain variable was replaced
    assert "hunter2" not in repr(op) and "hunter2" not in cache_key(op, ["root"])


async def test_the_cache_key_covers_the_name_not_the_value(api: Api) -> None:
    keys = []
    for name, value in (("token", "v1"), ("token", "v2"), ("other", "v1")):
        sid = await secret_id(api, name, value)
        op = await last_exec(
            api,
            'withSecretVariable(name: "T", secret: $s) { withExec(args: ["true"]) }',
            s=sid,
        )
        keys.append(cache_key(op, ["root"]))
    assert keys[0] == keys[1] != keys[2]


async def test_secret_variables_stay_out_of_the_image_config(api: Api) -> None:
    token = await secret_id(api, "token", "hunter2")
    query = (
        "query($s: ID!) { "
        + BUSYBOX
        % (
            'withSecretVariable(name: "T", secret: $s) {'
            ' envVariables { name } t: envVariable(name: "T")'
            ' withoutSecretVariable(name: "T") { withExec(args: ["true"]) { id } } }'
        )
        + " }"
    )
    data = await api.data(query, s=token)
    with_secret = data["container"]["from"]["withSecretVariable"]
    assert "T" not in [e["name"] for e in with_secret["envVariables"]]
    assert with_secret["t"] is None
    without = api.value(with_secret["withoutSecretVariable"]["withExec"]["id"])
    assert isinstance(without, Container) and without.last_exec is not None
    assert without.last_exec.secret_env == ()


async def test_a_mounted_secret_is_a_secret_mount_of_the_exec(api: Api) -> None:
    token = await secret_id(api, "key", "k3y")
    op = await last_exec(
        api,
        'withEnvVariable(name: "D", value: "/run/keys")'
        ' { withMountedSecret(path: "$D/id", source: $s, owner: "app", expand: true)'
        ' { withExec(args: ["cat", "/run/keys/id"]) } }',
        s=token,
    )
    (mount,) = op.mounts
    assert (mount.target, mount.kind, mount.owner, mount.mode) == (
        "/run/keys/id",
        "secret",
        "app",
        0o400,
    )
    assert mount.secret is not None and mount.secret.cache_id == "name:key"
    assert op.secrets() == (mount.secret,)
    result = await api.run(
        "query($s: ID!) { "
        + BUSYBOX % 'withMountedSecret(path: "/k", source: $s, mode: 99999) { id }'
        + " }",
        s=token,
    )
    assert result.errors and "99999 is not a file mode" in result.errors[0].message


async def test_using_an_unreadable_uri_secret_names_it(api: Api) -> None:
    data = await api.data('{ secret(uri: "file://nope.txt") { id } }')
    result = await api.run(
        "query($s: ID!) { " + BUSYBOX % 'withSecretVariable(name: "T", secret: $s) { id }' + " }",
        s=data["secret"]["id"],
    )
    assert result.errors
    assert "file://nope.txt" in result.errors[0].message
    assert "create it or fix the path" in result.errors[0].message
