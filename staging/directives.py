"""Staging directives: parse and expand them, decide where each runs, resolve URLs.

A directive is RADICAL-Pilot's dict ``{source, target, action, flags, priority}`` or
one of the string shorthands ``'a'``, ``'a > b'`` (also ``>>``) and ``'b < a'`` (also
``<<``). URLs use the schemes:

================ ============================================================
``client://``    the client's working directory
``pilot://``     the pilot's staging area, ``<pilot sandbox>/staging_area``
``resource://``  the resource's staging area, ``<resource sandbox>/staging_area``
``unit://``      the unit's sandbox
``file://``      an absolute path on the host that runs the step
``globus://``    ``globus://<collection uuid>/<path>``: a path on a Globus collection
(none)           relative: the client's directory on the client side of a
                 TRANSFER, the unit sandbox on the resource side; absolute: ``file://``
================ ============================================================

A host part in the special schemes is part of the path (``unit://a/b`` is
``unit:///a/b``), as in RADICAL-Pilot.

Where a directive runs follows RADICAL-Pilot 0.50: TRANSFER on the client (it is the
only action that may touch ``client://`` or ``globus://``), COPY, LINK and MOVE in the
agent (within the resource), and TARBALL on both sides: the client packs what goes
to the resource and unpacks what comes back, the agent unpacks and packs.

This module knows nothing of pilots: it gets the directories as :class:`Paths`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from rp_executor.constants import (
    COPY,
    CREATE_PARENTS,
    DEFAULT_ACTION,
    DEFAULT_FLAGS,
    DEFAULT_PRIORITY,
    LINK,
    MOVE,
    NON_FATAL,
    RECURSIVE,
    SKIP_FAILED,
    STAGING_AREA,
    TARBALL,
    TRANSFER,
)
from rp_executor.exceptions import BadParameter

ACTIONS = (COPY, LINK, MOVE, TRANSFER, TARBALL)
"""The staging actions."""
FLAGS = {"CREATE_PARENTS": CREATE_PARENTS, "SKIP_FAILED": SKIP_FAILED,
         "NON_FATAL": NON_FATAL, "RECURSIVE": RECURSIVE}
"""The staging flags by name; a directive's ``flags`` is their bitwise or."""
SCHEMES = ("client", "pilot", "resource", "unit", "file", "globus")
"""The URL schemes a directive may use."""
KEYS = ("source", "target", "action", "flags", "priority")
"""The keys of a directive dict."""

_ALL_FLAGS = CREATE_PARENTS | SKIP_FAILED | NON_FATAL | RECURSIVE
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")

# where a directive's step runs
CLIENT = "client"
AGENT = "agent"


@dataclass(frozen=True)
class Directive:
    """One expanded directive; ``field`` names it in messages (``input_staging[2]``)."""

    source: str
    target: str
    action: str = DEFAULT_ACTION
    flags: int = DEFAULT_FLAGS
    priority: int = DEFAULT_PRIORITY
    field: str = "staging"

    def describe(self) -> str:
        """``input_staging[0] ('a.txt' > 'unit:///a.txt', Copy)``, for messages."""
        names = [n for n, v in FLAGS.items() if self.flags & v]
        flags = f", {'|'.join(names)}" if names and self.flags != DEFAULT_FLAGS else ""
        return f"{self.field} ({self.source!r} > {self.target!r}, {self.action}{flags})"

    def as_wire(self) -> list:
        """A compact list for the wire: ``[source, target, action, flags, field]``."""
        return [self.source, self.target, self.action, self.flags, self.field]

    @classmethod
    def from_wire(cls, item: list) -> "Directive":
        """The inverse of :meth:`as_wire`."""
        source, target, action, flags, name = item
        return cls(source, target, action, flags, DEFAULT_PRIORITY, name)

    @property
    def fatal(self) -> bool:
        """Whether a failure of this directive fails the unit."""
        return not self.flags & NON_FATAL


@dataclass(frozen=True)
class GlobusPath:
    """A path on a Globus collection."""

    collection: str
    path: str

    def __str__(self) -> str:
        return f"globus://{self.collection}{self.path}"


@dataclass
class Paths:
    """The directories the schemes stand for, as absolute local paths (None: unknown
    here, e.g. ``client`` in the agent)."""

    client: str | None = None
    unit: str | None = None
    pilot: str | None = None         # the pilot sandbox (pilot:// is its staging area)
    resource: str | None = None      # the resource sandbox

    def root(self, scheme: str) -> str:
        """The directory a scheme's paths are relative to."""
        if scheme == "pilot":
            base = self.pilot and os.path.join(self.pilot, STAGING_AREA)
        elif scheme == "resource":
            base = self.resource and os.path.join(self.resource, STAGING_AREA)
        else:
            base = getattr(self, scheme)
        if base is None:
            raise ValueError(f"{scheme}:// cannot be resolved here")
        return base


