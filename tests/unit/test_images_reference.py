"""Image references and platforms: what a user writes, what it means."""

from __future__ import annotations

import pytest

from dirk.errors import ImageReferenceError, InvalidArgumentError
from dirk.workers.images.platform import Platform
from dirk.workers.images.reference import ImageReference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "registry-1.docker.io", "library/alpine", "latest", None),
        ("alpine:3.19", "registry-1.docker.io", "library/alpine", "3.19", None),
        ("docker.io/alpine", "registry-1.docker.io", "library/alpine", "latest", None),
        (
            "index.docker.io/library/alpine:edge",
            "registry-1.docker.io",
            "library/alpine",
            "edge",
            None,
        ),
        ("bitnami/redis:7", "registry-1.docker.io", "bitnami/redis", "7", None),
        ("ghcr.io/org/team/app:v1.2.3", "ghcr.io", "org/team/app", "v1.2.3", None),
        ("127.0.0.1:5000/busybox", "127.0.0.1:5000", "busybox", "latest", None),
        ("localhost/app:dev", "localhost", "app", "dev", None),
        ("localhost:5000/a/b", "localhost:5000", "a/b", "latest", None),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
        (f"alpine@{DIGEST}", "registry-1.docker.io", "library/alpine", None, DIGEST),
        (f"host:5000/app:1@{DIGEST}", "host:5000", "app", "1", DIGEST),
        (
            "my-registry.example.com/a__b/c.d-e_f:T_a.g-1",
            "my-registry.example.com",
            "a__b/c.d-e_f",
            "T_a.g-1",
            None,
        ),
    ],
)
def test_parse_normalises_like_docker(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = ImageReference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_str_round_trips() -> None:
    assert str(ImageReference.parse("alpine")) == "registry-1.docker.io/library/alpine:latest"
    ref = ImageReference.parse(f"127.0.0.1:5000/python:3.11@{DIGEST}")
    assert str(ref) == f"127.0.0.1:5000/python:3.11@{DIGEST}"
    assert ImageReference.parse(str(ref)) == ref


def test_with_digest_pins_and_keeps_tag() -> None:
    ref = ImageReference.parse("127.0.0.1:5000/busybox:latest").with_digest(DIGEST)
    assert ref.digest == DIGEST and ref.tag == "latest"
    assert ref.manifest_ref == DIGEST
    with pytest.raises(ImageReferenceError):
        ref.with_digest("sha256:1234")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Alpine", "lowercase"),
        ("alpine:", "tag"),
        ("alpine:bad tag", "tag"),
        ("alpine@sha256:1234", "digest"),
        ("alpine@md5:" + "ab" * 16, "digest"),
        ("host:5000/", "empty"),
        ("a//b", "component"),
        ("-leading/x", "component"),
        ("bad_host!:5000/x", "registry"),
        (" alpine", "spaces"),
    ],
)
def test_bad_references_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ImageReferenceError) as info:
        ImageReference.parse(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, InvalidArgumentError)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("Linux/AMD64", "linux/amd64"),
    ],
)
def test_platform_normalisation(text: str, normalised: str) -> None:
    assert str(Platform.parse(text)) == normalised


def test_platform_matching() -> None:
    arm64 = Platform.from_json({"os": "linux", "architecture": "arm64"})
    assert Platform.parse("linux/arm64/v8").matches(arm64)
    assert Platform.parse("linux/arm64").matches(arm64)
    amd64_v3 = Platform.from_json({"os": "linux", "architecture": "amd64", "variant": "v3"})
    assert Platform.parse("linux/amd64").matches(amd64_v3)
    assert not Platform.parse("linux/amd64/v2").matches(amd64_v3)
    assert not Platform.parse("linux/arm/v7").matches(
        Platform.from_json({"os": "linux", "architecture": "arm", "variant": "v6"})
    )
    assert not Platform.parse("windows/amd64").matches(Platform.parse("linux/amd64"))


@pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d", ""])
def test_bad_platform(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="os/arch"):
        Platform.parse(text)
