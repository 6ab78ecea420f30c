"""The released Dagger Python SDK builds a Dockerfile on dirk: `directory.docker_build()`
inside `dirk run`, with build arguments and a target stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat.programs import (
    PIPELINES,
    REGISTRY,
    CompatTools,
    RunningEngine,
    assert_cleaned_up,
    run_program,
)

pytestmark = pytest.mark.integration

DOCKERFILE = f"""\
FROM {REGISTRY}/busybox:latest AS base
ARG NONCE
RUN echo "built for $NONCE" > /built.txt

FROM base AS app
ARG NONCE
LABEL org.example.nonce=$NONCE
ENV MODE=production
WORKDIR /srv
COPY greeting.txt ./
USER 1000
HEALTHCHECK CMD ["cat", "/built.txt"]
ENTRYPOINT ["sh", "-c"]
CMD ["cat /built.txt greeting.txt"]

FROM app AS broken
RUN exit 1
"""


def test_python_sdk_docker_build(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    workspace: Path,
    nonce: str,
) -> None:
    ctx = workspace / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "greeting.txt").write_text("hello from the context\n")
    result = run_program(
        request,
        [
            compat_tools.dirk,
            "run",
            "--",
            compat_tools.python,
            PIPELINES / "dagger_docker_build.py",
            nonce,
        ],
        cwd=workspace,
        engine=engine,
    )
    assert result.result_json() == {
        "stdout": f"built for {nonce}\nhello from the context\n",
        "entrypoint": ["sh", "-c"],
        "default_args": ["cat /built.txt greeting.txt"],
        "user": "1000",
        "workdir": "/srv",
        "label": nonce,
        "mode": "production",
        "healthcheck": ["cat", "/built.txt"],
    }, result.describe()
    assert_cleaned_up(result)
