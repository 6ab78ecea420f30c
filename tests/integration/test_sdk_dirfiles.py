"""Host files in and out and directory reads through the dirk SDK against a real `dirk engine`:
what a pipeline program writes, including lists of result objects and exports into its
working directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    files = {
        "repo/.gitignore": "*.log\nnode_modules/\n",
        "repo/app.py": "def main():\n    print('TODO: greet')\n",
        "repo/lib/util.py": "# TODO: tidy\n",
        "repo/debug.log": "TODO: ignored\n",
        "repo/node_modules/x.js": "TODO\n",
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def config(engine: RunningEngine, workdir: Path) -> dirk.Config:
    return dirk.Config(engine=engine.socket_url, workdir=workdir)


def test_sync_reads_search_and_export(
    engine: RunningEngine, busybox_ref: str, workspace: Path
) -> None:
    victim = workspace / "victim"
    victim.mkdir()
    (victim / "report.txt").write_text("precious\n")
    (workspace / "out").mkdir()
    (workspace / "out" / "report.txt").symlink_to(victim / "report.txt")
    nonce = uuid.uuid4().hex
    with dirk.Connection(config(engine, workspace)) as client:
        repo = client.host().directory("repo", gitignore=True)
        assert repo.glob("**") == [".gitignore", "app.py", "lib/", "lib/util.py"]
        hits = repo.search("TODO: (\\w+)")
        seen = [(h.file_path(), h.line_number(), h.matched_lines()) for h in hits]
        assert seen == [
            ("app.py", 2, "    print('TODO: greet')\n"),
            ("lib/util.py", 1, "# TODO: tidy\n"),
        ]
        sub = hits[0].submatches()
        assert [(s.start(), s.end(), s.text()) for s in sub] == [(11, 22, "TODO: greet")]
        stat = repo.stat("lib")
        assert (stat.file_type(), stat.name()) == (dirk.FileType.DIRECTORY, "lib")
        assert repo.exists("app.py", expected_type=dirk.ExistsType.REGULAR_TYPE)
        report = (
            client.container()
            .from_(busybox_ref)
            .with_directory("/src", repo)
            .with_exec(["sh", "-c", f"mkdir /out && ls /src > /out/report.txt && echo {nonce}"])
        )
        written = report.directory("/out").export("out")
        assert written == str(workspace / "out")
        single = (
            report.file("/out/report.txt")
            .with_name("copy.txt")
            .export("out", allow_parent_dir_path=True)
        )
        assert single == str(workspace / "out" / "copy.txt")
    assert (victim / "report.txt").read_text() == "precious\n"  # the link was replaced
    assert not (workspace / "out" / "report.txt").is_symlink()
    assert (workspace / "out" / "report.txt").read_text() == "app.py\nlib\n"
    assert (workspace / "out" / "copy.txt").read_text() == "app.py\nlib\n"


@pytest.mark.anyio
async def test_async_digest_filter_and_replace(engine: RunningEngine, workspace: Path) -> None:
    async with dirk.Connection(config(engine, workspace)) as client:
        repo = client.host().directory("repo")
        kept = repo.filter(exclude=["node_modules/"], gitignore=True)
        assert await kept.entries() == [".gitignore", "app.py", "lib/"]
        again = client.host().directory("repo", gitignore=True, exclude=["node_modules/"])
        assert await kept.digest() == await again.digest()
        fixed = repo.file("app.py").with_replaced("TODO: greet", "hello")
        assert await fixed.contents() == "def main():\n    print('hello')\n"
        assert await repo.find_up("util.py", "lib") == "lib/util.py"
        dest = workspace / "fixed.py"
        assert await fixed.export(str(dest)) == str(dest)
    assert dest.read_text() == "def main():\n    print('hello')\n"
    assert os.stat(dest).st_uid == os.stat(workspace).st_uid
