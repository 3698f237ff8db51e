"""RP 0.50's argument rule: how a unit's arguments become shell text, and when the
argv can be exec'd without a shell.  Pure, apart from the bash runs that check the
shell text means what the table says."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from rp_executor.agent.arguments import (OPERATORS, arg_string, command_line, direct_argv,
                                         quote_argument)

# -- quote_argument: every rule ------------------------------------------------------

QUOTED = [
    # (argument, its text on the command line; None: dropped)
    ("plain", '"plain"'),
    ("hello world", '"hello world"'),
    ("", None),
    (3, '"3"'),
    (2.5, '"2.5"'),
    (0, '"0"'),
    *[(op, op) for op in (">", ">>", "<", "<<", "|", "||", "&&", "&")],
    (">out", '">out"'),             # only the operator alone passes
    ("a|b", '"a|b"'),
    ("*.txt", "*.txt"),
    ("data?.csv", "data?.csv"),
    ("'$HOME'", "'$HOME'"),
    ("'a b'", "'a b'"),
    ("''", "''"),
    ("'", "\"'\""),                 # one quote is not a wrapping
    ("'open", "\"'open\""),
    ("it's", "\"it's\""),
    ('say "hi"', '"say \\"hi\\""'),
    ("$FOO", '"$FOO"'),
    ("${NOPE:-x}", '"${NOPE:-x}"'),
    ("$(echo hi)", '"$(echo hi)"'),
    (shlex.quote("echo it's"), shlex.quote("echo it's")),
]


@pytest.mark.parametrize("arg, quoted", QUOTED, ids=[repr(a) for a, _ in QUOTED])
def test_each_argument_is_quoted_by_rp_050s_rule(arg, quoted):
    assert quote_argument(arg) == quoted


def test_operators_are_exactly_the_eight_rp_passes():
    assert OPERATORS == {">", ">>", "<", "<<", "|", "||", "&&", "&"}


def test_arg_string_drops_empty_arguments_and_joins_by_single_spaces():
    assert arg_string(["a", "", "b c", 3, ">", "out"]) == '"a" "b c" "3" > "out"'
    assert arg_string([]) == ""
    assert arg_string(["", ""]) == ""


def test_command_line_puts_the_executable_as_it_is():
    assert command_line("/bin/echo", []) == "/bin/echo"
    assert command_line("/bin/echo", [""]) == "/bin/echo"
    assert command_line("$HOME/bin/app", ["x y"]) == '$HOME/bin/app "x y"'


# -- what the shell makes of it, and the direct path ---------------------------------

ENV = {"FOO": "a", "BAR": "b"}

WORDS = [
    # (arguments, the words the program gets, with ENV set, in a sandbox holding
    #  x.txt, y.txt, 1.dat)
    (["plain"], ["plain"]),
    (["hello world"], ["hello world"]),
    (["a", "", "b"], ["a", "b"]),
    ([3, 2.5], ["3", "2.5"]),
    (["$FOO"], ["a"]),
    (["$FOO $BAR"], ["a b"]),
    (["-c", "echo $FOO $BAR"], ["-c", "echo a b"]),
    (["${NOPE:-x}"], ["x"]),
    (["$(echo hi there)"], ["hi there"]),
    (["`echo tick`"], ["tick"]),
    (["back\\slash"], ["back\\slash"]),
    (["'$HOME'"], ["$HOME"]),
    (["'a   b'"], ["a   b"]),
    (["''"], [""]),
    (["'"], ["'"]),
    (["it's"], ["it's"]),
    (['say "hi"'], ['say "hi"']),
    (['a"b\'c'], ['a"b\'c']),
    (["two\nlines"], ["two\nlines"]),
    (["!bang"], ["!bang"]),
    (["x=1,y:2@h/p%^+"], ["x=1,y:2@h/p%^+"]),
    (["*.txt"], ["x.txt", "y.txt"]),
    (["?.dat"], ["1.dat"]),
    (["none*.zz"], ["none*.zz"]),   # no match: the pattern itself
    (["-c", shlex.quote("echo it's here")], ["-c", "echo it's here"]),
    (["-c", shlex.quote('say "x" $Y *')], ["-c", 'say "x" $Y *']),
    (["-c", shlex.quote("true")], ["-c", "true"]),
    (["-c", shlex.quote("")], ["-c", ""]),
    (["mix", "", "$FOO", "'$BAR'", "c d", 7, 'q"q'], ["mix", "a", "$BAR", "c d", "7", 'q"q']),
]


@pytest.fixture
def sandbox(tmp_path):
    for name in ("x.txt", "y.txt", "1.dat"):
        (tmp_path / name).write_text(name)
    return tmp_path


def shell_words(line: str, cwd) -> list[str]:
    """The words bash (which runs unit scripts) hands to a program for ``line``."""
    out = subprocess.run(["/bin/bash", "-c", f"printf '%s\\0' {line}"], cwd=cwd,
                         env={**os.environ, **ENV}, capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize("arguments, words", WORDS, ids=[repr(a) for a, _ in WORDS])
def test_the_shell_path_gives_the_words_of_the_rule(arguments, words, sandbox):
    assert shell_words(arg_string(arguments), sandbox) == words


@pytest.mark.parametrize("arguments, words", WORDS, ids=[repr(a) for a, _ in WORDS])
def test_the_direct_path_agrees_with_the_shell_path(arguments, words, sandbox):
    argv = direct_argv("/bin/echo", arguments)
    if argv is not None:
        assert argv == ["/bin/echo", *shell_words(arg_string(arguments), sandbox)]


DIRECT = [
    # (executable, arguments, the argv exec'd without a shell; None: through bash)
    ("/bin/echo", [], ["/bin/echo"]),
    ("/bin/echo", ["a b", "it's", "'", "x\ny", "!"], ["/bin/echo", "a b", "it's", "'", "x\ny", "!"]),
    ("/bin/echo", ["a", "", "b"], ["/bin/echo", "a", "b"]),
    ("/bin/echo", [3, 2.5], ["/bin/echo", "3", "2.5"]),
    ("/bin/echo", ["$X"], None),
    ("/bin/echo", ["`x`"], None),
    ("/bin/echo", ["a\\b"], None),
    ("/bin/echo", ['"'], None),
    ("/bin/echo", ["*.txt"], None),
    ("/bin/echo", ["a?"], None),
    ("/bin/echo", ["'a'"], None),
    ("/bin/echo", ["''"], None),
    *[("/bin/echo", ["x", op, "y"], None) for op in sorted(OPERATORS)],
    ("exit", ["3"], None),           # a shell word
    ("A=1", [], None),               # an assignment
    ("/bin/my prog", [], None),      # the executable is shell text as it is
    ("echo;ls", [], None),
    ("$HOME/app", [], None),
]


@pytest.mark.parametrize("exe, arguments, argv", DIRECT,
                         ids=[f"{e} {a!r}" for e, a, _ in DIRECT])
def test_direct_argv_only_where_a_shell_would_change_nothing(exe, arguments, argv):
    assert direct_argv(exe, arguments) == argv


def test_operators_redirect_and_join_commands(sandbox):
    (sandbox / "in.dat").write_text("12345")
    line = command_line("/bin/echo", ["-n", "hi", ">", "out.txt", "&&", "wc", "-c", "<",
                                      "in.dat", "|", "tr", "-d", " ", ">>", "out.txt"])
    subprocess.run(["/bin/bash", "-c", line], cwd=sandbox, check=True)
    assert (sandbox / "out.txt").read_text() == "hi5\n"
