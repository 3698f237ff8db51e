"""The ``rp-executor`` command line.

``rp-executor --help`` lists the subcommands, ``rp-executor <command> --help`` explains
one. A subcommand is one function registered with :func:`command`: it receives the
parsed arguments and returns the exit status; its docstring is its help text (the first
line in the list of subcommands, the whole text in its own ``--help``).

This module imports only what parsing and the registered commands need, so that
``rp-executor --help`` answers at once; a command that needs the client's heavy parts
(Parsl, ZMQ, ...) imports them inside its function.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from rp_executor import __version__

PROG = "rp-executor"

Run = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One subcommand: its ``name``, the function that ``run`` s it, and ``configure``,
    which adds the subcommand's own arguments to its parser (None: it takes none)."""

    name: str
    run: Run
    configure: Configure | None = None

    @property
    def help(self) -> str:
        """The whole docstring of :attr:`run`, without its indentation."""
        return inspect.getdoc(self.run) or ""

    @property
    def summary(self) -> str:
        """The first line of :attr:`help`, for the list of subcommands."""
        return self.help.split("\n", 1)[0]


COMMANDS: dict[str, Command] = {}
"""Every subcommand by name, in the order they were registered."""


def command(name: str, configure: Configure | None = None) -> Callable[[Run], Run]:
    """Register the decorated function as the subcommand ``name``.

    ``configure(parser)``, if given, adds the subcommand's arguments. The function gets
    the parsed arguments and returns the exit status (0: success). Raises
    :class:`ValueError` if ``name`` is already registered.
    """
    def register(run: Run) -> Run:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is registered twice: "
                             f"{COMMANDS[name].run.__qualname__} and {run.__qualname__}")
        COMMANDS[name] = Command(name, run, configure)
        return run
    return register


def version_text() -> str:
    """``rp-executor <version>`` and, on a second line, the Python that runs it."""
    return (f"{PROG} {__version__}\n"
            f"Python {platform.python_version()} ({platform.python_implementation()}) "
            f"at {sys.executable}")


@command("version")
def version(args: argparse.Namespace) -> int:
    """Print the version of rp-executor and of the Python that runs it."""
    print(version_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, one subparser per entry of
    :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="rp-executor: a pilot system with the RADICAL-Pilot API, whose "
                    "pilots are Parsl blocks and whose units are futures.",
        epilog=f"'{PROG} <command> --help' explains one command.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True,
                                title="commands")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.summary, description=cmd.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if cmd.configure is not None:
            cmd.configure(p)
        p.set_defaults(_run=cmd.run)  # not "run": a command may have an argument so named
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit
    status: 0 on success, 2 for a command line argparse rejects (its usage message
    goes to stderr), otherwise what the subcommand returns."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help, --version and usage errors: keep main() callable
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return args._run(args)