def split(url: str) -> tuple[str, str]:
    """``(scheme, rest)`` of a directive URL; scheme '' for a plain path."""
    m = _SCHEME.match(url)
    if m is None:
        return "", url
    return m.group(1).lower(), m.group(2)


def scheme_of(url: str) -> str:
    """The scheme of ``url``, ``'file'`` for an absolute path, ``''`` for a relative one."""
    scheme, rest = split(url)
    if scheme == "staging":   # deprecated in RADICAL-Pilot, rewritten to pilot://
        return "pilot"
    if not scheme and url.startswith("/"):
        return "file"
    return scheme


def parse_globus(url: str) -> GlobusPath:
    """``globus://<uuid>/<path>`` as a :class:`GlobusPath`.

    :raises ValueError: not a well-formed globus URL.
    """
    scheme, rest = split(url)
    collection, _, path = rest.partition("/")
    if scheme != "globus" or not _UUID.match(collection):
        raise ValueError(f"{url!r} is not globus://<collection uuid>/<path>")
    if not path.strip("/"):
        raise ValueError(f"{url!r} names no path on collection {collection}")
    return GlobusPath(collection.lower(), "/" + path)


def resolve(url: str, paths: Paths, relative_to: str) -> str | GlobusPath:
    """The absolute local path (or :class:`GlobusPath`) a URL stands for.

    :param relative_to: the scheme a relative path is resolved against.
    :raises ValueError: the URL's scheme cannot be resolved with ``paths``.
    """
    scheme = scheme_of(url)
    if scheme == "globus":
        return parse_globus(url)
    _, rest = split(url)
    if scheme == "file":
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        return os.path.normpath(rest if rest.startswith("/") else "/" + rest)
    base = paths.root(scheme or relative_to)
    return os.path.normpath(os.path.join(base, rest.lstrip("/")))


def _basename(url: str) -> str:
    _, rest = split(url)
    return os.path.basename(rest.rstrip("/"))


# parsing ------------------------------------------------------------------------------

def _bad(name: str, value: Any, why: str) -> BadParameter:
    return BadParameter(f"{name}: {why}; got {value!r}", attribute=name.split("[")[0],
                        value=value)


def _flags(name: str, value: Any) -> int:
    if isinstance(value, (list, tuple, set)):
        total = 0
        for v in value:
            total |= _flags(name, v)
        return total
    if isinstance(value, str) and value.upper() in FLAGS:
        return FLAGS[value.upper()]
    if isinstance(value, bool) or not isinstance(value, int) or value & ~_ALL_FLAGS \
            or value < 0:
        raise _bad(f"{name}.flags", value,
                   f"must be a combination of {', '.join(f'{k} ({v})' for k, v in FLAGS.items())}")
    return value


def _shorthand(name: str, text: str) -> tuple[str, str | None]:
    for sep in (">>", "<<", ">", "<"):
        if sep in text:
            left, _, right = text.partition(sep)
            left, right = left.strip(), right.strip()
            if not left or not right or ">" in right or "<" in right:
                raise _bad(name, text, "must be 'source', 'source > target' or "
                                       "'target < source'")
            return (left, right) if sep[0] == ">" else (right, left)
    return text.strip(), None


