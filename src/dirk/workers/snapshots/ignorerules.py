"""The patterns of one `.gitignore` file, matched the way git matches them during its walk.

pathspec's GitIgnoreSpec answers "is this file ignored?" for a whole path in one go: each of
its patterns also matches everything below a directory it matches ("*.log" matches
"d.log/a/c.txt"), and "b/**" compiles to "everything that starts with b/", so asked about the
directory "b/" itself it says yes. A walk that asks about every level needs the other question:
does this pattern match exactly this path? Git asks only that (an ignored directory is never
entered, so what is below it never comes up). `IgnoreRules` keeps pathspec's parsing and
regexes and asks that question of them, by the form pathspec gave each regex.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum, auto
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

#: The regex group pathspec uses for the "/" after a directory's name.
_DIR_MARK = "(?P<ps_d>/)"
#: The end of a pattern whose last segment is a name: the name itself, file or directory.
_NAME_END = f"(?:{_DIR_MARK}|$)"


class _Form(Enum):
    EVERYTHING = auto()  # "*", "**", "/**": every path
    EVERY_DIRECTORY = auto()  # "*/", "**/": every directory
    NAME = auto()  # "x", "a/b", "**/x": the path itself, file or directory
    DIRECTORY = auto()  # "x/", "a/b/": the path itself, directories only
    BELOW = auto()  # "a/**", "*/**": every path strictly inside what the head matches
    DIRECTORY_BELOW = auto()  # "a/**/": every directory strictly inside what the head matches


@attrs.frozen
class _Rule:
    ignores: bool  # False for a "!" pattern
    form: _Form
    regex: re.Pattern[str]

    def matches(self, rel: str, is_dir: bool) -> bool:
        form = self.form
        if form is _Form.EVERYTHING:
            return True
        if form is _Form.EVERY_DIRECTORY:
            return is_dir
        if form is _Form.NAME:
            return self.regex.fullmatch(rel) is not None
        if form is _Form.DIRECTORY:
            return is_dir and self.regex.fullmatch(rel + "/") is not None
        if form is _Form.DIRECTORY_BELOW and not is_dir:
            return False
        # pathspec's regex for "head/**" is "head/" matched from the start: it matches
        # exactly the paths with something after a "/" that ends a match of the head.
        return self.regex.match(rel) is not None


def _form(pattern: str, regex: str) -> tuple[_Form, str]:
    """The form pathspec gave `regex` (compiled from `pattern`) and the regex to use for it."""
    if regex == ".":
        return _Form.EVERYTHING, regex
    segments = pattern.rstrip().removeprefix("!").split("/")
    if regex == _DIR_MARK:
        names = [s for s in segments if s]
        if names and names[-1] == "**" and "*" in names:
            # "**/*/**/": pathspec's regex for "*/"; git means the directories below the top.
            return _Form.DIRECTORY_BELOW, "^[^/]+/"
        return _Form.EVERY_DIRECTORY, regex
    if regex == "/":
        # "**/*/**": every path below a top-level directory.
        return _Form.BELOW, "^[^/]+/"
    if regex.endswith(_NAME_END):
        return _Form.NAME, regex
    if regex.endswith(_DIR_MARK):
        if len(segments) >= 2 and segments[-2] == "**":
            # pathspec folds "head/**/" into "head/"; git means the directories inside head.
            return _Form.DIRECTORY_BELOW, regex[: -len(_DIR_MARK)] + "/"
        return _Form.DIRECTORY, regex
    if regex.endswith("/"):
        return _Form.BELOW, regex
    raise ValueError(f"unexpected regex {regex!r} for the pattern {pattern!r}")


def _patterns(lines: Sequence[str]) -> list[GitIgnoreSpecPattern]:
    """The parsed patterns; a line pathspec cannot parse ("!", "a\\") is skipped, as git
    skips it, rather than failing the walk."""
    # Imported here: pathspec is a tenth of the engine's start, and most walks have no rules.
    import pathspec
    from pathspec.patterns.gitignore import GitIgnorePatternError

    lines = [line for line in lines if line.strip()]
    try:
        return list(pathspec.GitIgnoreSpec.from_lines(lines).patterns)
    except GitIgnorePatternError:
        pass
    kept: list[GitIgnoreSpecPattern] = []
    for line in lines:
        try:
            kept.extend(pathspec.GitIgnoreSpec.from_lines([line]).patterns)
        except GitIgnorePatternError:
            continue
    return kept


class IgnoreRules:
    """One .gitignore file's patterns; `verdict` gives git's answer for one path."""

    def __init__(self, lines: Sequence[str]) -> None:
        rules: list[_Rule] = []
        for p in _patterns(lines):
            if p.include is None or p.regex is None:
                continue  # a comment or a pattern git discards
            form, regex = _form(str(p.pattern), p.regex.pattern)
            rules.append(_Rule(p.include, form, re.compile(regex)))
        self._last_first = rules[::-1]

    @property
    def empty(self) -> bool:
        return not self._last_first

    def verdict(self, rel: str, is_dir: bool) -> bool | None:
        """True when the last pattern that matches `rel` ignores it, False when it is a
        negation, None when none matches. `rel` is relative to the file's directory."""
        for rule in self._last_first:
            if rule.matches(rel, is_dir):
                return rule.ignores
        return None
