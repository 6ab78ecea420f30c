"""Images out of dirk, checked with other tools: publish to the local registry (and to one that
wants a password), export to the host, tarballs in and out, media types and compression, and
a multi-platform index. What dirk wrote is read back by skopeo and umoci, or pulled again by
dirk and run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import dirk
from dirk.errors import QueryError
from tests.integration.auth_registry import AuthRegistry
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

REPO = "127.0.0.1:5000/images-out-test"


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def client(engine: RunningEngine, tmp_path: Path) -> Iterator[dirk.Client[dirk.Sync]]:
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as c:
        yield c


def unique(name: str) -> str:
    return f"{REPO}/{name}-{uuid.uuid4().hex[:8]}"


def skopeo(*args: str) -> str:
    done = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, f"skopeo {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def inspect(target: str, *extra: str, raw: bool = False, config: bool = False) -> Any:
    flags = ["--config", "--raw"] if config else ["--raw"] if raw else []
    tls = ["--tls-verify=false"] if target.startswith("docker://") else []
    return json.loads(skopeo("inspect", *tls, *flags, *extra, target))


def app(client: dirk.Client[dirk.Sync], python_ref: str, token: str) -> dirk.Container[dirk.Sync]:
    """The python image with one layer more and image settings of its own."""
    return (
        client.container()
        .from_(python_ref)
        .with_new_file("/app/token.txt", token + "\n")
        .with_exec(["sh", "-c", "echo built > /app/built.txt"])
        .with_env_variable("APP_MODE", "test")
        .with_workdir("/app")
        .with_entrypoint(["python3", "-c"])
        .with_default_args(["print(open('/app/token.txt').read().strip())"])
        .with_label("org.example.token", token)
        .with_annotation("org.example.note", "annotated")
        .with_docker_healthcheck(["python3", "-c", "0"], interval="1m30s", retries=3)
    )


# --- publish -------------------------------------------------------------------------------------


def test_publish_then_inspect_unpack_and_run_it_again(
    client: dirk.Client[dirk.Sync], python_ref: str, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    address = unique("app") + ":v1"
    published = app(client, python_ref, token).publish(address)
    assert re.fullmatch(re.escape(address) + r"@sha256:[0-9a-f]{64}", published), published

    config = inspect(f"docker://{address}", config=True)
    assert "APP_MODE=test" in config["config"]["Env"]
    assert any(e.startswith("PATH=") for e in config["config"]["Env"])  # the base's env stays
    assert config["config"]["Entrypoint"] == ["python3", "-c"]
    assert config["config"]["WorkingDir"] == "/app"
    assert config["config"]["Labels"]["org.example.token"] == token
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"]["Healthcheck"] == {
        "Test": ["CMD", "python3", "-c", "0"],
        "Interval": 90 * 10**9,
        "Retries": 3,
    }
    manifest = inspect(f"docker://{address}", raw=True)
    assert manifest["annotations"] == {"org.example.note": "annotated"}
    assert len(config["history"]) >= len(config["rootfs"]["diff_ids"])
    base = inspect(f"docker://{python_ref}", config=True)
    assert (
        config["rootfs"]["diff_ids"][: len(base["rootfs"]["diff_ids"])]
        == (base["rootfs"]["diff_ids"])
    )
    assert len(config["rootfs"]["diff_ids"]) == len(base["rootfs"]["diff_ids"]) + 2

    skopeo(
        "copy", "--quiet", "--src-tls-verify=false", f"docker://{address}", f"oci:{tmp_path}/oci:x"
    )
    subprocess.run(
        ["umoci", "unpack", "--image", f"{tmp_path}/oci:x", str(tmp_path / "bundle")],
        check=True,
        capture_output=True,
    )
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "app" / "token.txt").read_text() == token + "\n"
    assert (rootfs / "app" / "built.txt").read_text() == "built\n"
    assert (rootfs / "usr" / "bin" / "python3").exists()

    again = client.container().from_(published.split(":v1@")[0] + ":v1")
    assert again.with_exec([], use_entrypoint=True).stdout() == token + "\n"
    assert again.env_variable("APP_MODE") == "test"


def test_publish_a_multi_platform_index(client: dirk.Client[dirk.Sync], busybox_ref: str) -> None:
    address = unique("multi") + ":latest"
    amd64 = client.container().from_(busybox_ref).with_new_file("/arch", "amd64\n")
    arm64 = (
        client.container(platform="linux/arm64")
        .with_new_file("/arch", "arm64\n")
        .with_entrypoint(["/bin/sh"])
    )
    assert arm64.platform() == "linux/arm64/v8"
    published = amd64.publish(address, platform_variants=[arm64])
    index = inspect(f"docker://{address}", raw=True)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = sorted(
        (m["platform"]["architecture"], m["platform"].get("variant", ""))
        for m in index["manifests"]
    )
    assert platforms == [("amd64", ""), ("arm64", "v8")]
    assert published.endswith("@" + _digest_of_tag(address))
    arm_config = inspect(f"docker://{address}", "--override-arch", "arm64", config=True)
    assert arm_config["architecture"] == "arm64" and arm_config["variant"] == "v8"
    assert arm_config["config"]["Entrypoint"] == ["/bin/sh"]
    read_back = client.container(platform="linux/arm64").from_(address).file("/arch").contents()
    assert read_back == "arm64\n"


def _digest_of_tag(address: str) -> str:
    name, _, tag = address.rpartition(":")
    host, _, repo = name.partition("/")
    r = httpx.head(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        trust_env=False,
    )
    return str(r.headers["docker-content-digest"])


# --- a registry that wants a password, and what a publish sends it -------------------------


def test_publish_with_registry_auth_and_a_second_publish_uploads_nothing(
    client: dirk.Client[dirk.Sync], busybox_ref: str, auth_registry: AuthRegistry
) -> None:
    address = f"{auth_registry.address}/team/app:1"
    token = uuid.uuid4().hex
    image = client.container().from_(busybox_ref).with_new_file("/token", token)

    with pytest.raises(QueryError, match="withRegistryAuth"):
        image.publish(address)
    wrong = client.set_secret("wrong", "not-the-password")
    with pytest.raises(QueryError, match="refused the credentials of user 'alice'"):
        image.with_registry_auth(address, "alice", wrong).publish(address)

    password = client.set_secret("password", "wonderland")
    authed = image.with_registry_auth(address, "alice", password)
    before = len(auth_registry.uploads())
    first = authed.publish(address)
    sent = auth_registry.uploads()[before:]
    assert sent, "the first publish uploaded no blob"

    creds = ["--creds", "alice:wonderland"]
    config = inspect(f"docker://{address}", *creds, config=True)
    assert config["rootfs"]["diff_ids"]

    second = authed.publish(address)
    assert second == first
    assert auth_registry.uploads()[before + len(sent) :] == []

    # To another repository of the same registry: every blob is mounted, none sent again.
    before = len(auth_registry.uploads())
    authed.publish(f"{auth_registry.address}/team/other:1")
    mounts = auth_registry.uploads()[before:]
    assert mounts and all(m.startswith('"POST') and "mount=" in m for m in mounts), mounts

    with pytest.raises(QueryError, match="withRegistryAuth"):
        authed.without_registry_auth(address).publish(address)


def test_publish_reuses_the_pulled_layer_blobs(
    client: dirk.Client[dirk.Sync], busybox_ref: str
) -> None:
    """The base layers go out as the very blobs that were pulled (not re-archived)."""
    address = unique("mounted")
    published = client.container().from_(busybox_ref).with_new_file("/x", "1").publish(address)
    manifest = inspect(f"docker://{published.split('@')[0]}", raw=True)
    base = inspect(f"docker://{busybox_ref}", raw=True)
    assert [m["digest"] for m in manifest["layers"][:-1]] == [m["digest"] for m in base["layers"]]


# --- export and tarballs -------------------------------------------------------------------------


def test_export_writes_an_oci_archive_atomically_and_never_through_a_symlink(
    client: dirk.Client[dirk.Sync], busybox_ref: str, tmp_path: Path
) -> None:
    image = client.container().from_(busybox_ref).with_env_variable("E", "1")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    target = tmp_path / "out" / "image.tar"
    target.parent.mkdir()
    target.symlink_to(outside)

    written = image.export("out/image.tar")
    assert written == str(target)
    assert outside.read_text() == "keep me\n"
    assert target.is_file() and not target.is_symlink()
    assert os.listdir(target.parent) == ["image.tar"]  # no temporary file left behind
    config = inspect(f"oci-archive:{target}", config=True)
    assert "E=1" in config["config"]["Env"]

    # Replaced by a rename: a reader holding the old file keeps seeing the old file whole.
    with open(target, "rb") as old:
        before = old.read()
        old.seek(0)
        image.with_env_variable("E", "2").export(str(target))
        assert old.read() == before
    assert "E=2" in inspect(f"oci-archive:{target}", config=True)["config"]["Env"]

    with pytest.raises(QueryError, match="is a directory"):
        image.export(str(tmp_path))


def test_docker_media_types_give_a_docker_archive(
    client: dirk.Client[dirk.Sync], busybox_ref: str, tmp_path: Path
) -> None:
    target = tmp_path / "docker.tar"
    client.container().from_(busybox_ref).with_new_file("/d", "d").export(
        str(target), media_types=dirk.ImageMediaTypes.DockerMediaTypes
    )
    info = inspect(f"docker-archive:{target}")
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    raw = inspect(f"oci-archive:{target}", raw=True)
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert all(
        layer["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        for layer in raw["layers"]
    )


@pytest.mark.parametrize(
    ("compression", "media_type"),
    [
        (dirk.ImageLayerCompression.Zstd, "application/vnd.oci.image.layer.v1.tar+zstd"),
        (dirk.ImageLayerCompression.Uncompressed, "application/vnd.oci.image.layer.v1.tar"),
        (dirk.ImageLayerCompression.Gzip, "application/vnd.oci.image.layer.v1.tar+gzip"),
    ],
)
def test_forced_compression_gives_its_media_type(
    client: dirk.Client[dirk.Sync],
    busybox_ref: str,
    tmp_path: Path,
    compression: dirk.ImageLayerCompression,
    media_type: str,
) -> None:
    image = client.container().from_(busybox_ref).with_new_file("/c", "c")
    target = tmp_path / "c.tar"
    image.export(str(target), forced_compression=compression)
    raw = inspect(f"oci-archive:{target}", raw=True)
    assert [layer["mediaType"] for layer in raw["layers"]] == [media_type] * len(raw["layers"])
    magic = {"zstd": b"\x28\xb5\x2f\xfd", "gzip": b"\x1f\x8b"}
    with tarfile.open(target) as archive:
        for layer in raw["layers"]:
            f = archive.extractfile("blobs/sha256/" + layer["digest"].removeprefix("sha256:"))
            assert f is not None
            head = f.read(262)
            if media_type.endswith("zstd"):
                assert head.startswith(magic["zstd"])
            elif media_type.endswith("gzip"):
                assert head.startswith(magic["gzip"])
            else:
                assert head[257:262] == b"ustar"
    # The same diff_ids whatever the compression: the layers are the same tars.
    config = inspect(f"oci-archive:{target}", config=True)
    base = inspect(f"docker://{busybox_ref}", config=True)
    assert config["rootfs"]["diff_ids"][:-1] == base["rootfs"]["diff_ids"]


def test_as_tarball_and_import_round_trip(
    client: dirk.Client[dirk.Sync], busybox_ref: str, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    original = (
        client.container()
        .from_(busybox_ref)
        .with_exec(["sh", "-c", f"mkdir -p /data && echo {token} > /data/t && rm -f /bin/vi"])
        .with_env_variable("ROUND", "trip")
        .with_entrypoint(["/bin/sh", "-c"])
        .with_label("l", "v")
        .with_workdir("/data")
    )
    tarball = original.as_tarball()
    imported = client.container().import_(tarball)
    assert imported.env_variable("ROUND") == "trip"
    assert imported.entrypoint() == ["/bin/sh", "-c"]
    assert imported.label("l") == "v"
    assert imported.workdir() == "/data"
    assert imported.file("/data/t").contents() == token + "\n"
    assert imported.rootfs().entries() == original.rootfs().entries()
    assert "vi" not in imported.directory("/bin").entries()  # the whiteout came through
    assert imported.with_exec(["cat /data/t"], use_entrypoint=True).stdout() == token + "\n"
    # The same image again: exporting the import gives the original's manifest digest.
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    original.export(str(a))
    imported.export(str(b))
    assert inspect(f"oci-archive:{a}")["Digest"] == inspect(f"oci-archive:{b}")["Digest"]
