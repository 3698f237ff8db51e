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
import os
import platform
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

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


class CommandError(Exception):
    """A subcommand cannot do what was asked: :func:`main` prints the message (as
    ``rp-executor <command>: error: <message>``) and returns 1."""


@command("version")
def version(args: argparse.Namespace) -> int:
    """Print the version of rp-executor and of the Python that runs it."""
    print(version_text())
    return 0


# --------------------------------------------------------------------------- helpers

SID_HELP = ("a session uid (a directory of that name under the working directory) or "
            "the path of a session directory")


def _sid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sid", metavar="SID", help=SID_HELP)


def _model(sid: str) -> Any:
    """The session ``sid`` read from its journal (:func:`rp_executor.analytics.load`)."""
    from rp_executor.analytics import SessionNotFound, load
    try:
        return load(sid)
    except SessionNotFound as exc:
        raise CommandError(str(exc)) from None
    except sqlite3.Error as exc:
        raise CommandError(f"cannot read the journal of {sid}: {exc}") from None


def _when(ts: float | None, day: bool = True) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if day else "%H:%M:%S", time.localtime(ts))


def _counts(counts: dict[str, int]) -> str:
    """``DONE 5, FAILED 1`` for the states with units in them."""
    return ", ".join(f"{state} {n}" for state, n in counts.items() if n) or "none"


def _tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (read from its end: logs grow large)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 256 * max(lines, 1) - 4096))
        text = fh.read().decode("utf-8", "replace")
    return text.splitlines()[-lines:] if lines > 0 else []


def failure_reason(exit_code: int | None, stderr: str | None) -> str:
    """Why a unit failed, in one line: its exit code and rp_executor's note in its
    stderr (else the last line of its stderr)."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    notes = [line for line in lines if line.startswith("rp_executor:")]
    said = notes[-1] if notes else (lines[-1] if lines else "")
    code = f"exit code {exit_code}" if exit_code is not None else "no exit code"
    return f"{code}: {said}" if said else code


# --------------------------------------------------------------------------- list

def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", nargs="?", default=".",
                        help="where to look for session directories (default: the "
                             "working directory)")


@command("list", _configure_list)
def list_sessions(args: argparse.Namespace) -> int:
    """List the sessions under DIR: uid, start, status, pilots, units per state.

    The status is 'open' (its client runs), 'closed', or 'client gone' (its client
    ended without closing it: 'rp-executor close SID' ends its pilots).
    """
    from rp_executor.analytics import session_dirs, summarize
    dirs = session_dirs(args.dir)
    if not dirs:
        print(f"no sessions under {args.dir}")
        return 0
    rows = [("UID", "START", "STATUS", "PILOTS", "UNITS")]
    for path in dirs:
        try:
            s = summarize(path)
        except sqlite3.Error as exc:
            rows.append((path.name, "-", f"unreadable: {exc}", "-", "-"))
            continue
        pilots = Counter(s.pilots.values())
        rows.append((s.uid, _when(s.created), s.status,
                     f"{len(s.pilots)}" + (f" ({_counts(pilots)})" if pilots else ""),
                     f"{sum(s.units.values())}" + (f" ({_counts(s.units)})" if s.units
                                                    else "")))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


# --------------------------------------------------------------------------- show

def _configure_show(parser: argparse.ArgumentParser) -> None:
    _sid(parser)
    parser.add_argument("--lines", type=int, default=10, metavar="N",
                        help="lines of each pilot's log to show (default: 10)")
    parser.add_argument("--failed", type=int, default=20, metavar="N",
                        help="failed units to list at most (default: 20)")


def show_text(model: Any, lines: int = 10, failed: int = 20) -> str:
    """What ``rp-executor show`` prints about a session (read as ``model``)."""
    from rp_executor.analytics import metrics
    out = [f"session  {model.uid}", f"path     {model.path}",
           f"created  {_when(model.created)}"]
    status = model.status
    if model.closed is not None and model.created is not None:
        status += f" at {_when(model.closed)} (after {model.closed - model.created:.1f} s)"
    out.append(f"status   {status}")
    client = model.client
    if client:
        from rp_executor._core import sessiondir
        running = "runs" if sessiondir.client_running(client) else "gone"
        out.append(f"client   process {client.get('pid')} on {client.get('host')} "
                   f"({running})")
    usage = {u.pilot: u for u in metrics.utilization(model)}
    out += ["", f"pilots ({len(model.pilots)})"]
    for uid, p in model.pilots.items():
        share = usage[uid].core_utilization
        out.append(f"  {uid}  {p.state:<20} {p.resource}  {p.cores} cores, {p.gpus} GPUs"
                   + (f", {share:.0%} used" if share is not None else ""))
        active = p.time_of("PMGR_ACTIVE")
        if active is not None:
            out.append(f"      active {_when(active)}, ended {_when(p.ended)}")
        if p.sandbox:
            out.append(f"      sandbox {p.sandbox}")
    counts = model.state_counts()
    out += ["", f"units ({len(model)})"]
    out += [f"  {state:<28} {n}" for state, n in counts.items() if n]
    failed_uids = [model.uids[i] for i in range(len(model)) if model.state_of(i) == "FAILED"]
    if failed_uids:
        out += ["", f"failed units ({len(failed_uids)})"]
        shown = set(failed_uids[:failed])
        for uid, exit_code, stderr in model.unit_rows(("exit_code", "stderr"),
                                                      "uid IN (%s)" % ",".join(
                                                          "?" * len(shown)), tuple(shown)):
            out.append(f"  {uid}  {failure_reason(exit_code, stderr)}")
        if len(failed_uids) > failed:
            out.append(f"  ... and {len(failed_uids) - failed} more "
                       "('rp-executor export' lists them all)")
    for uid, p in model.pilots.items():
        log_file = Path(p.sandbox) / "agent.log" if p.sandbox else None
        if log_file is None or not log_file.is_file():
            out += ["", f"log of {uid}: none" + (f" ({log_file} is missing)" if log_file
                                                  else " (not launched)")]
            continue
        out += ["", f"log of {uid} (the last {lines} lines of {log_file})"]
        out += [f"  {line}" for line in _tail(log_file, lines)]
    return "\n".join(out)


@command("show", _configure_show)
def show(args: argparse.Namespace) -> int:
    """Show a session: its pilots and their states, its units per state, each failed
    unit with its reason, and the tail of each pilot's log."""
    print(show_text(_model(args.sid), args.lines, args.failed))
    return 0


