"""Local staging: COPY, LINK, MOVE, TRANSFER and TARBALL between local paths.

Every function takes resolved absolute paths and the directive's flags:

* ``CREATE_PARENTS``: missing parent directories of the target are made; without it
  a missing parent is an error.
* ``RECURSIVE``: accepted; local directories are always copied with their contents
  (RADICAL-Pilot sets it by itself for a directory source). It matters for Globus,
  where the type of a remote source is not known.
* ``SKIP_FAILED``: a source that does not exist is skipped (logged), not an error;
  in a directory copy, files that cannot be copied are skipped.
* ``NON_FATAL``: handled by :func:`run`: a failure becomes a warning and the unit goes on.

A target that exists is replaced (a directory copied onto a directory is merged).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from typing import Callable, Iterable

from rp_executor.constants import COPY, CREATE_PARENTS, LINK, MOVE, SKIP_FAILED, TRANSFER

from .directives import Directive

log = logging.getLogger(__name__)

_MEMBER = "payload"   # the one top-level name in a staging tarball


class StagingError(Exception):
    """A staging step failed; the message names the directive and the cause."""

    def __init__(self, message: str, directive: Directive | None = None) -> None:
        super().__init__(message)
        self.directive = directive


def _prepare(src: str, dst: str, flags: int) -> bool:
    """Check the source and the target's parent; False when a missing source is skipped."""
    if not os.path.lexists(src):
        if flags & SKIP_FAILED:
            log.info("staging: source %s does not exist; skipped (SKIP_FAILED)", src)
            return False
        raise FileNotFoundError(f"source {src} does not exist")
    parent = os.path.dirname(dst) or "."
    if not os.path.isdir(parent):
        if flags & CREATE_PARENTS:
            os.makedirs(parent, exist_ok=True)
        else:
            raise FileNotFoundError(f"the target's directory {parent} does not exist "
                                    "(set CREATE_PARENTS to create it)")
    return True


def _clear(dst: str, keep_dirs: bool = False) -> None:
    if os.path.islink(dst) or (os.path.exists(dst) and not os.path.isdir(dst)):
        os.unlink(dst)
    elif os.path.isdir(dst) and not keep_dirs:
        shutil.rmtree(dst)


def copy(src: str, dst: str, flags: int) -> bool:
    """Copy a file (with its mode) or a directory tree; False when skipped."""
    if not _prepare(src, dst, flags):
        return False
    if os.path.isdir(src):
        _clear(dst, keep_dirs=True)
        if flags & SKIP_FAILED:
            try:
                shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
            except shutil.Error as exc:
                log.warning("staging: %d file(s) of %s not copied (SKIP_FAILED): %s",
                            len(exc.args[0]), src, exc.args[0][:3])
        else:
            shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        shutil.copy2(src, dst)
    return True


def link(src: str, dst: str, flags: int) -> bool:
    """Make ``dst`` a symbolic link to ``src``; False when skipped."""
    if not _prepare(src, dst, flags):
        return False
    _clear(dst)
    os.symlink(src, dst)
    return True


def move(src: str, dst: str, flags: int) -> bool:
    """Move ``src`` to ``dst``; False when skipped."""
    if not _prepare(src, dst, flags):
        return False
    if os.path.abspath(src) == os.path.abspath(dst):
        return True
    _clear(dst)
    shutil.move(src, dst)
    return True


def pack(src: str, tarball: str, flags: int) -> bool:
    """Pack a file or directory into ``tarball`` (one member, whatever the name);
    False when a missing source is skipped."""
    if not _prepare(src, tarball, flags | CREATE_PARENTS):
        return False
    fd, tmp = tempfile.mkstemp(prefix=".rp_pack.", dir=os.path.dirname(tarball))
    os.close(fd)
    try:
        with tarfile.open(tmp, "w") as tar:
            tar.add(src, arcname=_MEMBER, recursive=True)
        os.replace(tmp, tarball)
    except BaseException:
        _unlink(tmp)
        raise
    return True


def unpack(tarball: str, dst: str, flags: int) -> bool:
    """Unpack a tarball made by :func:`pack` into ``dst``, then remove the tarball.

    A tarball that is missing because its source was skipped is skipped too.
    """
    if not _prepare(tarball, dst, flags):
        return False
    parent = os.path.dirname(dst) or "."
    tmp = tempfile.mkdtemp(prefix=".rp_unpack.", dir=parent)
    try:
        with tarfile.open(tarball) as tar:
            names = tar.getnames()
            if any(n != _MEMBER and not n.startswith(_MEMBER + "/") for n in names):
                raise ValueError(f"{tarball} is not a staging tarball (members {names[:3]})")
            tar.extractall(tmp, filter="tar")
        _clear(dst)
        os.replace(os.path.join(tmp, _MEMBER), dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _unlink(tarball)
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


ACTIONS: dict[str, Callable[[str, str, int], bool]] = {
    COPY: copy, LINK: link, MOVE: move, TRANSFER: copy}
"""The local implementation of each action that moves data in one step."""


def perform(action: str, src: str, dst: str, flags: int) -> bool:
    """Run one action between local paths; False when it was skipped (SKIP_FAILED)."""
    return ACTIONS[action](src, dst, flags)


def run(steps: Iterable[tuple[Directive, Callable[[], object]]]) -> list[str]:
    """Run ``(directive, step)`` pairs in order.

    :returns: warnings, one per NON_FATAL directive that failed.
    :raises StagingError: the first failing directive that is not NON_FATAL; the
        message names it and the cause.
    """
    warnings = []
    for directive, step in steps:
        try:
            step()
        except Exception as exc:  # the cause goes into the unit's error
            message = failure(directive, exc)
            if directive.fatal:
                raise StagingError(message, directive) from exc
            log.warning("%s (NON_FATAL: the unit goes on)", message)
            warnings.append(f"{message} (NON_FATAL: ignored)")
    return warnings


def failure(directive: Directive, exc: BaseException | str) -> str:
    """``staging failed: <directive>: <cause>``."""
    if isinstance(exc, BaseException):
        cause = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and exc.filename not in cause:
            cause = f"{cause}: {exc.filename}"
        if not isinstance(exc, (OSError, ValueError, StagingError)):
            cause = f"{type(exc).__name__}: {cause}"
    else:
        cause = exc
    return f"staging failed: {directive.describe()}: {cause}"


__all__ = ["StagingError", "copy", "link", "move", "pack", "unpack", "perform", "run",
           "failure", "ACTIONS"]
