"""A unit's command line: how its ``executable`` and ``arguments`` become shell text.

RADICAL-Pilot 0.50's rule (``agent/lm/base.py``, used by every launch method): each
argument is made a string and then

* dropped when it is empty;
* passed as it is when it is exactly a redirection or control operator
  (``>`` ``>>`` ``<`` ``<<`` ``|`` ``||`` ``&&`` ``&``), when it holds ``*`` or ``?``
  (the shell globs it in the unit sandbox), or when it is wrapped in single quotes;
* put in double quotes otherwise, with inner ``"`` escaped as ``\\"``: ``$VAR``,
  ``${VAR:-x}`` and ``$(cmd)`` expand, and spaces stay inside the argument.

The executable itself goes on the line as it is.  :func:`direct_argv` says when the
same command can be exec'd without a shell, and with which argv.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["OPERATORS", "quote_argument", "arg_string", "command_line", "direct_argv"]

OPERATORS = frozenset({">", ">>", "<", "<<", "|", "||", "&&", "&"})
"""Arguments that pass as they are: they redirect or join commands."""

# Words the shell would treat differently from a program of that name; these
# executables always go through the shell.
_SHELL_WORDS = frozenset(
    "alias bg bind break builtin caller case cd command compgen complete continue coproc "
    "declare dirs disown do done elif else enable esac eval exec exit export fc fg fi for "
    "function getopts hash help history if in jobs let local logout mapfile popd pushd read "
    "readarray readonly return select set shift shopt source suspend then time times trap "
    "type typeset ulimit umask unalias unset until wait while".split()
)
_PLAIN_EXECUTABLE = re.compile(r"[A-Za-z0-9_\-+=.,/:@%^]+")
# inside double quotes only these keep a meaning (history expansion is off in scripts)
_DOUBLE_QUOTE_SPECIAL = re.compile(r'[$`\\"]')


def _verbatim(arg: str) -> bool:
    """Whether a non-empty argument goes on the line as it is (the shell reads it)."""
    return (arg in OPERATORS or "*" in arg or "?" in arg
            or (len(arg) >= 2 and arg[0] == arg[-1] == "'"))


def quote_argument(arg: object) -> str | None:
    """One argument as it goes on the unit's command line, or None when it is dropped.

    ``arg`` is made a string first (``str(3)`` is ``3``); see the module docstring
    for the rule.
    """
    text = str(arg)
    if not text:
        return None
    if _verbatim(text):
        return text
    return '"' + text.replace('"', '\\"') + '"'


def arg_string(arguments: Iterable[object]) -> str:
    """The arguments as shell text, each quoted by :func:`quote_argument`, joined by
    single spaces (dropped arguments leave no trace)."""
    return " ".join(q for q in map(quote_argument, arguments) if q is not None)


def command_line(executable: str, arguments: Iterable[object]) -> str:
    """The unit's command as one shell line: the executable as it is, then
    :func:`arg_string`."""
    args = arg_string(arguments)
    return f"{executable} {args}" if args else executable


def direct_argv(executable: str, arguments: Iterable[object]) -> list[str] | None:
    """The argv that, exec'd without a shell, does what :func:`command_line` does on
    one; None when only a shell gives that meaning.

    That holds when the executable is a plain path or name (no shell word, no
    assignment, nothing the shell would read) and every kept argument would be
    double-quoted with nothing inside that double quotes leave special (``$``,
    backquote, ``\\``, ``"``): its text is then the word the program gets.
    """
    if ("=" in executable or executable in _SHELL_WORDS
            or not _PLAIN_EXECUTABLE.fullmatch(executable)):
        return None
    argv = [executable]
    for arg in arguments:
        text = str(arg)
        if not text:
            continue
        if _verbatim(text) or _DOUBLE_QUOTE_SPECIAL.search(text):
            return None
        argv.append(text)
    return argv
