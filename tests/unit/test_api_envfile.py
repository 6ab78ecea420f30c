"""Parsing `.env` text the way EnvFile reads it."""

from __future__ import annotations

from dirk.solver.envfiles import cooked, parse_lines, quote


def test_lines_comments_export_and_bad_names() -> None:
    text = "# c\n\nexport A=1\nB = 2 \n1BAD=x\nnoequals\nC='x # y'\n"
    assert parse_lines(text) == [("A", "1"), ("B", "2"), ("C", "'x # y'")]


def test_quotes_escapes_comments_and_expansion() -> None:
    env = {"A": "1"}
    assert cooked("'$A\\n'", env, True) == "$A\\n"
    assert cooked('"$A\\t${A}\\""', env, True) == '1\t1"'
    assert cooked("$A-x # note", env, True) == "1-x"
    assert cooked("$A", env, False) == "$A"
    assert cooked("$MISSING", env, True) == ""


def test_quote_reads_back_as_the_same_value() -> None:
    for value in ("plain", "a b", "it's $HOME\n", 'say "hi"', "", "$X"):
        assert cooked(quote(value), {"HOME": "/root", "X": "x"}, True) == value
