"""Images out of a container: `publish`, `export`, `asTarball`, and `import` back in, plus the
registry credentials a publish uses (`withRegistryAuth`). A container's image is its rootfs and
settings (env, entrypoint, cmd, workdir, user, labels, ports) on its platform; mounts are not
part of it. Publish and export act outside the engine, so they run on every call (no memo).
"""

from __future__ import annotations

import json
import re

import attrs

from dirk.api.container_ops import parse_env
from dirk.api.context import RequestContext
from dirk.api.directory import rebased
from dirk.api.host import host_path
from dirk.api.paths import expand
from dirk.api.registry import Args, builds, leaf
from dirk.api.secret import load_secret, secret_plaintext_of
from dirk.api.service import service_host
from dirk.api.values import Container, Directory, File, Handle, HealthcheckConfig
from dirk.solver import reads
from dirk.solver.ops import (
    ImageCompression,
    ImageImport,
    ImageMediaTypes,
    ImagePlatform,
    ImageTarball,
    Ref,
)
from dirk.solver.service_hosts import served_registry
from dirk.workers.images.auth import Credentials
from dirk.workers.images.reference import ImageReference
from dirk.workers.images.registry import using_registry_endpoints

_COMPRESSION: dict[str | None, ImageCompression] = {
    None: "",
    "Gzip": "gzip",
    "Zstd": "zstd",
    "Uncompressed": "none",
    "GZIP": "gzip",
    "ZSTD": "zstd",
    "UNCOMPRESSED": "none",
}
#: Dagger's enum values and their aliases (the TypeScript SDK sends OCI and DOCKER).
_MEDIA_TYPES: dict[str, ImageMediaTypes] = {
    "OCIMediaTypes": "oci",
    "DockerMediaTypes": "docker",
    "OCI": "oci",
    "DOCKER": "docker",
}
TARBALL_PATH = "/image.tar"


def _ctr(parent: Handle | None) -> Container:
    assert parent is not None and isinstance(parent.value, Container)
    return parent.value


def image_platform(c: Container) -> ImagePlatform:
    """What of a container goes into its image."""
    return ImagePlatform(
        rootfs=rebased(c.rootfs),
        platform=c.platform,
        env=tuple(f"{n}={v}" for n, v in c.env),
        entrypoint=c.entrypoint,
        cmd=c.default_args,
        workdir=c.workdir,
        user=c.user,
        labels=c.labels,
        exposed_ports=c.exposed_ports,
        base_config=c.base_config,
        healthcheck=_healthcheck_json(c.healthcheck),
        annotations=c.annotations,
    )


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NANOSECONDS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
_NANOSECONDS["h"] = 3600 * 10**9


def go_duration_ns(text: str) -> int:
    """A Go duration ("1m30s", "500ms") in nanoseconds, as Docker's config stores them."""
    return round(sum(float(n) * _NANOSECONDS[unit] for n, unit in _DURATION_PART.findall(text)))


def _healthcheck_json(config: HealthcheckConfig | None) -> str:
    """Docker's config `Healthcheck` object for the container's healthcheck, as JSON."""
    if config is None:
        return ""
    test = ["CMD-SHELL", *config.args] if config.shell else ["CMD", *config.args]
    body: dict[str, object] = {"Test": test}
    for key, value in (
        ("Interval", config.interval),
        ("Timeout", config.timeout),
        ("StartPeriod", config.start_period),
        ("StartInterval", config.start_interval),
    ):
        if value:
            body[key] = go_duration_ns(value)
    if config.retries:
        body["Retries"] = config.retries
    return json.dumps(body, separators=(",", ":"))


def images_of(ctx: RequestContext, c: Container, args: Args) -> tuple[ImagePlatform, ...]:
    images = [image_platform(c)]
    for variant_id in args.get("platformVariants") or ():
        variant = ctx.load(variant_id, "Container").value
        assert isinstance(variant, Container)
        images.append(image_platform(variant))
    return tuple(images)


def image_options(args: Args) -> tuple[ImageCompression, ImageMediaTypes]:
    return _COMPRESSION[args.get("forcedCompression")], _MEDIA_TYPES[args["mediaTypes"]]


def _registry(address: str) -> str:
    return ImageReference.parse(address).registry


async def _credentials(ctx: RequestContext, c: Container, registry: str) -> Credentials | None:
    for name, username, secret in c.registry_auth:
        if name == registry:
            plaintext = await secret_plaintext_of(ctx, secret)
            return Credentials(username, plaintext.decode("utf-8", errors="replace"))
    return None


@leaf("Container", "publish", memo=False)
async def container_publish(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    c = _ctr(parent)
    address: str = args["address"]
    compression, media_types = image_options(args)
    creds = await _credentials(ctx, c, _registry(address))
    service = service_host(ctx, args.get("registryService"), "publish")
    images = images_of(ctx, c, args)
    services = ctx.solver.services
    async with served_registry(services, ctx.job, service, address) as reached:
        with using_registry_endpoints(reached):
            result = await ctx.solver.images_out.publish(
                ctx.job, address, images, compression, media_types, creds
            )
    return result.address


@leaf("Container", "export", memo=False)
async def container_export(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    """The image tarball (an `ImageTarball` step, cached) written to the host the way every
    export is: beside its place, then renamed over it."""
    c = _ctr(parent)
    raw: str = args["path"]
    if args.get("expand"):
        raw = expand(raw, dict(c.env))
    target = host_path(ctx.workdir, raw)
    compression, media_types = image_options(args)
    op = ImageTarball(images_of(ctx, c, args), compression, media_types)
    written = await reads.export_file(
        ctx.solver, ctx.job, Ref(op), TARBALL_PATH, target, allow_parent_dir=False
    )
    return str(written)


@builds("Container", "asTarball")
async def container_as_tarball(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    c = _ctr(parent)
    compression, media_types = image_options(args)
    op = ImageTarball(images_of(ctx, c, args), compression, media_types)
    return File(Ref(op), TARBALL_PATH)


@builds("Container", "import")
async def container_import(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    c = _ctr(parent)
    source = ctx.load(args["source"], "File").value
    assert isinstance(source, File)
    return await imported_container(ctx, c, source, args["tag"] or "")


async def imported_container(
    ctx: RequestContext, c: Container, source: File, tag: str
) -> Container:
    """`c` with the root filesystem and configuration of the image in the tarball `source`."""
    imported = await ctx.solver.images_out.read_tarball(
        ctx.job, source.ref, source.path, c.platform, tag
    )
    resolved = imported.resolved
    config = resolved.config
    op = ImageImport(source.ref, source.path, resolved.manifest_digest, resolved.platform, tag)
    return attrs.evolve(
        c,
        rootfs=Directory(Ref(op), "/"),
        platform=resolved.platform,
        env=parse_env(config.env),
        workdir=config.workdir,
        user=config.user,
        entrypoint=config.entrypoint,
        default_args=config.cmd,
        labels=config.labels,
        exposed_ports=config.exposed_ports,
        last_exec=None,
        base_config=resolved.config_digest,
    )


@builds("Container", "withRegistryAuth")
async def container_with_registry_auth(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    registry = _registry(args["address"])
    secret = await load_secret(ctx, args["secret"])
    kept = tuple(a for a in c.registry_auth if a[0] != registry)
    return attrs.evolve(c, registry_auth=(*kept, (registry, args["username"], secret)))


@builds("Container", "withoutRegistryAuth")
async def container_without_registry_auth(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    registry = _registry(args["address"])
    return attrs.evolve(c, registry_auth=tuple(a for a in c.registry_auth if a[0] != registry))
