"""Schema -> Python SDK classes: `python -m dirk.codegen` (or `make codegen`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dirk.codegen.generator import generate
from dirk.schema import load_sdl

#: Where the generated modules are committed.
GEN_DIR = Path(__file__).resolve().parent.parent / "sdk" / "gen"


_RUFF_OPTIONS = ["--line-length", "100", "--target-version", "py311"]


def _ruff(args: list[str], source: str, filename: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args, *_RUFF_OPTIONS, "--stdin-filename", filename, "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ruff {args[0]} failed on generated {filename}:\n{result.stderr}")
    return result.stdout


def format_source(source: str, filename: str) -> str:
    """`source` with sorted imports, as `ruff format` (the project's style) writes it."""
    sorted_imports = _ruff(
        ["check", "--select", "I", "--fix", "--quiet", "--exit-zero"], source, filename
    )
    return _ruff(["format", "--quiet"], sorted_imports, filename)


def render() -> dict[str, str]:
    """File name -> formatted source of every generated module."""
    return {name: format_source(text, name) for name, text in generate(load_sdl()).items()}


def write(out_dir: Path = GEN_DIR) -> list[Path]:
    """Regenerates `out_dir`: writes every module and removes stale ones."""
    files = render()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.py"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in sorted(files.items()):
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
