"""Parsl apps as units: bash apps as executable units, resource specifications as fields.

Pure functions, used by :class:`rp_executor.parsl.executor.RPExecutor` on the submit
side; tests need no processes.

A ``@bash_app`` reaches an executor as ``wrap_error(partial(remote_side_bash_executor,
user_fn))``. When that chain is exactly what :func:`unwrap_bash` finds, the user's
function is called here to get the command line, and the unit runs ``/bin/bash -c``
on a script (:func:`bash_script`) that reproduces what Parsl's
``remote_side_bash_executor`` does on a worker: stdout/stderr redirection (path,
``(path, mode)`` or ``File``), the executable banner on stderr, ``walltime`` and the
check of ``outputs``. What the script reports back in the unit's own stderr (the
``rp_executor:`` marker lines) becomes Parsl's exceptions in :func:`bash_outcome`.
Any other wrapping (monitoring, in-task staging) cannot be unwrapped without losing
what the wrapper does, so such apps run as function units instead.
"""

from __future__ import annotations

import functools
import os
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from rp_executor._core.resources import KEYS, UnitResources
from rp_executor._core.resources import parse as parse_resources

#: The resource specification keys RPExecutor understands.
RESOURCE_KEYS = KEYS

#: Marker lines the bash script writes to the unit's own stderr.
TIMEOUT_MARK = "rp_executor: walltime exceeded"
BAD_STREAM_MARK = "rp_executor: cannot open std stream: "
MISSING_MARK = "rp_executor: missing output: "


@functools.lru_cache(maxsize=1)
def _wrap_error_code() -> Any:
    """The code object of Parsl's ``wrap_error`` wrapper: what every app's wrapper runs."""
    from parsl.app.errors import wrap_error
    return wrap_error(lambda: None).__code__


@dataclass
class BashCall:
    """A bash app, unwrapped: the user's function and the name Parsl gives it."""

    func: Callable
    name: str


@functools.lru_cache(maxsize=1024)
def unwrap_bash(fn: Any) -> BashCall | None:
    """The bash app inside ``fn``, or None when ``fn`` is not a plain bash app.

    Only ``wrap_error(partial(remote_side_bash_executor, user_fn))`` qualifies: any
    other wrapper in between (``monitor_wrapper``, in-task staging) must run on the
    worker, so the caller falls back to a function unit. Cached: an app hands the
    same wrapped function to every submit.
    """
    from parsl.app.bash import remote_side_bash_executor

    if getattr(fn, "__code__", None) is not _wrap_error_code():
        return None
    inner = getattr(fn, "__wrapped__", None)
    if not isinstance(inner, functools.partial) or inner.func is not remote_side_bash_executor \
            or len(inner.args) != 1 or inner.keywords:
        return None
    user_fn = inner.args[0]
    return BashCall(user_fn, getattr(user_fn, "__name__", None) or "bash_app")


def format_command(call: BashCall, args: tuple, kwargs: dict) -> str:
    """Call the user's function to get the command line, as Parsl's worker would.

    :raises AppBadFormatting, BashAppNoReturn, ValueError: as
        ``remote_side_bash_executor`` raises them; any exception of the user's
        function passes through.
    """
    import parsl.app.errors as pe

    executable = None
    try:
        executable = call.func(*args, **kwargs)
        if not isinstance(executable, str):
            raise ValueError(f"Expected a str for bash_app commandline, got {type(executable)}")
    except AttributeError as exc:
        if executable is not None:
            raise pe.AppBadFormatting(
                f"App formatting failed for app '{call.name}' with AttributeError: {exc}")
        raise pe.BashAppNoReturn(f"Bash app '{call.name}' did not return a value, or returned "
                                 f"None - with this exception: {exc}")
    except IndexError as exc:
        raise pe.AppBadFormatting(
            f"App formatting failed for app '{call.name}' with IndexError: {exc}")
    return executable


def std_redirect(fdname: str, spec: Any) -> tuple[str, str] | None:
    """``(path, shell operator)`` for a stdout/stderr spec, or None when not redirected.

    A ``File`` is written (``>``); a path appends (``>>``, Parsl's ``a+``); a
    ``(path, mode)`` tuple truncates for ``w`` modes and appends for ``a`` modes.

    :raises BadStdStreamFile: a malformed spec or a mode that cannot be written.
    """
    import parsl.app.errors as pe
    from parsl.data_provider.files import File
    from parsl.utils import get_std_fname_mode

    if spec is None:
        return None
    if isinstance(spec, File):
        return os.fspath(spec), ">"
    path, mode = get_std_fname_mode(fdname, spec)
    if mode.startswith("a"):
        return path, ">>"
    if mode.startswith("w"):
        return path, ">"
    raise pe.BadStdStreamFile(f"{fdname} mode {mode!r} for {path!r}: RPExecutor writes "
                              "std streams with 'w' or 'a' modes only")


