#!/usr/bin/env python3
"""Build the test images from Debian packages and push them to the local registry.

Public container registries are out of reach here, so the tests pull these instead:
  <registry>/busybox:latest     /bin/busybox from busybox-static, applet links, a few users
  <registry>/busybox:multiarch  an image index: that image for linux/amd64, and the same made
                                from Debian's arm64 busybox-static for linux/arm64
  <registry>/python:3.11        mmdebstrap minbase bookworm + python3, pip, venv, git
  <registry>/postgres:15        mmdebstrap minbase bookworm + postgresql-15 (server and psql,
                                JIT left out) with an entrypoint like the official image's
                                (scripts/test_images/postgres-entrypoint.sh)
  <registry>/registry:2         busybox:latest + Debian's docker-registry binary (and the glibc
                                it links) serving plain HTTP on :5000 without auth, as the
                                official image does (a registry that tests run as a service)
Each image is one reproducible gzip layer in an OCI image layout cached under
${XDG_CACHE_HOME:-~/.cache}/dirk/images/. The arm64 package is downloaded once (with apt, into
a private package list: the host's apt configuration is not touched) and kept beside it. A run
rebuilds an image only when its inputs changed (recipe, this code, the busybox binaries) and
pushes it only when the registry lacks that digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs

from oci_image import (
    INDEX_TYPE,
    MANIFEST_TYPE,
    Image,
    ImageConfig,
    LayerWriter,
    add_entries,
    add_platform_index,
    copy_sorted,
    replace_dir,
    write_image,
)

DEFAULT_REGISTRY = "127.0.0.1:5000"
#: Used when SOURCE_DATE_EPOCH is not set: 2025-05-20T00:00:00Z, the host's apt snapshot date.
DEFAULT_EPOCH = 1747699200
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = Path("/bin/busybox")
SUITE = "bookworm"
PYTHON_PACKAGES = (
    "python3",
    "python3-pip",
    "python3-venv",
    "python-is-python3",
    "ca-certificates",
    "git",
)
#: Docs, man pages and translations are dead weight in a test image (copyright files stay).
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
ACCEPT = ", ".join(
    [
        MANIFEST_TYPE,
        INDEX_TYPE,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
META = "dirk-build.json"
#: Images built at once (see `main`).
BUILDS_AT_ONCE = 2


Fill = Callable[[tarfile.TarFile, Path, int], str]


@attrs.frozen
class Recipe:
    name: str
    tag: str
    config: ImageConfig
    #: What the image is made from, beyond this code; a change means a rebuild.
    inputs: Callable[[], dict[str, str]]
    #: Fills the layer; returns the history line for the config.
    fill: Fill
    #: When set, the image is an index of one image per platform ("os/arch", its fill), and
    #: `fill` is unused.
    platforms: tuple[tuple[str, Fill], ...] = ()


@attrs.frozen
class Outcome:
    reference: str
    digest: str
    size: int
    status: str
    seconds: float


# --- busybox -------------------------------------------------------------------------------


def _entry(
    name: str, kind: bytes, mode: int, epoch: int, *, uid: int = 0, link: str = "", size: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, epoch
    info.uid = info.gid = uid
    info.uname = info.gname = ""
    info.linkname, info.size = link, size
    return info


PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "dirk:x:1000:1000:dirk:/home/dirk:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndirk:x:1000:\nnogroup:x:65534:\n"


def busybox_inputs() -> dict[str, str]:
    return {"busybox": hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()}


def multiarch_inputs() -> dict[str, str]:
    arm64 = hashlib.sha256(arm64_busybox_deb().read_bytes()).hexdigest()
    return {**busybox_inputs(), "busybox-arm64-deb": arm64}


def fill_busybox(tar: tarfile.TarFile, workdir: Path, epoch: int) -> str:
    """A root made of one static binary: no package manager, no libraries."""
    if not BUSYBOX.is_file():
        raise SystemExit(f"{BUSYBOX} is missing: apt-get install busybox-static (or make setup)")
    version = _package_version("busybox-static")
    return _fill_busybox_root(tar, BUSYBOX, [str(BUSYBOX)], epoch, f"busybox-static {version}")


def fill_busybox_arm64(tar: tarfile.TarFile, workdir: Path, epoch: int) -> str:
    """The same root from Debian's arm64 package; its applet list is read by running the
    arm64 binary under QEMU user emulation."""
    deb = arm64_busybox_deb()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "arm64")], check=True)
    binary = workdir / "arm64" / "bin" / "busybox"
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        raise SystemExit("qemu-aarch64-static is missing: apt-get install qemu-user-static")
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    created_by = f"busybox-static {version} (arm64)"
    try:
        return _fill_busybox_root(tar, binary, [qemu, str(binary)], epoch, created_by)
    finally:
        shutil.rmtree(workdir / "arm64", ignore_errors=True)


#: Where downloaded packages of other architectures are kept (they change only with Debian).
def debs_dir() -> Path:
    return default_cache_dir().parent / "debs"


def arm64_busybox_deb() -> Path:
    """Debian's arm64 busybox-static package, downloaded once through a private package list
    (no `dpkg --add-architecture` on the host)."""
    target = debs_dir() / "busybox-static_arm64.deb"
    if target.is_file():
        return target
    apt_dir = debs_dir() / "apt-arm64"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    options = [
        "-q",
        "-o", "APT::Architecture=arm64",
        "-o", "APT::Architectures::=arm64",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
    ]  # fmt: skip
    download = tempfile.mkdtemp(prefix=".download-", dir=debs_dir())
    try:
        for command in (["update"], ["download", "busybox-static"]):
            result = subprocess.run(
                ["apt-get", *options, *command],
                cwd=download,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise SystemExit(
                    f"apt-get {' '.join(command)} (arm64) failed; is the Debian mirror "
                    f"reachable?\n{result.stderr.strip()}"
                )
        (deb,) = Path(download).glob("busybox-static_*_arm64.deb")
        os.rename(deb, target)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return target


def _fill_busybox_root(
    tar: tarfile.TarFile,
    busybox: Path,
    run: list[str],
    epoch: int,
    package: str,
    extra: Iterable[tuple[tarfile.TarInfo, bytes | None]] = (),
) -> str:
    applets = subprocess.run(
        [*run, "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    binary = busybox.read_bytes()
    files = {"etc/passwd": PASSWD.encode(), "etc/group": GROUP.encode()}
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_entry(name, tarfile.DIRTYPE, mode, epoch, uid=uid), None)
        for name, mode, uid in [
            ("bin", 0o755, 0),
            ("dev", 0o755, 0),
            ("etc", 0o755, 0),
            ("home", 0o755, 0),
            ("home/dirk", 0o755, 1000),
            ("proc", 0o555, 0),
            ("root", 0o700, 0),
            ("sys", 0o555, 0),
            ("tmp", 0o1777, 0),
            ("usr", 0o755, 0),
            ("var", 0o755, 0),
        ]
    ]
    entries.append((_entry("bin/busybox", tarfile.REGTYPE, 0o755, epoch, size=len(binary)), binary))
    entries += [
        (_entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, epoch, link="busybox"), None)
        for applet in applets
        if applet != "busybox"
    ]
    entries += [
        (_entry(name, tarfile.REGTYPE, 0o644, epoch, size=len(data)), data)
        for name, data in files.items()
    ]
    add_entries(tar, [*entries, *extra])
    return f"{package}: /bin/busybox with {len(applets) - 1} applet links"


def _package_version(package: str) -> str:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def _phase(what: str, started: float) -> None:
    print(f"  {what}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


# --- registry ------------------------------------------------------------------------------

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
#: What the binary links (`ldd`): glibc and its loader; bookworm's libc holds the NSS modules.
REGISTRY_LIBS = (
    Path("/lib/x86_64-linux-gnu/libc.so.6"),
    Path("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
)
REGISTRY_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
"""