# --------------------------------------------------------------------------- watch

def _configure_watch(parser: argparse.ArgumentParser) -> None:
    _sid(parser)
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between refreshes (default: 1)")


def watch_lines(model: Any) -> list[str]:
    """The lines ``rp-executor watch`` shows for a session (read as ``model``)."""
    elapsed = (model.end - model.created) if model.created is not None else 0.0
    pilots = ", ".join(f"{uid} {p.state}" for uid, p in model.pilots.items()) or "none"
    return [f"{model.uid}  {model.status}  {_when(model.read_at, day=False)}  "
            f"({elapsed:.0f} s)",
            f"pilots: {pilots}",
            f"units {len(model)}: {_counts(model.state_counts())}"]


@command("watch", _configure_watch)
def watch(args: argparse.Namespace) -> int:
    """Show a session's pilots and units per state while it runs, refreshed in place
    every second, until Ctrl-C or the session's end.

    On a terminal the lines are rewritten in place; written to a file or a pipe, the
    lines are printed again whenever they change.
    """
    import shutil
    model = _model(args.sid)
    tty = sys.stdout.isatty()
    shown: list[str] = []
    said: tuple = ()
    try:
        while True:
            lines = watch_lines(model)
            if tty:
                # a line the terminal wraps would take two rows: moving up would miss one
                width = max(shutil.get_terminal_size().columns - 1, 20)
                lines = [line[:width] for line in lines]
                up = f"\x1b[{len(shown)}F" if shown else ""
                sys.stdout.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
                sys.stdout.flush()
            elif (model.status, *lines[1:]) != said:    # not for the clock alone
                print(" | ".join(lines), flush=True)
                said = (model.status, *lines[1:])
            shown = lines
            if model.closed is not None:
                print(f"session {model.uid} closed at {_when(model.closed)}", flush=True)
                return 0
            time.sleep(args.interval)
            try:
                model.refresh()
            except sqlite3.Error as exc:    # the journal is readable again next time
                print(f"{PROG} watch: cannot read the journal now: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("", flush=True)
        return 0


# --------------------------------------------------------------------------- plot

def _configure_plot(parser: argparse.ArgumentParser) -> None:
    from rp_executor.analytics.plots import KINDS
    _sid(parser)
    parser.add_argument("--kind", choices=KINDS, default="timeline",
                        help="timeline: a bar per unit on the cores it used; "
                             "concurrency: units per phase over time; utilization: "
                             "cores in use against cores held (default: timeline)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="the image to write; its suffix picks the format (default: "
                             "<uid>.<kind>.png)")


@command("plot", _configure_plot)
def plot(args: argparse.Namespace) -> int:
    """Plot a session (a timeline, the units' concurrency or the pilots' utilization)
    into an image file (needs matplotlib: pip install 'rp-executor[plot]')."""
    from rp_executor.analytics import plots
    model = _model(args.sid)
    path = args.output or f"{model.uid}.{args.kind}.png"
    try:
        plots.plot(model, args.kind, path)
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- export

def _configure_export(parser: argparse.ArgumentParser) -> None:
    _sid(parser)
    parser.add_argument("--format", choices=("json", "csv"),
                        help="json (a list of objects) or csv (default: by the "
                             "output's suffix, else json)")
    parser.add_argument("-o", "--output", metavar="FILE", default="-",
                        help="the file to write (default: standard output)")


@command("export", _configure_export)
def export(args: argparse.Namespace) -> int:
    """Export one row per unit: uid, unit manager, pilot, state, exit code, cores,
    GPUs and the time it reached each state (seconds since the epoch; empty or null
    for a state it did not reach)."""
    import csv
    import json
    from rp_executor.analytics import metrics
    fmt = args.format or ("csv" if args.output.endswith(".csv") else "json")
    model = _model(args.sid)
    names = [*metrics.UNIT_FIELDS, *metrics.UNIT_TIMES]
    out = sys.stdout if args.output == "-" else open(args.output, "w", newline="")
    try:
        if fmt == "csv":
            writer = csv.DictWriter(out, names)
            writer.writeheader()
            writer.writerows(metrics.units(model))
        else:
            out.write("[")
            for k, record in enumerate(metrics.units(model)):
                out.write(",\n" if k else "\n")
                out.write(json.dumps(record))
            out.write("\n]\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output != "-":
        print(f"wrote {len(model)} unit(s) to {args.output}")
    return 0


# --------------------------------------------------------------------------- bundle

#: the files of a pilot sandbox that go into a bundle (never keys or configs: secrets)
BUNDLE_PATTERNS = ("*.log", "*.out", "*.err", "*.sh", "*.ec", "*.prof", "agent.end.json")


def _configure_bundle(parser: argparse.ArgumentParser) -> None:
    _sid(parser)
    parser.add_argument("-o", "--output", metavar="FILE.tar.gz",
                        help="the archive to write (default: <uid>.tar.gz)")


@command("bundle", _configure_bundle)
def bundle(args: argparse.Namespace) -> int:
    """Pack what a bug report needs into a .tar.gz: the journal (a consistent copy,
    also of a running session), the session directory's other files (not its keys),
    the output of 'show', and each pilot sandbox's logs, agent output and block files.

    The journal holds the units' descriptions, their environments included: look
    before you share the archive (it is written readable by you only).
    """
    import tarfile
    import tempfile
    model = _model(args.sid)
    target = Path(args.output or f"{model.uid}.tar.gz")
    root = model.uid
    added = []
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "session.sqlite"
        _copy_journal(model.journal, journal)
        summary = Path(tmp) / "show.txt"
        summary.write_text(show_text(model, lines=50, failed=1000) + "\n")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
            def add(path: Path, name: str) -> None:
                tar.add(path, f"{root}/{name}", recursive=False)
                added.append(name)
            add(journal, "session.sqlite")
            add(summary, "show.txt")
            for path in sorted(model.path.rglob("*")):
                name = path.relative_to(model.path).as_posix()
                if path.is_file() and not name.startswith("session.sqlite") \
                        and path.suffix != ".key" and path.resolve() != target.resolve():
                    add(path, name)
            for uid, p in model.pilots.items():
                sandbox = Path(p.sandbox) if p.sandbox else None
                if sandbox is None or not sandbox.is_dir():
                    continue
                for path in sorted(sandbox.iterdir()):
                    if path.is_file() and any(path.match(pat) for pat in BUNDLE_PATTERNS):
                        add(path, f"pilots/{uid}/{path.name}")
    print(f"wrote {target} ({len(added)} files; the journal holds the units' "
          "descriptions, environments included: look before you share it)")
    return 0


def _copy_journal(source: Path, target: Path) -> None:
    """A consistent copy of a journal, also while its session writes it (SQLite's
    backup from a read-only connection)."""
    from rp_executor.analytics.model import open_journal
    src = open_journal(source)
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


# --------------------------------------------------------------------------- close

@command("close", _sid)
def close(args: argparse.Namespace) -> int:
    """End the pilots of a session whose client is gone: reattach to it and close
    it (its pilots are canceled, their processes end). A session whose client still
    runs is left alone: close it there."""
    from rp_executor._core import sessiondir
    model = _model(args.sid)
    if model.closed is not None:
        print(f"session {model.uid} is closed already (at {_when(model.closed)})")
        return 0
    client = model.client
    if sessiondir.client_running(client):
        raise CommandError(f"session {model.uid} is still open: its client, process "
                           f"{client.get('pid')} on {client.get('host')}, runs; close it "
                           "there (or end that process) and try again")
    import rp_executor as rp
    from rp_executor.exceptions import IncorrectState
    try:
        session = rp.Session(uid=str(model.path.resolve()))
    except IncorrectState as exc:
        raise CommandError(str(exc)) from None
    session.close()
    model.refresh()
    pilots = ", ".join(f"{uid} {p.state}" for uid, p in model.pilots.items()) or "none"
    print(f"closed {model.uid}; pilots: {pilots}; units: {_counts(model.state_counts())}")
    return 0


# --------------------------------------------------------------------------- parsing

def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, one subparser per entry of
    :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="rp-executor: a pilot system with the RADICAL-Pilot API, whose "
                    "pilots are Parsl blocks and whose units are futures.",
        epilog=f"'{PROG} <command> --help' explains one command. SID: {SID_HELP}.")
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
    goes to stderr), 1 when a command fails (:class:`CommandError`, or a file it cannot
    read or write: the message on stderr), otherwise what the subcommand returns."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help, --version and usage errors: keep main() callable
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return args._run(args)
    except (CommandError, OSError) as exc:   # OSError: a file it cannot write or read
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
