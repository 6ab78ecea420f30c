"""`.env` text: parsing, quote removal and `${VAR}` expansion, edits, and writing it back.

Pure functions, shared by the API (which reads variables for its leaves) and the solver
(which writes an EnvFile's `asFile` as a step, so building one runs nothing). The rules are
those of `.env` loaders: `#` starts a comment line, `export ` is allowed, '...' is literal,
"..." knows \\n \\t \\r \\" \\\\ \\$ and variables, an unquoted value ends at " #". Variables
expand to the values of those defined before them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
_DOUBLE = re.compile(r"\\(.)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_SAFE = re.compile(r"[A-Za-z0-9_./:@%+,=-]*")

#: An edit of an EnvFile: ("set", name, value), ("unset", name, ""), ("namespace", prefix, "").
Edit = tuple[str, str, str]
#: One variable: name, value as written, value after quote removal and expansion.
Resolved = tuple[str, str, str]


def parse_lines(text: str) -> list[tuple[str, str]]:
    """(name, value as written) of each assignment line, in order."""
    variables: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        name, sep, raw = stripped.partition("=")
        name = name.strip()
        if sep and _NAME.match(name):
            variables.append((name, raw.strip()))
    return variables


def _var(env: dict[str, str], do_expand: bool, name: str, text: str) -> str:
    return env.get(name, "") if do_expand else text


def cooked(raw: str, env: dict[str, str], do_expand: bool) -> str:
    """A written value with its quotes removed and (unless single-quoted) variables expanded."""
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':

        def one(m: re.Match[str]) -> str:
            if m.group(1) is not None:
                return _ESCAPES.get(m.group(1), "\\" + m.group(1))
            return _var(env, do_expand, m.group(2) or m.group(3), m.group(0))

        return _DOUBLE.sub(one, raw[1:-1])
    return expanded(re.split(r"\s+#", raw, maxsplit=1)[0].rstrip(), env, do_expand)


def expanded(value: str, env: dict[str, str], do_expand: bool) -> str:
    """`$VAR` and `${VAR}` in `value` replaced by their values in `env` (unset: empty)."""
    return re.sub(
        r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
        lambda m: _var(env, do_expand, m.group(1) or m.group(2), m.group(0)),
        value,
    )


def resolve(text: str | None, edits: Iterable[Edit], do_expand: bool) -> list[Resolved]:
    """The variables of `text` (None: none) after `edits`, in order. Values are cooked as they
    are read, so a namespace keeps what they expanded to."""
    found: list[Resolved] = []

    def add(name: str, raw: str, from_file: bool) -> None:
        env = {n: v for n, _, v in found}
        value = cooked(raw, env, do_expand) if from_file else expanded(raw, env, do_expand)
        found.append((name, raw, value))

    for name, raw in parse_lines(text or ""):
        add(name, raw, True)
    for edit, name, value in edits:
        if edit == "set":
            add(name, value, False)  # a value as given: expanded, no quotes to remove
        elif edit == "unset":
            found = [v for v in found if v[0] != name]
        else:
            found = [(n[len(name) :], r, v) for n, r, v in found if n.startswith(name)]
    return found


def quote(value: str) -> str:
    """`value` written so that `cooked` gives it back: bare, '...' or "..." with escapes."""
    if _SAFE.fullmatch(value):
        return value
    if "'" not in value and "\n" not in value:
        return "'" + value + "'"
    escaped = "".join(
        {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "$": "\\$"}.get(c, c)
        for c in value
    )
    return '"' + escaped + '"'


def render(variables: Sequence[Resolved]) -> bytes:
    """A `.env` file of the variables' values, each line reading back as the same value."""
    return "".join(f"{name}={quote(value)}\n" for name, _, value in variables).encode()