def registry_inputs() -> dict[str, str]:
    files = (REGISTRY_BINARY, *REGISTRY_LIBS)
    return {
        **busybox_inputs(),
        **{str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }


def fill_registry(tar: tarfile.TarFile, workdir: Path, epoch: int) -> str:
    if not REGISTRY_BINARY.is_file():
        raise SystemExit(f"{REGISTRY_BINARY} is missing: apt-get install docker-registry")
    extra: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_entry(name, tarfile.DIRTYPE, 0o755, epoch), None)
        for name in (
            "etc/docker",
            "etc/docker/registry",
            "lib",
            "lib/x86_64-linux-gnu",
            "lib64",
            "var/lib",
            "var/lib/registry",
        )
    ]
    for source, name in [(REGISTRY_BINARY, "bin/registry")] + [
        (lib, str(lib).lstrip("/")) for lib in REGISTRY_LIBS
    ]:
        data = source.read_bytes()
        extra.append((_entry(name, tarfile.REGTYPE, 0o755, epoch, size=len(data)), data))
    loader = "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    extra.append(
        (_entry("lib64/ld-linux-x86-64.so.2", tarfile.SYMTYPE, 0o777, epoch, link=loader), None)
    )
    config = REGISTRY_CONFIG.encode()
    extra.append(
        (
            _entry(
                "etc/docker/registry/config.yml", tarfile.REGTYPE, 0o644, epoch, size=len(config)
            ),
            config,
        )
    )
    version = _package_version("docker-registry")
    base = _fill_busybox_root(
        tar,
        BUSYBOX,
        [str(BUSYBOX)],
        epoch,
        f"busybox-static {_package_version('busybox-static')}",
        extra,
    )
    return f"{base}; docker-registry {version}: /bin/registry"


