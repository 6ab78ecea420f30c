"""`Directory.dockerBuild` against a real engine: Dockerfiles written the way projects write
them, built from a host directory, checked through the container's fields and by running it."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import ExecError, QueryError
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

BUSYBOX = "127.0.0.1:5000/busybox:latest"


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def connect(engine: RunningEngine, workdir: Path) -> dirk.Connection:
    return dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=workdir))


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"))


def wheel(name: str, version: str, module: str) -> bytes:
    """A pure-Python wheel holding one module, as `pip wheel` would build it."""
    files = {
        f"{name}/__init__.py": module,
        f"{name}/__main__.py": f"from {name} import main\nmain()\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, text in files.items():
            data = text.encode()
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append(f"{name}-{version}.dist-info/RECORD,,")
        zf.writestr(f"{name}-{version}.dist-info/RECORD", "\n".join(record) + "\n")
    return buf.getvalue()


GREETER = """\
import argparse
import os


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="nobody")
    args = parser.parse_args()
    print(f"hello, {args.name}, from uid {os.getuid()} in {os.getcwd()}")
"""

PYTHON_APP = """
# syntax=docker/dockerfile:1
ARG PYTHON_IMAGE=127.0.0.1:5000/python:3.11

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /build
COPY dist/*.whl ./
RUN --mount=type=cache,target=/root/.cache/pip \\
    python -m venv /opt/venv \\
    && /opt/venv/bin/pip install --no-index ./greeter-*.whl

# Never needed by the final stage, so never built.
FROM ${PYTHON_IMAGE} AS lint
RUN echo "this stage must not run" && exit 1

FROM ${PYTHON_IMAGE}
ARG APP_VERSION=dev
LABEL org.opencontainers.image.title="greeter" \\
      org.opencontainers.image.version=$APP_VERSION
ENV PYTHONUNBUFFERED=1 \\
    APP_HOME=/srv/app \\
    PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 10001 app
COPY --from=builder /opt/venv /opt/venv
WORKDIR $APP_HOME
COPY --chown=app:app config/ ./config/
COPY --chmod=0755 bin/start.sh /usr/local/bin/start
COPY . /srv/context/
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD python -c "import greeter"
ENTRYPOINT ["python", "-m", "greeter"]
CMD ["--name", "world"]
"""


@pytest.fixture
def python_app(tmp_path: Path) -> Path:
    ctx = tmp_path / "app"
    write(
        ctx,
        {
            "Dockerfile": PYTHON_APP,
            ".dockerignore": """
                # build output and logs stay out of the image
                *.log
                big
                !big/keep.txt
            """,
            "dist/greeter-1.0-py3-none-any.whl": wheel("greeter", "1.0", GREETER),
            "config/settings.toml": "debug = false\n",
            "bin/start.sh": '#!/bin/sh\nexec python -m greeter "$@"\n',
            "build.log": "left out\n",
            "big/keep.txt": "re-included\n",
        },
    )
    for i in range(50):
        (ctx / "big" / f"blob-{i}.bin").write_bytes(bytes([i]) * 100_000)
    return tmp_path


def test_multi_stage_python_app(engine: RunningEngine, python_app: Path) -> None:
    with connect(engine, python_app) as client:
        app = (
            client.host()
            .directory("app")
            .docker_build(build_args=[dirk.BuildArg(name="APP_VERSION", value="1.2.3")])
        )
        assert app.entrypoint() == ["python", "-m", "greeter"]
        assert app.default_args() == ["--name", "world"]
        assert app.user() == "app"
        assert app.workdir() == "/srv/app"
        env = {e.name(): e.value() for e in app.env_variables()}
        assert env["PYTHONUNBUFFERED"] == "1"
        assert env["APP_HOME"] == "/srv/app"
        assert env["PATH"].startswith("/opt/venv/bin:/usr/local/sbin:")
        assert "APP_VERSION" not in env, "an ARG is not part of the image's environment"
        assert app.label("org.opencontainers.image.title") == "greeter"
        assert app.label("org.opencontainers.image.version") == "1.2.3"
        ports = [(p.port(), p.protocol()) for p in app.exposed_ports()]
        assert ports == [(8000, dirk.NetworkProtocol.TCP)]
        check = app.docker_healthcheck()
        assert check is not None
        assert check.args() == ['python -c "import greeter"']
        assert check.shell() is True
        assert (check.interval(), check.timeout(), check.retries()) == ("30s", "3s", 3)

        # Running it runs ENTRYPOINT + CMD as the non-root user in the workdir.
        assert app.stdout() == "hello, world, from uid 10001 in /srv/app\n"
        assert (
            app.with_exec(["--name", "dirk"], use_entrypoint=True).stdout()
            == "hello, dirk, from uid 10001 in /srv/app\n"
        )
        probe = app.with_exec(
            [
                "sh",
                "-c",
                "stat -c '%U %a' config/settings.toml /usr/local/bin/start; "
                "cd /srv/context && find . -type f | sort",
            ]
        ).stdout()
        owners, files = probe.split("\n", 2)[:2], probe.split("\n", 2)[2]
        assert owners == ["app 644", "root 755"]
        listed = files.split()
        assert "./big/keep.txt" in listed
        assert not [f for f in listed if f.startswith("./big/blob")], listed
        assert "./build.log" not in listed
        assert "./dist/greeter-1.0-py3-none-any.whl" in listed


BUILD_ARGS = """
ARG BASE=127.0.0.1:5000/busybox:latest
ARG VARIANT=slim
FROM $BASE AS base
ARG VARIANT
ARG EXTRA
RUN echo "variant=$VARIANT extra=${EXTRA:-none} base=${BASE:-unset}" > /variant

FROM base AS dev
ENV MODE=dev

FROM base AS prod
ENV MODE=prod
"""


def test_build_args_and_target(engine: RunningEngine, tmp_path: Path) -> None:
    write(tmp_path / "ctx", {"Dockerfile": BUILD_ARGS})
    with connect(engine, tmp_path) as client:
        ctx = client.host().directory("ctx")
        full = [dirk.BuildArg(name="VARIANT", value="full")]
        dev = ctx.docker_build(target="dev", build_args=full)
        assert dev.env_variable("MODE") == "dev"
        # A global ARG is seen inside a stage only when the stage declares it.
        assert dev.file("/variant").contents() == "variant=full extra=none base=unset\n"
        prod = ctx.docker_build(build_args=[dirk.BuildArg(name="EXTRA", value="x y")])
        assert prod.env_variable("MODE") == "prod"
        assert prod.file("/variant").contents() == "variant=slim extra=x y base=unset\n"
        assert prod.env_variable("VARIANT") is None
        with pytest.raises(QueryError, match="target stage 'qa' is not in the Dockerfile"):
            ctx.docker_build(target="qa").sync()


def test_copy_add_forms(engine: RunningEngine, tmp_path: Path) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, data in (("pkg/a.txt", b"from the archive\n"), ("pkg/bin/tool", b"#!/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o755, 1234, 1234
            tar.addfile(info, io.BytesIO(data))
    write(
        tmp_path / "ctx",
        {
            "Dockerfile": """
                FROM 127.0.0.1:5000/busybox:latest
                ADD vendor.tar.gz /opt/
                COPY docs/*.md notes/ /docs/
                COPY ["docs/with space.txt", "/spaced/"]
                COPY docs/guide.md /renamed.md
                RUN mkdir -p /data && echo seeded > /data/seed
                WORKDIR /data
                COPY --chown=1000:1000 docs/guide.md .
                RUN ls /opt/pkg /docs /spaced /renamed.md
            """,
            "vendor.tar.gz": archive.getvalue(),
            "docs/guide.md": "guide\n",
            "docs/api.md": "api\n",
            "docs/skip.txt": "not matched\n",
            "docs/with space.txt": "spaced\n",
            "notes/todo.txt": "todo\n",
        },
    )
    with connect(engine, tmp_path) as client:
        built = client.host().directory("ctx").docker_build()
        listing = "ls /opt/pkg; ls /docs; ls /spaced; stat -c '%u %a' /opt/pkg/a.txt guide.md"
        out = built.with_exec(["sh", "-c", listing]).stdout()
        assert out.split("\n") == [
            "a.txt",
            "bin",
            "api.md",
            "guide.md",
            "todo.txt",
            "with space.txt",
            "1234 755",
            "1000 644",
            "",
        ]
        assert built.file("/renamed.md").contents() == "guide\n"
        assert built.workdir() == "/data"


def test_failing_run_names_command_and_exit_code(engine: RunningEngine, tmp_path: Path) -> None:
    write(
        tmp_path / "ctx",
        {
            "Dockerfile": """
                FROM 127.0.0.1:5000/busybox:latest
                RUN echo compiling && echo "broken build" >&2 && exit 7
            """
        },
    )
    with connect(engine, tmp_path) as client, pytest.raises(ExecError) as caught:
        client.host().directory("ctx").docker_build().sync()
    error = caught.value
    assert error.exit_code == 7
    assert error.command == ["/bin/sh", "-c", 'echo compiling && echo "broken build" >&2 && exit 7']
    assert error.stdout == "compiling\n"
    assert "broken build" in error.stderr
    assert "exit code: 7" in str(error)


def test_dockerfile_mistakes_name_the_line(engine: RunningEngine, tmp_path: Path) -> None:
    write(
        tmp_path / "ctx",
        {
            "Dockerfile": """
                FROM 127.0.0.1:5000/busybox:latest
                COPY present.txt /
                COPY requirements.txt /app/
            """,
            "Dockerfile.onbuild": "FROM 127.0.0.1:5000/busybox:latest\nONBUILD RUN true\n",
            "Dockerfile.many": "FROM scratch\nCOPY present.txt other.txt /app\n",
            "present.txt": "here\n",
            "other.txt": "here too\n",
        },
    )
    with connect(engine, tmp_path) as client:
        ctx = client.host().directory("ctx")
        with pytest.raises(QueryError) as missing:
            ctx.docker_build().sync()
        assert "Dockerfile line 3 (COPY): source requirements.txt does not exist" in str(
            missing.value
        )
        with pytest.raises(QueryError, match=r"line 2 \(ONBUILD\): ONBUILD is not supported"):
            ctx.docker_build(dockerfile="Dockerfile.onbuild").sync()
        with pytest.raises(QueryError, match=r"line 2 \(COPY\).*ending with '/'"):
            ctx.docker_build(dockerfile="Dockerfile.many").sync()
        with pytest.raises(QueryError, match="no Dockerfile 'nope' in the build context"):
            ctx.docker_build(dockerfile="nope").sync()


def test_sdk_pipeline_after_docker_build_is_a_cache_hit(
    engine: RunningEngine, tmp_path: Path, busybox_ref: str
) -> None:
    token = uuid.uuid4().hex
    step = "cat /src/token.txt; head -c 16 /dev/urandom | od -An -tx1 > /random"
    write(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {busybox_ref}\nCOPY . /src\nRUN {step}\n",
            "token.txt": token,
        },
    )
    with connect(engine, tmp_path) as client:
        ctx = client.host().directory("ctx")
        built = ctx.docker_build().file("/random").contents()
        same = (
            client.container()
            .from_(busybox_ref)
            .with_directory("/src", ctx)
            .with_exec(["/bin/sh", "-c", step])
        )
        # The random bytes the Dockerfile's RUN drew: the SDK's identical step did not run again.
        assert same.file("/random").contents() == built
        assert same.stdout() == token


PLATFORMS = """
ARG BASE=127.0.0.1:5000/busybox:multiarch
FROM --platform=$BUILDPLATFORM $BASE AS tools
RUN uname -m > /build-arch

FROM $BASE
ARG TARGETPLATFORM
ARG TARGETARCH
COPY --from=tools /build-arch /
RUN echo "$TARGETPLATFORM $TARGETARCH $(uname -m) built on $(cat /build-arch)" > /target
"""


def test_platform_and_from_platform(engine: RunningEngine, tmp_path: Path) -> None:
    write(tmp_path / "ctx", {"Dockerfile": PLATFORMS})
    with connect(engine, tmp_path) as client:
        ctx = client.host().directory("ctx")
        arm = ctx.docker_build(platform="linux/arm64").file("/target").contents()
        native = ctx.docker_build().file("/target").contents()
    assert arm == "linux/arm64 arm64 aarch64 built on x86_64\n"
    assert native == "linux/amd64 amd64 x86_64 built on x86_64\n"


RUN_MOUNTS = """
FROM 127.0.0.1:5000/busybox:latest
ARG RUN_ID
RUN --mount=type=cache,target=/cache,id=dockerfile-test-{token} \\
    echo "$RUN_ID" >> /cache/runs && wc -l < /cache/runs > /runs-seen
RUN --mount=type=bind,source=docs,target=/mnt/docs \\
    --mount=type=tmpfs,target=/scratch \\
    cat /mnt/docs/guide.md > /from-bind && touch /scratch/x && ls /mnt > /mnt-listing
RUN --network=none ip -o link | grep -c -v ' lo:' > /links || true
COPY --from=127.0.0.1:5000/busybox:latest /bin/busybox /opt/busybox
"""


def test_run_mounts_and_copy_from_an_image(engine: RunningEngine, tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    write(
        tmp_path / "ctx",
        {"Dockerfile": RUN_MOUNTS.replace("{token}", token), "docs/guide.md": "guide\n"},
    )
    with connect(engine, tmp_path) as client:
        ctx = client.host().directory("ctx")
        first = ctx.docker_build(build_args=[dirk.BuildArg(name="RUN_ID", value="one")])
        assert first.file("/runs-seen").contents().strip() == "1"
        second = ctx.docker_build(build_args=[dirk.BuildArg(name="RUN_ID", value="two")])
        # The cache volume outlived the first build; its content is in no layer.
        assert second.file("/runs-seen").contents().strip() == "2"
        script = "cat /from-bind /mnt-listing /links; test ! -e /cache/runs && echo clean"
        probe = second.with_exec(["sh", "-c", script])
        assert probe.stdout() == "guide\ndocs\n0\nclean\n"
        assert second.with_exec(["/opt/busybox", "true"]).exit_code() == 0


SECRETS = """
FROM 127.0.0.1:5000/busybox:latest
RUN --mount=type=secret,id=api-token \\
    --mount=type=secret,id=api-token,env=API_TOKEN \\
    --mount=type=secret,id=absent \\
    test "$(cat /run/secrets/api-token)" = "$API_TOKEN" \\
    && echo "token of $(wc -c < /run/secrets/api-token) bytes" > /seen \\
    && test ! -e /run/secrets/absent
RUN --mount=type=secret,id=api-token,target=/etc/app/token,uid=1000,mode=0440 \\
    stat -c '%u %a' /etc/app/token > /stat && cat /etc/app/token
"""


def test_secret_mounts(engine: RunningEngine, tmp_path: Path) -> None:
    value = "s3cr3t-" + uuid.uuid4().hex[:8]
    write(tmp_path / "ctx", {"Dockerfile": SECRETS})
    with connect(engine, tmp_path) as client:
        token = client.set_secret("api-token", value)
        built = client.host().directory("ctx").docker_build(secrets=[token])
        assert built.file("/seen").contents() == f"token of {len(value)} bytes\n"
        assert built.file("/stat").contents() == "1000 440\n"
        # The secret is in no layer of the image.
        probe = built.with_exec(["sh", "-c", "ls /run/secrets /etc/app 2>&1; true"]).stdout()
        assert value not in probe and "api-token" not in probe
        required = "RUN --mount=type=secret,id=api-token,required cat /run/secrets/api-token"
        write(tmp_path / "ctx", {"Dockerfile.required": f"FROM {BUSYBOX}\n{required}\n"})
        unsent = client.host().directory("ctx").docker_build(dockerfile="Dockerfile.required")
        with pytest.raises(QueryError, match=r"line 2 \(RUN\): the secret 'api-token' is req"):
            unsent.sync()