def parse(value: Any, name: str = "staging") -> Directive:
    """One directive (a str or dict) as a :class:`Directive`.

    :raises BadParameter: a malformed directive; the message names the field, the
        value and what is allowed.
    """
    if isinstance(value, str):
        source, target = _shorthand(name, value)
        action, flags, priority = DEFAULT_ACTION, DEFAULT_FLAGS, DEFAULT_PRIORITY
    elif isinstance(value, dict):
        unknown = [k for k in value if k not in KEYS]
        if unknown:
            raise _bad(name, value, f"key {unknown[0]!r} is not allowed; allowed keys: "
                                    f"{', '.join(KEYS)}")
        source = value.get("source")
        target = value.get("target")
        action = value.get("action", DEFAULT_ACTION)
        flags = _flags(name, value.get("flags", DEFAULT_FLAGS))
        priority = value.get("priority", DEFAULT_PRIORITY)
        if not isinstance(source, str):
            raise _bad(f"{name}.source", source, "must be a non-empty str (mandatory)")
        if target is not None and (not isinstance(target, str) or not target.strip()):
            raise _bad(f"{name}.target", target, "must be a non-empty str or None")
        if action not in ACTIONS:
            raise _bad(f"{name}.action", action, f"must be one of {', '.join(ACTIONS)}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise _bad(f"{name}.priority", priority, "must be an int")
        source = source.strip()
        target = target.strip() if target else None
    else:
        raise _bad(name, value, "must be a str ('a', 'a > b', 'b < a') or a dict with "
                                f"keys {', '.join(KEYS)}")
    if not source:
        raise _bad(f"{name}.source", source, "must be a non-empty str (mandatory)")
    if target is None:
        target = _basename(source)
        if not target:
            raise _bad(f"{name}.target", None, f"cannot be derived from source {source!r}; "
                                               "name a target")
    d = Directive(source, target, action, flags, priority, name)
    _check(d)
    return d


def _check(d: Directive) -> None:
    for role in ("source", "target"):
        url = getattr(d, role)
        scheme = scheme_of(url)
        if scheme not in ("", *SCHEMES):
            raise _bad(f"{d.field}.{role}", url,
                       f"scheme {scheme!r} is not known; allowed: "
                       f"{', '.join(s + '://' for s in SCHEMES)} or a plain path")
        if scheme == "globus":
            try:
                parse_globus(url)
            except ValueError as exc:
                raise _bad(f"{d.field}.{role}", url, f"{exc}") from None
            if d.action != TRANSFER:
                raise _bad(f"{d.field}.action", d.action,
                           "globus:// URLs need the TRANSFER action")
        if scheme == "client" and d.action not in (TRANSFER, TARBALL):
            raise _bad(f"{d.field}.action", d.action,
                       f"{d.action} works within the resource; client:// needs TRANSFER "
                       "or TARBALL")
        if scheme == "file" and not split(url)[1] and not url.startswith("/"):
            raise _bad(f"{d.field}.{role}", url, "file:// needs a path")


def expand(value: Any, name: str) -> list[Directive]:
    """A description's ``input_staging`` / ``output_staging`` as Directives.

    :raises BadParameter: for the first malformed directive, named ``name[i]``.
    """
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _bad(name, value, "must be a list of directives (str or dict)")
    return [parse(v, f"{name}[{i}]") for i, v in enumerate(value)]


# where directives run -----------------------------------------------------------------

@dataclass
class Plan:
    """A unit's (or pilot's) directives, split by where their steps run.

    ``client_in`` runs before the unit is sent (TRANSFER, and TARBALL packing),
    ``agent_in`` in the agent before the unit is scheduled (COPY, LINK, MOVE, TARBALL
    unpacking), ``agent_out`` in the agent after the unit ran (COPY, LINK, MOVE,
    TARBALL packing), ``client_out`` when the unit is back (TRANSFER, TARBALL
    unpacking).
    """

    client_in: list[Directive] = field(default_factory=list)
    agent_in: list[Directive] = field(default_factory=list)
    agent_out: list[Directive] = field(default_factory=list)
    client_out: list[Directive] = field(default_factory=list)

    @property
    def globus(self) -> bool:
        """Whether any directive names a globus:// URL."""
        return any(scheme_of(d.source) == "globus" or scheme_of(d.target) == "globus"
                   for d in (*self.client_in, *self.client_out))

    def wire(self) -> dict | None:
        """What the agent needs: its directives, or None when it has nothing to do."""
        if not self.agent_in and not self.agent_out:
            return None
        return {"in": [d.as_wire() for d in self.agent_in],
                "out": [d.as_wire() for d in self.agent_out]}


def _split(directives: Iterable[Directive], client: list, agent: list) -> None:
    # TRANSFER runs on the client, TARBALL on both sides (packed on one, unpacked on the
    # other), everything else in the agent
    for d in directives:
        if d.action in (TRANSFER, TARBALL):
            client.append(d)
        if d.action != TRANSFER:
            agent.append(d)


def plan(input_staging: Iterable[Directive], output_staging: Iterable[Directive]) -> Plan:
    """Split expanded directives by where they run (see :class:`Plan`)."""
    p = Plan()
    _split(input_staging, p.client_in, p.agent_in)
    _split(output_staging, p.client_out, p.agent_out)
    return p


def plan_description(input_staging: Any, output_staging: Any) -> Plan | None:
    """The :class:`Plan` of a description's staging fields, None when both are empty.

    :raises BadParameter: a malformed directive.
    """
    if not input_staging and not output_staging:
        return None
    return plan(expand(input_staging, "input_staging"),
                expand(output_staging, "output_staging"))


def tarball_name(d: Directive, owner: str) -> str:
    """The name of the tarball a TARBALL directive travels as, in the unit sandbox."""
    index = re.sub(r"\D", "", d.field) or "0"
    kind = "in" if d.field.startswith("input") else "out"
    return f".rp_tarball.{owner}.{kind}{index}.tar"


__all__ = ["ACTIONS", "FLAGS", "SCHEMES", "KEYS", "CLIENT", "AGENT", "Directive",
           "GlobusPath", "Paths", "Plan", "split", "scheme_of", "parse_globus", "resolve",
           "parse", "expand", "plan", "plan_description", "tarball_name"]