# --- python --------------------------------------------------------------------------------


def _mmdebstrap_args(out: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        "--include=" + ",".join(PYTHON_PACKAGES),
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        SUITE,
        str(out),
    ]


def python_inputs() -> dict[str, str]:
    return {"mmdebstrap": " ".join(_mmdebstrap_args(Path("out.tar")))}


def _keep_in_python_image(name: str) -> bool:
    """The runtime provides /dev; the host's device nodes do not belong in a layer."""
    return not name.startswith("dev/")


#: Host files mmdebstrap copies in (they would leak this machine's name and resolver), and
#: Debian's PEP 668 marker, so `pip install` works as in the usual python images.
PYTHON_REPLACED = {"etc/hostname": b"", "etc/resolv.conf": b""}
PYTHON_DROPPED = ("usr/lib/python3.11/EXTERNALLY-MANAGED",)


def fill_python(tar: tarfile.TarFile, workdir: Path, epoch: int) -> str:
    """mmdebstrap's tarball (reproducible with SOURCE_DATE_EPOCH), sorted and normalised."""
    rootfs = workdir / "rootfs.tar"

    def keep(name: str) -> bool:
        return _keep_in_python_image(name) and name not in PYTHON_DROPPED

    count = _mmdebstrap_into(tar, _mmdebstrap_args(rootfs), rootfs, epoch, keep)
    return f"mmdebstrap --variant=minbase {SUITE} +{','.join(PYTHON_PACKAGES)} ({count} entries)"


