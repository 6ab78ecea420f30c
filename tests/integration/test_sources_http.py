"""`http()` end to end: files served by a loopback server, downloaded into the blob store by a
real engine, cached by content, used by containers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dirk.engine import EngineCore
from tests.integration.source_servers import Requests, files_app, serve
from tests.integration.test_sources_git import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Served:
    def __init__(self, base: str, files: dict[str, bytes], requests: Requests) -> None:
        self.base = base
        self.files = files
        self.requests = requests


@pytest.fixture
def served() -> Iterator[Served]:
    files = {"/data/hello.txt": b"hello over http\n", "/tool.sh": b"#!/bin/sh\necho tool ran\n"}
    requests = Requests()
    with serve(files_app(files, requests=requests)) as base:
        yield Served(base, files, requests)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_content_name_and_permissions(
    engine: EngineCore, workdir: Path, served: Served, busybox_ref: str
) -> None:
    client = Client(engine, workdir)
    data = await client.data(
        "query($url: String!, $tool: String!) {"
        " plain: http(url: $url) { name contents size }"
        ' named: http(url: $url, name: "greeting") { name }'
        " tool: http(url: $tool, permissions: 493) { id } }",
        url=f"{served.base}/data/hello.txt",
        tool=f"{served.base}/tool.sh",
    )
    assert data["plain"] == {
        "name": "hello.txt",
        "contents": "hello over http\n",
        "size": len(served.files["/data/hello.txt"]),
    }
    assert data["named"]["name"] == "greeting"
    out = await client.data(
        "query($image: String!, $tool: ID!) { container { from(address: $image) {"
        ' withFile(path: "/usr/local/bin/tool", source: $tool) {'
        ' withExec(args: ["sh", "-c", "stat -c %a /usr/local/bin/tool && tool"]) { stdout }'
        " } } } }",
        image=busybox_ref,
        tool=data["tool"]["id"],
    )
    stdout = out["container"]["from"]["withFile"]["withExec"]["stdout"]
    assert stdout == "755\ntool ran\n"


async def test_checksum_is_verified(engine: EngineCore, workdir: Path, served: Served) -> None:
    client = Client(engine, workdir)
    url = f"{served.base}/data/hello.txt"
    good = _digest(served.files["/data/hello.txt"])
    data = await client.data(
        "query($url: String!, $sum: String!) { http(url: $url, checksum: $sum) { contents } }",
        url=url,
        sum=good,
    )
    assert data["http"]["contents"] == "hello over http\n"
    wrong = _digest(b"something else")
    message = await client.error_message(
        "query($url: String!, $sum: String!) { http(url: $url, checksum: $sum) { contents } }",
        url=url,
        sum=wrong,
    )
    assert "does not match the expected checksum" in message and wrong in message
    message = await client.error_message(
        'query($url: String!) { http(url: $url, checksum: "md5:abc") { contents } }', url=url
    )
    assert "sha256:<64 hex digits>" in message


async def test_a_known_checksum_needs_no_download(
    engine: EngineCore, workdir: Path, served: Served
) -> None:
    url = f"{served.base}/data/hello.txt"
    good = _digest(served.files["/data/hello.txt"])
    query = "query($url: String!, $sum: String!) { http(url: $url, checksum: $sum) { contents } }"
    await Client(engine, workdir).data(query, url=url, sum=good)
    asked = len(served.requests.paths)
    data = await Client(engine, workdir).data(query, url=url, sum=good)
    assert data["http"]["contents"] == "hello over http\n"
    assert len(served.requests.paths) == asked, "the stored blob must be used, not downloaded"


async def test_cached_by_content(
    engine: EngineCore, workdir: Path, served: Served, busybox_ref: str
) -> None:
    async def token_of(path: str) -> str:
        client = Client(engine, workdir)
        data = await client.data(
            "query($url: String!) { http(url: $url) { id } }", url=f"{served.base}{path}"
        )
        # The step prints a random token: the same token again proves a cache hit.
        out = await client.data(
            "query($image: String!, $f: ID!) { container { from(address: $image) {"
            ' withMountedFile(path: "/in/f", source: $f) {'
            ' withExec(args: ["sh", "-c", "cat /in/f; head -c 8 /dev/urandom | od -An -tx1"])'
            " { stdout } } } } }",
            image=busybox_ref,
            f=data["http"]["id"],
        )
        return str(out["container"]["from"]["withMountedFile"]["withExec"]["stdout"])

    first = await token_of("/data/hello.txt")
    assert first.startswith("hello over http\n")
    assert await token_of("/data/hello.txt") == first
    served.files["/mirror/hello.txt"] = served.files["/data/hello.txt"]
    assert await token_of("/mirror/hello.txt") == first, "the same content from another URL"
    served.files["/data/hello.txt"] = b"changed on the server\n"
    changed = await token_of("/data/hello.txt")
    assert changed.startswith("changed on the server\n")


async def test_redirects_and_errors(engine: EngineCore, workdir: Path, served: Served) -> None:
    client = Client(engine, workdir)
    data = await client.data(
        "query($url: String!) { http(url: $url) { name contents } }",
        url=f"{served.base}/redirect/data/hello.txt",
    )
    assert data["http"] == {"name": "hello.txt", "contents": "hello over http\n"}
    message = await client.error_message(
        "query($url: String!) { http(url: $url) { contents } }", url=f"{served.base}/missing"
    )
    assert "HTTP 404" in message and "/missing" in message
    message = await client.error_message('query { http(url: "http://127.0.0.1:9/x") { contents } }')
    assert "cannot download http://127.0.0.1:9/x" in message
    message = await client.error_message('query { http(url: "ftp://example.com/x") { contents } }')
    assert "http:// or https://" in message


async def test_auth_header_is_sent_and_a_wrong_one_refused(
    engine: EngineCore, workdir: Path
) -> None:
    files = {"/private.txt": b"for authorized eyes\n"}
    with serve(files_app(files, authorization="Bearer s3cr3t-t0ken")) as base:
        client = Client(engine, workdir)
        url = f"{base}/private.txt"

        async def secret(value: str) -> str:
            data = await client.data(
                'query($value: String!) { setSecret(name: "auth", plaintext: $value) { id } }',
                value=value,
            )
            return str(data["setSecret"]["id"])

        fetch = (
            "query($url: String!, $auth: ID!) { http(url: $url, authHeader: $auth) { contents } }"
        )
        good = await secret("Bearer s3cr3t-t0ken")
        data = await client.data(fetch, url=url, auth=good)
        assert data["http"]["contents"] == "for authorized eyes\n"
        message = await client.error_message(fetch, url=url, auth=await secret("Bearer wrong"))
        assert "HTTP 401" in message and "authHeader" in message
        assert "wrong" not in message
        message = await client.error_message(
            "query($url: String!) { http(url: $url) { contents } }", url=url
        )
        assert "HTTP 401" in message
