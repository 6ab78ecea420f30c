"""`python -m dirk.codegen`: regenerate src/dirk/sdk/gen/ from the schema file."""

from __future__ import annotations

from dirk.codegen import GEN_DIR, write


def main() -> None:
    paths = write()
    print(f"wrote {len(paths)} modules to {GEN_DIR}")


if __name__ == "__main__":
    main()