def _mmdebstrap_into(
    tar: tarfile.TarFile, args: list[str], rootfs: Path, epoch: int, keep: Callable[[str], bool]
) -> int:
    """Run mmdebstrap (`args` write `rootfs`), then copy its tarball into the layer."""
    if shutil.which("mmdebstrap") is None:
        raise SystemExit("mmdebstrap is missing: apt-get install mmdebstrap (or make setup)")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    print(f"  running {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-20:])
        raise SystemExit(
            f"mmdebstrap failed (exit {result.returncode}); is the Debian mirror reachable?\n{tail}"
        )
    _phase("mmdebstrap", started)
    with tarfile.open(rootfs) as source:
        count = copy_sorted(source, tar, epoch, keep, PYTHON_REPLACED)
    rootfs.unlink()
    return count


# --- postgres ------------------------------------------------------------------------------

POSTGRES_PACKAGES = ("postgresql-15",)
POSTGRES_ENTRYPOINT = Path(__file__).resolve().parent / "test_images" / "postgres-entrypoint.sh"
POSTGRES_BIN = "/usr/lib/postgresql/15/bin"
#: JIT compilation is left out: its LLVM and Z3 libraries are 133 MB of a 376 MB root, and
#: PostgreSQL runs without JIT when its provider library is absent.
POSTGRES_DPKG_OPTIONS = (
    *DPKG_OPTIONS,
    "path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM-*",
    "path-exclude=/usr/lib/x86_64-linux-gnu/libz3.so*",
    f"path-exclude={POSTGRES_BIN.removesuffix('/bin')}/lib/llvmjit*",
    f"path-exclude={POSTGRES_BIN.removesuffix('/bin')}/lib/bitcode/*",
)
#: The entrypoint initialises its own data directory at first start, as the official image
#: does; Debian's default cluster (made at install time, with a random system identifier)
#: would make the image differ on every build.
POSTGRES_HOOKS = (
    '--essential-hook=mkdir -p "$1/etc/postgresql-common/createcluster.d" && '
    "echo 'create_main_cluster = false' "
    '>"$1/etc/postgresql-common/createcluster.d/dirk.conf"',
)
#: ssl-cert makes a snakeoil key pair at install time (random, so never reproducible); the
#: server runs without TLS, as initdb configures it.
POSTGRES_DROPPED = ("etc/ssl/private/ssl-cert-snakeoil.key", "etc/ssl/certs/ssl-cert-snakeoil.pem")


def _postgres_args(out: Path, entrypoint: Path) -> list[str]:
    install = (
        f'--customize-hook=install -m 755 {entrypoint} "$1/usr/local/bin/docker-entrypoint.sh"'
    )
    return [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        "--include=" + ",".join(POSTGRES_PACKAGES),
        *(f"--dpkgopt={option}" for option in POSTGRES_DPKG_OPTIONS),
        *POSTGRES_HOOKS,
        install,
        SUITE,
        str(out),
    ]


def postgres_inputs() -> dict[str, str]:
    entrypoint = hashlib.sha256(POSTGRES_ENTRYPOINT.read_bytes()).hexdigest()
    args = _postgres_args(Path("out.tar"), Path("entrypoint.sh"))
    return {"mmdebstrap": " ".join(args), "entrypoint": entrypoint}


def fill_postgres(tar: tarfile.TarFile, workdir: Path, epoch: int) -> str:
    """mmdebstrap's tarball with the entrypoint, sorted and normalised (about 50 s)."""
    args = _postgres_args(workdir / "rootfs.tar", POSTGRES_ENTRYPOINT)

    def keep(name: str) -> bool:
        return _keep_in_python_image(name) and name not in POSTGRES_DROPPED

    count = _mmdebstrap_into(tar, args, workdir / "rootfs.tar", epoch, keep)
    return f"mmdebstrap --variant=minbase {SUITE} +{','.join(POSTGRES_PACKAGES)} ({count} entries)"


RECIPES = {
    "busybox": Recipe(
        name="busybox",
        tag="latest",
        config=ImageConfig(env=(PATH,), cmd=("sh",)),
        inputs=busybox_inputs,
        fill=fill_busybox,
    ),
    "busybox-multiarch": Recipe(
        name="busybox",
        tag="multiarch",
        config=ImageConfig(env=(PATH,), cmd=("sh",)),
        inputs=multiarch_inputs,
        fill=fill_busybox,
        platforms=(("linux/amd64", fill_busybox), ("linux/arm64", fill_busybox_arm64)),
    ),
    "python": Recipe(
        name="python",
        tag="3.11",
        config=ImageConfig(env=(PATH, "LANG=C.UTF-8"), cmd=("python3",)),
        inputs=python_inputs,
        fill=fill_python,
    ),
    "postgres": Recipe(
        name="postgres",
        tag="15",
        config=ImageConfig(
            env=(
                f"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{POSTGRES_BIN}",
                "LANG=C.UTF-8",
                "PGDATA=/var/lib/postgresql/data",
            ),
            cmd=("postgres",),
            entrypoint=("docker-entrypoint.sh",),
            exposed_ports=("5432/tcp",),
            stop_signal="SIGINT",
        ),
        inputs=postgres_inputs,
        fill=fill_postgres,
    ),
    "registry": Recipe(
        name="registry",
        tag="2",
        config=ImageConfig(
            env=(PATH,),
            cmd=("registry", "serve", "/etc/docker/registry/config.yml"),
            exposed_ports=("5000/tcp",),
        ),
        inputs=registry_inputs,
        fill=fill_registry,
    ),
}


# --- cache ---------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dirk" / "images"


def code_digest() -> str:
    """This builder's own code is an input too: a change to it may change the bytes."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in ("build_test_images.py", "oci_image.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def fingerprint(recipe: Recipe, epoch: int) -> str:
    inputs = {**recipe.inputs(), "epoch": str(epoch), "code": code_digest()}
    inputs |= {"config": repr(recipe.config), "tag": recipe.tag}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def cached(layout: Path, inputs: str) -> dict[str, object] | None:
    """The build record of a layout made from the same inputs, if there is one."""
    try:
        meta = json.loads((layout / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("inputs") == inputs else None


def build(recipe: Recipe, layout: Path, epoch: int, inputs: str) -> Image:
    """Build into a fresh directory beside `layout`, then move it into place."""
    layout.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{layout.name}-", dir=layout.parent))
    try:
        if recipe.platforms:
            image = _build_index(recipe, tmp, epoch)
        else:
            image = _build_image(recipe.fill, recipe.tag, recipe.config, tmp, epoch)
        meta = {"inputs": inputs, "digest": image.manifest.digest, "size": image.size}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        replace_dir(tmp, layout)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return attrs.evolve(image, layout=layout)


def _build_image(fill: Fill, tag: str, config: ImageConfig, layout: Path, epoch: int) -> Image:
    writer = LayerWriter(layout)
    with writer as tar:
        created_by = fill(tar, layout, epoch)
    assert writer.layer is not None
    return write_image(layout, tag, writer.layer, config, epoch, created_by)


def _build_index(recipe: Recipe, layout: Path, epoch: int) -> Image:
    """One image per platform in one layout, and an index tagged `recipe.tag` naming them."""
    images = []
    for platform, fill in recipe.platforms:
        architecture = platform.split("/")[1]
        config = attrs.evolve(recipe.config, architecture=architecture)
        tag = f"{recipe.tag}-{architecture}"
        images.append((_build_image(fill, tag, config, layout, epoch), platform))
    index = add_platform_index(layout, recipe.tag, images)
    return attrs.evolve(images[0][0], tag=recipe.tag, manifest=index, parts=[i for i, _ in images])


# --- registry ------------------------------------------------------------------------------

# Loopback only: never through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def registry_digest(registry: str, name: str, tag: str) -> str | None:
    """The manifest digest the registry has for name:tag (HEAD request), None when missing."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{name}/manifests/{tag}", method="HEAD", headers={"Accept": ACCEPT}
    )
    try:
        with _opener.open(request, timeout=10) as response:
            digest = response.headers.get("Docker-Content-Digest")
            return str(digest) if digest else None
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise SystemExit(f"registry {registry} answered {error.code} for {name}:{tag}") from error
    except OSError as error:
        raise SystemExit(
            f"registry {registry} does not answer ({error}): start it with "
            "`bash scripts/registry.sh start` (or run `make images`)"
        ) from error


