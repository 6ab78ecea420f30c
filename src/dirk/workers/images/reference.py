"""Image references ("alpine", "host:5000/team/app:1.2@sha256:...") parsed and normalised.

Normalisation follows Docker's rules, so that a reference means here what it means to `docker
pull`: no registry means Docker Hub, and a one-component Docker Hub name lives in `library/`.
"""

from __future__ import annotations

import re

import attrs

from dirk.errors import ImageReferenceError

#: Where Docker Hub's registry API lives; "docker.io" is only its name for people.
DOCKER_HUB = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", DOCKER_HUB})
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_NAME = 255


@attrs.frozen
class ImageReference:
    """A normalised reference: registry host[:port], repository path, tag and/or digest."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse what a user wrote; raise ImageReferenceError saying what is wrong with it."""
        original = text
        if not text or text != text.strip():
            raise _bad(original, "it is empty or has surrounding spaces")
        digest: str | None = None
        if "@" in text:
            text, _, digest = text.partition("@")
            if not _DIGEST.fullmatch(digest):
                raise _bad(original, f"digest {digest!r} is not of the form sha256:<64 hex digits>")
        tag: str | None = None
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise _bad(
                    original, f"tag {tag!r} is not valid (letters, digits, _ . -, at most 128)"
                )
        registry, repository = _split_registry(text, original)
        if len(repository) > _MAX_NAME:
            raise _bad(original, f"the repository name is longer than {_MAX_NAME} characters")
        for component in repository.split("/"):
            if not _COMPONENT.fullmatch(component):
                hint = (
                    " (repository names must be lowercase)"
                    if component.lower() != component
                    else ""
                )
                raise _bad(original, f"repository component {component!r} is not valid{hint}")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    def with_digest(self, digest: str) -> ImageReference:
        """The same image pinned to `digest` (the tag is kept for messages)."""
        if not _DIGEST.fullmatch(digest):
            raise ImageReferenceError(
                f"{digest!r} is not a digest of the form sha256:<64 hex digits>"
            )
        return attrs.evolve(self, digest=digest)

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def manifest_ref(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _split_registry(text: str, original: str) -> tuple[str, str]:
    first, sep, rest = text.partition("/")
    is_domain = sep and (
        "." in first or ":" in first or first == "localhost" or first != first.lower()
    )
    if not is_domain:
        if not text:
            raise _bad(original, "the repository name is empty")
        return DOCKER_HUB, text if "/" in text else f"library/{text}"
    if not _DOMAIN.fullmatch(first):
        raise _bad(original, f"registry {first!r} is not a valid host[:port]")
    if not rest:
        raise _bad(original, "the repository name is empty")
    if first in _HUB_ALIASES:
        return DOCKER_HUB, rest if "/" in rest else f"library/{rest}"
    return first, rest


def _bad(text: str, why: str) -> ImageReferenceError:
    return ImageReferenceError(
        f"invalid image reference {text!r}: {why}; expected "
        "[registry[:port]/]name[:tag][@sha256:digest]"
    )
