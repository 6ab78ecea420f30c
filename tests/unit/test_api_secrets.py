"""Secret resolvers against a stand-in solver: values stay out of IDs and operations, URIs are
read from the client's side on use, and errors name the secret and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

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
