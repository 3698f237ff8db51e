"""Helpers for the end-to-end tests: finding a session's processes, polling, unit
descriptions used by many tests."""

from __future__ import annotations

import time
from typing import Any, Callable

import psutil
import pytest

import rp_executor as rp


def session_processes(session_uid: str, pilot_uid: str | None = None) -> list[psutil.Process]:
    """Live (not zombie) processes that belong to a session on this machine.

    A process belongs to the session when its environment has
    ``RP_SESSION_ID == session_uid`` (every unit's process has it), or when its command
    line mentions the session uid (the agent, ``python -m rp_executor.agent
    <sandbox>/<session>/<pilot>/agent.cfg.json``, and the block's shell, which runs a
    script in the pilot sandbox). With ``pilot_uid``, only that pilot's processes count.
    """
    found = []
    for proc in psutil.process_iter(["pid", "status", "cmdline"]):
        if proc.pid == psutil.Process().pid:
            continue
        if proc.info.get("status") in (psutil.STATUS_ZOMBIE, None):
            continue
        cmdline = " ".join(proc.info.get("cmdline") or [])
        mine = session_uid in cmdline and (pilot_uid is None or pilot_uid in cmdline)
        if not mine:
            try:
                env = proc.environ()
            except (psutil.Error, OSError):
                continue
            mine = env.get("RP_SESSION_ID") == session_uid and \
                (pilot_uid is None or env.get("RP_PILOT_ID") == pilot_uid)
        if mine:
            found.append(proc)
    return found


def describe(procs: list[psutil.Process]) -> str:
    """``pid: cmdline`` lines for an assertion message."""
    lines = []
    for p in procs:
        try:
            lines.append(f"{p.pid}: {' '.join(p.cmdline())}")
        except psutil.Error:
            lines.append(f"{p.pid}: (gone)")
    return "\n".join(lines)


def assert_no_session_processes(session_uid: str, pilot_uid: str | None = None,
                                within: float = 5.0) -> None:
    """Fail unless every process of the session (or pilot) is gone within ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        left = session_processes(session_uid, pilot_uid)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    assert not left, f"processes of {session_uid} {pilot_uid or ''} left:\n{describe(left)}"


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def agent_process(pilot: Any) -> psutil.Process:
    """The agent process of an active local pilot, checked by its command line."""
    proc = psutil.Process(pilot.resource_details["pid"])
    cmdline = " ".join(proc.cmdline())
    assert "rp_executor.agent" in cmdline and pilot.pilot_sandbox in cmdline, cmdline
    return proc


def echo(*args: str) -> rp.ComputeUnitDescription:
    """A unit running ``/bin/echo args``."""
    return rp.ComputeUnitDescription(executable="/bin/echo", arguments=list(args))


def sleep(seconds: float) -> rp.ComputeUnitDescription:
    """A unit running ``/bin/sleep seconds``."""
    return rp.ComputeUnitDescription(executable="/bin/sleep", arguments=[str(seconds)])


def html_problems(text: str) -> list[str]:
    """What is wrong with a notebook view (``_repr_html_``), as a list of findings:
    a tag opened and not closed (or closed out of order), a void or unexpected tag,
    a script, a stylesheet, an external resource (``src``/``href``, ``url(...)``,
    ``@import``), an attribute other than ``style``. Empty when the view is
    well-formed, self-contained HTML."""
    from html.parser import HTMLParser

    allowed = {"div", "span", "table", "thead", "tbody", "tr", "th", "td", "pre", "b"}
    problems: list[str] = []
    stack: list[str] = []

    class Checker(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag not in allowed:
                problems.append(f"unexpected tag <{tag}>")
            for name, value in attrs:
                if name != "style":
                    problems.append(f"attribute {name}={value!r} on <{tag}>")
                low = (value or "").lower().replace(" ", "")
                for bad in ("url(", "@import", "expression(", "javascript:", "//"):
                    if bad in low:
                        problems.append(f"{bad!r} in the style of <{tag}>: {value!r}")
            stack.append(tag)

        def handle_startendtag(self, tag: str, attrs: list) -> None:
            problems.append(f"self-closing <{tag}/>")

        def handle_endtag(self, tag: str) -> None:
            if not stack or stack[-1] != tag:
                problems.append(f"</{tag}> closes {stack[-1:] or 'nothing'}")
            else:
                stack.pop()

    checker = Checker(convert_charrefs=True)
    checker.feed(text)
    checker.close()
    if stack:
        problems.append(f"never closed: {stack}")
    low = text.lower()
    for bad in ("<script", "<link", "<style", "<iframe", "<img", "http:", "https:",
                "@import", "url("):
        if bad in low:
            problems.append(f"{bad!r} in the view")
    return problems
