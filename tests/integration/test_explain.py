"""Why did this step run again? Real steps (a host directory read, an exec in busybox) run,
one input changes, and the job that asked hears which one, by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirk.engine import EngineCore
from dirk.solver.job import Job, StepEvent
from dirk.solver.ops import Exec, ExecMount, HostDirectory, Ref

from .engine_helpers import image, sh

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def explained(engine: EngineCore, op: Exec) -> dict[str, str]:
    """Run `op` for a job that asks; {step description: why it ran}."""
    events: list[StepEvent] = []
    await engine.solver.result(Job(explain=True, events=events.append), op)
    return {e.description: e.data.decode() for e in events if e.kind == "explain"}


async def test_a_changed_file_and_a_changed_env_value_are_named(
    engine: EngineCore, busybox_ref: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "main.py").write_text("print(1)\n")
    (src / "README").write_text("hello\n")
    root, _ = await image(engine, busybox_ref)

    def step(level: str) -> Exec:
        mount = ExecMount("/src", source=Ref(HostDirectory(str(src))), readonly=True)
        return sh(root, "cat /src/pkg/main.py", env=[f"LEVEL={level}"], mounts=[mount])

    first = await explained(engine, step("1"))
    assert first["sh -c 'cat /src/pkg/main.py'"].startswith("first run of this step")

    (src / "pkg" / "main.py").write_text("print(2)\n")
    second = await explained(engine, step("1"))
    assert second[f"host directory {src}"] == "file changed: pkg/main.py"
    assert second["sh -c 'cat /src/pkg/main.py'"] == (
        f"mount /src (`host directory {src}`) changed"
    )

    third = await explained(engine, step("2"))
    assert third == {"sh -c 'cat /src/pkg/main.py'": "env LEVEL changed: '1' → '2'"}

    assert await explained(engine, step("2")) == {}  # cached: nothing ran, nothing to say