def registry_size(registry: str, name: str, digest: str) -> int:
    """Bytes a pull of the manifest `digest` transfers (manifest, config, layers)."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{name}/manifests/{digest}", headers={"Accept": ACCEPT}
    )
    with _opener.open(request, timeout=10) as response:
        body = response.read()
    manifest = json.loads(body)
    blobs = [manifest.get("config", {}), *manifest.get("layers", [])]
    return len(body) + sum(int(blob.get("size", 0)) for blob in blobs)


def push(layout: Path, tag: str, reference: str) -> None:
    if shutil.which("skopeo") is None:
        raise SystemExit("skopeo is missing: apt-get install skopeo (or make setup)")
    args = ["skopeo", "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false"]
    args += [f"oci:{layout}:{tag}", f"docker://{reference}"]
    result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pushing {reference} failed: {' '.join(args)}\n{result.stderr.strip()}")


# --- main ----------------------------------------------------------------------------------


def human(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def run_one(recipe: Recipe, args: argparse.Namespace, epoch: int) -> Outcome:
    started = time.monotonic()
    reference = f"{args.registry}/{recipe.name}:{recipe.tag}"
    layout = args.cache_dir / f"{recipe.name}-{recipe.tag}"
    inputs = fingerprint(recipe, epoch)
    meta = None if args.rebuild else cached(layout, inputs)
    remote = None
    if args.push or args.check:
        remote = registry_digest(args.registry, recipe.name, recipe.tag)
    steps: list[str] = []
    if meta is None and remote is not None and not layout.exists() and not args.rebuild:
        # Pushed by an earlier run whose cache is gone: the registry copy is the image.
        size = registry_size(args.registry, recipe.name, remote)
        return Outcome(reference, remote, size, "present", time.monotonic() - started)
    if args.check:
        return _checked(reference, meta, remote, started)
    if meta is None:
        image = build(recipe, layout, epoch, inputs)
        digest, size = image.manifest.digest, image.size
        steps.append("built")
    else:
        digest, size = str(meta["digest"]), int(str(meta["size"]))
    if args.push and remote != digest:
        push_started = time.monotonic()
        push(layout, recipe.tag, reference)
        _phase(f"pushed {reference}", push_started)
        pushed = registry_digest(args.registry, recipe.name, recipe.tag)
        if pushed != digest:
            raise SystemExit(f"{reference}: registry has {pushed} after pushing {digest}")
        steps.append("pushed")
    status = "+".join(steps) or ("present" if args.push else "cached")
    return Outcome(reference, digest, size, status, time.monotonic() - started)


def _checked(
    reference: str, meta: dict[str, object] | None, remote: str | None, started: float
) -> Outcome:
    """What a run with --push would have to do, without doing it."""
    digest = str(meta["digest"]) if meta else remote or "-"
    size = int(str(meta["size"])) if meta else 0
    if meta is None:
        status = "stale (its inputs changed)"
    elif remote is None:
        status = "missing from the registry"
    elif remote != digest:
        status = f"outdated in the registry (it has {remote})"
    else:
        status = "present"
    return Outcome(reference, digest, size, status, time.monotonic() - started)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--push", action="store_true", help="push images the registry lacks")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY, help="host:port (plain HTTP)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--only", action="append", choices=sorted(RECIPES), help="repeatable")
    parser.add_argument("--rebuild", action="store_true", help="build even when cached")
    parser.add_argument(
        "--check", action="store_true", help="build and push nothing; exit 1 unless all present"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_EPOCH)
    missing = 0
    keys = args.only or list(RECIPES)
    # Two builds at a time: mmdebstrap spends much of its time waiting for the mirror, so the
    # python and postgres images take little longer together than the slower one alone.
    with ThreadPoolExecutor(max_workers=1 if args.check else BUILDS_AT_ONCE) as pool:
        futures = [pool.submit(run_one, RECIPES[key], args, epoch) for key in keys]
        outcomes = (future.result() for future in futures)
        missing = _report(outcomes, args.json)
    if args.check and missing:
        print("some test images are not up to date: run `make images`", file=sys.stderr)
        return 1
    return 0


def _report(outcomes: Iterable[Outcome], as_json: bool) -> int:
    """Print each outcome in recipe order as it is known; returns how many are not present."""
    missing = 0
    for outcome in outcomes:
        missing += outcome.status != "present"
        if as_json:
            print(json.dumps(attrs.asdict(outcome)), flush=True)
        else:
            size = human(outcome.size)
            line = f"{outcome.reference:32} {outcome.digest} {size:>9}  {outcome.status}"
            print(f"{line} ({outcome.seconds:.2f} s)", flush=True)
    return missing


if __name__ == "__main__":
    sys.exit(main())