def bash_script(command: str, stdout: tuple[str, str] | None, stderr: tuple[str, str] | None,
                walltime: float | None, outputs: list[str], cwd: str | None = None) -> str:
    """The script a bash app's unit runs with ``/bin/bash -c``.

    The user's command runs in its own ``bash`` (as under Parsl), under coreutils
    ``timeout`` when ``walltime`` is set; redirection happens inside that bash, so that
    the marker lines this script writes stay in the unit's own stderr. ``cwd``: where
    it runs (default: the unit sandbox).
    """
    # a directory that does not exist where the unit runs (another filesystem) leaves
    # the unit in its sandbox, with a note in the unit's stderr
    lines = [f"cd -- {shlex.quote(cwd)} 2>/dev/null || echo 'rp_executor: cannot cd to' "
             f"{shlex.quote(cwd)}', running in the unit sandbox' >&2"] if cwd else []
    inner = []
    for fd, redirect, name in ((1, stdout, "stdout"), (2, stderr, "stderr")):
        if redirect is None:
            continue
        path, op = redirect
        q = shlex.quote(path)
        parent = os.path.dirname(path)
        if parent:
            lines.append(f"mkdir -p -- {shlex.quote(parent)} 2>/dev/null")
        lines.append(f"{{ : {op} {q}; }} 2>/dev/null || "
                     f"{{ echo {shlex.quote(BAD_STREAM_MARK + path)} >&2; exit 1; }}")
        # the check above created the file; 'w' truncated it, so append from here on
        inner.append(f"exec {fd}>> {q}")
    if stderr is not None:
        banner = f"--> executable follows <--\n{command}\n--> end executable <--"
        inner.append(f"printf '%s\\n' {shlex.quote(banner)} >&2")
    body = "\n".join([*inner, command])
    run = f"/bin/bash -c {shlex.quote(body)}"
    if walltime is not None:
        seconds = max(walltime, 0.001)
        run = f"timeout -k 1 {seconds:g} {run}"
    lines.append(run)
    lines.append("rc=$?")
    if walltime is not None:
        lines.append(f"[ $rc -eq 124 ] && {{ echo {shlex.quote(TIMEOUT_MARK)} >&2; exit 124; }}")
    if outputs:
        checks = " ".join(shlex.quote(p) for p in outputs)
        lines.append(f"if [ $rc -eq 0 ]; then for f in {checks}; do "
                     f"[ -e \"$f\" ] || echo {shlex.quote(MISSING_MARK)}\"$f\" >&2; done; fi")
    lines.append("exit $rc")
    return "\n".join(lines)


def bash_outcome(name: str, exit_code: int | None, stderr: str | None,
                 walltime: float | None, outputs: list) -> BaseException | None:
    """The exception a finished bash unit stands for, or None for success.

    :param outputs: the app's ``outputs`` Files, for ``MissingOutputs``.
    """
    import parsl.app.errors as pe

    err = stderr or ""
    if exit_code == 124 and TIMEOUT_MARK in err:
        return pe.AppTimeout(f"App {name} exceeded walltime: {walltime} seconds")
    for line in err.splitlines():
        if line.startswith(BAD_STREAM_MARK):
            return pe.BadStdStreamFile(line[len(BAD_STREAM_MARK):])
    if exit_code is None:
        return None
    if exit_code != 0:
        return pe.BashExitFailure(name, exit_code)
    missing = {line[len(MISSING_MARK):] for line in err.splitlines()
               if line.startswith(MISSING_MARK)}
    if missing:
        lost = [f for f in outputs if os.fspath(f.filepath) in missing]
        return pe.MissingOutputs(f"Missing outputs from app {name}", lost)
    return None


def _invalid(keys: set, message: str) -> Exception:
    from parsl.executors.errors import InvalidResourceSpecification
    return InvalidResourceSpecification(keys, message)


def parse_resource_spec(spec: Mapping[str, Any] | None) -> UnitResources:
    """Turn a Parsl ``resource_specification`` into unit resources.

    ``cores``: cores per process (threads); ``gpus``: GPUs; ``mpi`` (bool),
    ``ranks``, ``ranks_per_node``: an MPI unit of ``ranks`` processes (``mpi=True``
    alone means ranks = 1; ``ranks_per_node`` is checked and exported to the unit as
    ``PARSL_RANKS_PER_NODE``); ``priority``: a number, lower runs first, unset runs
    last (as with HTEX); ``walltime``: seconds (bash apps end with ``AppTimeout``,
    Python apps too). The mapping is :func:`rp_executor._core.resources.parse`.

    :raises InvalidResourceSpecification: an unknown key (naming it and the allowed
        keys) or a value of the wrong type.
    """
    res = parse_resources(spec, RESOURCE_KEYS, _invalid, name="resource_specification")
    if spec:
        res.environment = {f"PARSL_{key.upper()}": str(spec[key])
                           for key in ("cores", "gpus", "ranks", "ranks_per_node")
                           if spec.get(key) is not None}
    return res
