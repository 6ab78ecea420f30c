"""The test images in the local registry are whole, runnable-looking and reproducible.

Checks what a puller relies on: every digest verifies, the config says how to run the image,
and the layer holds what the tests expect. Rebuilding busybox from scratch gives the same digest.
(postgres:15 rebuilds to the same digest too, measured by hand; at 1-2 minutes a build it is
not rebuilt here.)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import MANIFEST_ACCEPT

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_test_images.py"
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pull(ref: str) -> tuple[str, dict[str, Any], dict[str, Any], tarfile.TarFile]:
    """Manifest digest, manifest, config and the unpacked layer, each checked against its digest."""
    registry, _, rest = ref.partition("/")
    name, at, digest_ref = rest.partition("@")
    tag = digest_ref if at else ""
    if not at:
        name, _, tag = rest.rpartition(":")
    with httpx.Client(base_url=f"http://{registry}/v2/{name}", trust_env=False, timeout=30) as c:
        response = c.get(f"/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        response.raise_for_status()
        digest = response.headers["Docker-Content-Digest"]
        assert sha256(response.content) == digest
        manifest = response.json()
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        blobs = {}
        for descriptor in (manifest["config"], layer):
            blob = c.get(f"/blobs/{descriptor['digest']}").raise_for_status().content
            assert sha256(blob) == descriptor["digest"]
            assert len(blob) == descriptor["size"]
            blobs[descriptor["digest"]] = blob
    config = json.loads(blobs[manifest["config"]["digest"]])
    tar_bytes = gzip.decompress(blobs[layer["digest"]])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(tar_bytes)]}
    return digest, manifest, config, tarfile.open(fileobj=io.BytesIO(tar_bytes))


def test_busybox_image_is_whole_and_runs_sh(busybox_ref: str) -> None:
    _, _, config, layer = pull(busybox_ref)
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["config"] == {"Env": [PATH], "Cmd": ["sh"], "WorkingDir": "/"}
    members = {m.name: m for m in layer.getmembers()}
    assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
    applets = subprocess.run(
        ["/bin/busybox", "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    missing = [a for a in applets if a != "busybox" and f"bin/{a}" not in members]
    assert not missing, f"applet links missing: {missing}"
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["tmp"].mode == 0o1777
    assert (members["home/dirk"].uid, members["root"].mode) == (1000, 0o700)
    passwd = layer.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
    users = {line.split(":")[0]: line.split(":")[2] for line in passwd.splitlines()}
    assert users == {"root": "0", "dirk": "1000", "nobody": "65534"}


def test_python_image_is_whole_and_has_python_3_11(python_ref: str) -> None:
    _, _, config, layer = pull(python_ref)
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["config"] == {
        "Env": [PATH, "LANG=C.UTF-8"],
        "Cmd": ["python3"],
        "WorkingDir": "/",
    }
    names = set(layer.getnames())
    for path in ("usr/bin/python3.11", "usr/bin/pip3", "usr/bin/git", "usr/bin/python"):
        assert path in names, f"{path} missing from {python_ref}"
    assert "usr/lib/python3.11/venv/__init__.py" in names
    assert "etc/ssl/certs/ca-certificates.crt" in names
    assert not [n for n in names if n.startswith("dev/")], "device nodes belong to the runtime"
    assert layer.getnames() == sorted(layer.getnames()), "layer entries are not sorted"
    hostname = layer.extractfile("etc/hostname")
    assert hostname is not None and hostname.read() == b"", "the build host's name leaked"


def test_postgres_image_is_whole_and_runs_its_entrypoint(postgres_ref: str) -> None:
    _, _, config, layer = pull(postgres_ref)
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["config"] == {
        "Env": [
            f"{PATH}:/usr/lib/postgresql/15/bin",
            "LANG=C.UTF-8",
            "PGDATA=/var/lib/postgresql/data",
        ],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["postgres"],
        "ExposedPorts": {"5432/tcp": {}},
        "StopSignal": "SIGINT",
        "WorkingDir": "/",
    }
    members = {m.name: m for m in layer.getmembers()}
    entrypoint = members["usr/local/bin/docker-entrypoint.sh"]
    assert entrypoint.isreg() and entrypoint.mode == 0o755
    for path in ("usr/lib/postgresql/15/bin/postgres", "usr/lib/postgresql/15/bin/initdb"):
        assert members[path].isreg(), f"{path} missing from {postgres_ref}"
    assert "usr/bin/psql" in members and "usr/bin/setpriv" in members
    passwd = layer.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
    assert any(line.startswith("postgres:") for line in passwd.splitlines())
    names = list(members)
    assert names == sorted(names), "layer entries are not sorted"
    # Nothing made at build time with randomness: no cluster, no key pair; no JIT's LLVM.
    assert not [n for n in names if n.startswith(("var/lib/postgresql/15", "etc/postgresql/15"))]
    assert not [n for n in names if "snakeoil" in n or "libLLVM" in n]
    assert not [n for n in names if n.startswith("dev/")], "device nodes belong to the runtime"


def test_registry_image_holds_the_registry_its_libraries_and_an_open_config(
    registry_image_ref: str,
) -> None:
    _, _, config, layer = pull(registry_image_ref)
    members = {m.name: m for m in layer.getmembers()}
    assert members["bin/registry"].isreg() and members["bin/registry"].mode == 0o755
    assert members["lib/x86_64-linux-gnu/libc.so.6"].isreg()
    loader = members["lib64/ld-linux-x86-64.so.2"]
    assert loader.issym() and loader.linkname == "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert members["bin/sh"].issym()  # busybox underneath
    extracted = layer.extractfile("etc/docker/registry/config.yml")
    assert extracted is not None
    text = extracted.read().decode()
    assert "addr: :5000" in text and "auth" not in text
    run = config["config"]
    assert run["Cmd"] == ["registry", "serve", "/etc/docker/registry/config.yml"]
    assert run["ExposedPorts"] == {"5000/tcp": {}}


def test_busybox_rebuilt_from_scratch_has_the_pushed_digest(
    busybox_ref: str, tmp_path: Path
) -> None:
    pushed, *_ = pull(busybox_ref)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "busybox", "--cache-dir", str(tmp_path), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "built"
    assert outcome["digest"] == pushed
    index = json.loads((tmp_path / "busybox-latest" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == pushed


def test_a_run_with_all_images_present_would_do_nothing_and_is_fast(registry: str) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--registry", registry, "--json"],
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["status"] for o in outcomes] == ["present"] * 5, result.stderr
    assert result.returncode == 0, result.stderr
    assert elapsed < 1.0, f"a run with nothing to do took {elapsed:.2f} s"


def test_the_multiarch_index_names_busybox_for_amd64_and_arm64(
    registry: str, busybox_ref: str
) -> None:
    """The amd64 entry is `busybox:latest` itself; the arm64 one holds an aarch64 binary."""
    latest, *_ = pull(busybox_ref)
    with httpx.Client(base_url=f"http://{registry}/v2/busybox", trust_env=False, timeout=30) as c:
        response = c.get("/manifests/multiarch", headers={"Accept": MANIFEST_ACCEPT})
        response.raise_for_status()
        index = response.json()
        platforms = {
            f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
            for m in index["manifests"]
        }
        assert platforms.keys() == {"linux/amd64", "linux/arm64"}
        assert platforms["linux/amd64"] == latest
    _, _, config, layer = pull(f"{registry}/busybox@{platforms['linux/arm64']}")
    assert config["architecture"] == "arm64"
    binary = layer.extractfile("bin/busybox")
    assert binary is not None
    header = binary.read(20)
    assert header[:4] == b"\x7fELF" and header[18:20] == b"\xb7\x00", "not an aarch64 ELF"
