"""Words of a Dockerfile instruction the way Docker reads them: quotes removed, backslash
escapes, and `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}` (and `-`/`+` without the
colon) replaced from the build's variables. RUN, CMD and ENTRYPOINT are never expanded here:
their shell does it."""

from __future__ import annotations

from collections.abc import Mapping

from dirk.errors import DockerfileError

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def process_words(text: str, env: Mapping[str, str]) -> list[str]:
    """`text` split at unquoted whitespace into words, each expanded and unquoted."""
    return _Lexer(text, env).words()


def process_word(text: str, env: Mapping[str, str]) -> str:
    """`text` as one word (whitespace kept), expanded and unquoted."""
    return "".join(_Lexer(text, env, split=False).words())


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], split: bool = True) -> None:
        self.text = text
        self.env = env
        self.split = split
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def words(self) -> list[str]:
        words: list[str] = []
        current: list[str] = []
        quoted = False  # a quoted empty word ("") is a word; an empty expansion is not
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if self.split and ch.isspace():
                self.pos += 1
                if quoted or "".join(current):
                    words.append("".join(current))
                current, quoted = [], False
                continue
            if ch in "'\"":
                quoted = True
            if ch == "'":
                end = self.text.find("'", self.pos + 1)
                if end < 0:
                    raise DockerfileError(f"unmatched single quote in {self.text!r}")
                current.append(self.text[self.pos + 1 : end])
                self.pos = end + 1
            elif ch == '"':
                self.pos += 1
                current.append(self._double_quoted())
            elif ch == "\\":
                self.pos += 1
                if self.pos < len(self.text):
                    current.append(self.text[self.pos])
                    self.pos += 1
            elif ch == "$":
                self.pos += 1
                current.append(self._variable())
            else:
                current.append(ch)
                self.pos += 1
        if quoted or "".join(current) or (not self.split and not words):
            words.append("".join(current))
        return words

    def _double_quoted(self) -> str:
        out: list[str] = []
        while True:
            ch = self._peek()
            if not ch:
                raise DockerfileError(f"unmatched double quote in {self.text!r}")
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\" and self._peek() in ('"', "\\", "$"):
                out.append(self._peek())
                self.pos += 1
            elif ch == "$":
                out.append(self._variable())
            else:
                out.append(ch)

    def _name(self) -> str:
        start = self.pos
        while self._peek() and self._peek() in _NAME_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def _variable(self) -> str:
        """After a `$`: the variable's value (a lone `$` stays itself)."""
        if self._peek() != "{":
            name = self._name()
            return self.env.get(name, "") if name else "$"
        self.pos += 1
        name = self._name()
        if not name:
            raise DockerfileError(f"bad substitution in {self.text!r}: a name must follow '${{'")
        ch = self._peek()
        if ch == "}":
            self.pos += 1
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            self.pos += 1
        modifier = self._peek()
        if modifier not in ("-", "+", "?"):
            raise DockerfileError(
                f"unsupported substitution in {self.text!r}: dirk knows ${{VAR}}, "
                "${VAR:-default}, ${VAR:+alternative}, ${VAR:?message} (and without ':')"
            )
        self.pos += 1
        word = process_word(self._until_brace(), self.env)
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if modifier == "-":
            return value if is_set and value is not None else word
        if modifier == "+":
            return word if is_set else ""
        if not is_set:
            raise DockerfileError(f"{name}: {word or 'is not set'}")
        return value or ""

    def _until_brace(self) -> str:
        depth, start = 0, self.pos
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if depth == 0:
                    word = self.text[start : self.pos]
                    self.pos += 1
                    return word
                depth -= 1
            self.pos += 1
        raise DockerfileError(f"missing '}}' in {self.text!r}")
