""".dockerignore -> the exclude patterns of a filtered copy of the build context.

Docker reads each line as a path pattern relative to the context root (trimmed, `#` lines
skipped, cleaned like a path: `./a/` is `a`), `!` re-includes, the last matching line wins, and
a pattern matching a directory matches everything below it. The copy's filter is gitignore-like,
where a pattern without a slash matches at any depth: anchoring every pattern with a leading
`/` gives Docker's meaning (`*.md` only at the top, `**/*.md` anywhere).
"""

from __future__ import annotations

import posixpath


def exclude_patterns(text: str) -> tuple[str, ...]:
    patterns: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
            if not line:
                continue
        cleaned = posixpath.normpath(line).lstrip("/")
        if cleaned in ("", "."):
            cleaned = "**"
        patterns.append(("!" if invert else "") + "/" + cleaned)
    return tuple(patterns)
