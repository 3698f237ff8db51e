"""Security contexts: the credentials a session uses to reach a resource.

A :class:`Context` is RADICAL-Pilot's (and radical.saga's) ``Context``: a typed bag of
credential attributes, created with ``Context('ssh')`` and handed to
``Session.add_context``. Attributes carry the saga names in snake case
(``ctx.user_id``) and are also reachable as dict keys, in snake case or in saga's
CamelCase (``ctx['UserID']``).

Secret values (``user_pass``, ``token``, ``client_secret``) are returned by attribute
access and :meth:`Context.as_dict`, since they are the caller's own data, but never by
``repr``/``str``, so that a context written to a log does not leak them.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from rp_executor.exceptions import BadParameter

log = logging.getLogger(__name__)

#: The context types, as accepted (case-insensitively) by :class:`Context`.
CONTEXT_TYPES = ("ssh", "userpass", "x509", "globus")

#: Attributes every context type has, with their defaults.
_COMMON_DEFAULTS: dict[str, Any] = {
    "user_id": None,
    "user_pass": None,
    "user_key": None,
    "user_cert": None,
    "user_proxy": None,
    "user_vo": None,
    "server": None,
    "token": None,
    "cert_repository": None,
    "life_time": -1,
    "remote_id": None,
    "remote_host": None,
    "remote_port": None,
}

#: Attributes only a 'globus' context has: a service account (client id and secret),
#: the file the OAuth tokens are kept in, and a map collection uuid -> local path.
_GLOBUS_DEFAULTS: dict[str, Any] = {
    "client_id": None,
    "client_secret": None,
    "token_file": None,
    "collections": {},
}

#: Attributes whose values must never appear in repr/str (and hence in logs).
SECRET_ATTRIBUTES = frozenset({"user_pass", "token", "client_secret"})

#: saga's CamelCase attribute names -> our attribute names.
CAMEL_CASE_KEYS: dict[str, str] = {
    "Type": "type",
    "UserID": "user_id",
    "UserPass": "user_pass",
    "UserKey": "user_key",
    "UserCert": "user_cert",
    "UserProxy": "user_proxy",
    "UserVO": "user_vo",
    "Server": "server",
    "Token": "token",
    "CertRepository": "cert_repository",
    "LifeTime": "life_time",
    "RemoteID": "remote_id",
    "RemoteHost": "remote_host",
    "RemotePort": "remote_port",
    "ClientID": "client_id",
    "ClientSecret": "client_secret",
    "TokenFile": "token_file",
    "Collections": "collections",
}

_MASK = "***"


class UnknownAttribute(BadParameter, AttributeError, KeyError):
    """An attribute name a context does not have.

    A :class:`BadParameter`, and also an ``AttributeError`` and ``KeyError`` so that
    ``hasattr(ctx, name)`` and mapping-style code keep working.
    """


def _defaults_for(ctype: str) -> dict[str, Any]:
    defaults = dict(_COMMON_DEFAULTS)
    if ctype == "globus":
        defaults.update(_GLOBUS_DEFAULTS)
    return copy.deepcopy(defaults)


class Context:
    """A security context of one type, with saga's credential attributes.

    :param ctype: one of ``'ssh'``, ``'userpass'``, ``'x509'`` or ``'globus'``
        (case-insensitive; stored lower-case as :attr:`type`).
    :param thedict: initial attribute values, keyed by snake-case or saga CamelCase
        name. A ``'type'`` key, if present, must agree with ``ctype``.
    :raises BadParameter: for an unknown type, an unknown attribute name or a value of
        the wrong type.
    """

    def __init__(self, ctype: str, thedict: Mapping[str, Any] | None = None) -> None:
        if not isinstance(ctype, str) or ctype.lower() not in CONTEXT_TYPES:
            raise BadParameter(
                f"ctype {ctype!r} is not a known context type; "
                f"use one of {', '.join(CONTEXT_TYPES)}",
                attribute="ctype", value=ctype)
        object.__setattr__(self, "_type", ctype.lower())
        object.__setattr__(self, "_values", _defaults_for(ctype.lower()))
        for key, value in (thedict or {}).items():
            if self._canonical(key) == "type":
                if not isinstance(value, str) or value.lower() != self._type:
                    raise BadParameter(
                        f"'type' {value!r} in the attributes does not match ctype "
                        f"{self._type!r}", obj=self, attribute="type", value=value)
                continue
            self.set_attribute(key, value)

    # -- construction from / conversion to plain data ---------------------------------

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Context":
        """Build a context from a dict such as :meth:`as_dict` returns.

        The type is taken from ``d['type']`` (or ``d['Type']``); the other keys become
        attributes.

        :raises BadParameter: if the dict has no type, or as :class:`Context`.
        """
        if not isinstance(d, Mapping):
            raise BadParameter(f"Context.from_dict needs a dict, got {type(d).__name__}",
                               value=d)
        ctype = d.get("type", d.get("Type"))
        if ctype is None:
            raise BadParameter(
                f"Context.from_dict needs a 'type' key (one of {', '.join(CONTEXT_TYPES)}); "
                f"keys given: {sorted(d)}", attribute="type")
        rest = {k: v for k, v in d.items() if k not in ("type", "Type")}
        return cls(ctype, rest)

    def as_dict(self) -> dict[str, Any]:
        """Return ``{'type': ..., <attribute>: <value>, ...}``, secrets included.

        The result is a deep copy: changing it does not change the context.
        """
        out: dict[str, Any] = {"type": self._type}
        out.update(copy.deepcopy(self._values))
        return out

    # -- attributes ------------------------------------------------------------------

    @property
    def type(self) -> str:
        """The context type, lower-case."""
        return self._type

    def list_attributes(self) -> list[str]:
        """Return the attribute names this context type has (snake case), 'type' first."""
        return ["type", *self._values]

    def _canonical(self, key: str) -> str:
        """Map a snake-case or CamelCase key to the attribute name, or raise."""
        if isinstance(key, str):
            name = CAMEL_CASE_KEYS.get(key, key)
            if name == "type" or name in self._values:
                return name
            if name in _GLOBUS_DEFAULTS:
                raise UnknownAttribute(
                    f"attribute {key!r} exists only for 'globus' contexts, "
                    f"not for a {self._type!r} context",
                    obj=self, attribute=key)
        known = self.list_attributes()
        camel = [c for c, s in CAMEL_CASE_KEYS.items() if s in known]
        close = difflib.get_close_matches(str(key), known + camel, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownAttribute(
            f"{key!r} is not an attribute of a {self._type!r} context{hint} "
            f"(attributes: {', '.join(known)})",
            obj=self, attribute=str(key))

    def get_attribute(self, key: str) -> Any:
        """Return an attribute's value (saga's ``get_attribute``)."""
        name = self._canonical(key)
        return self._type if name == "type" else self._values[name]

    def set_attribute(self, key: str, value: Any) -> None:
        """Set an attribute's value (saga's ``set_attribute``), checking its type.

        :raises BadParameter: for an unknown name, for 'type' (fixed at creation), or a
            value of the wrong type.
        """
        name = self._canonical(key)
        if name == "type":
            raise BadParameter(
                f"the type of a context is fixed at creation ({self._type!r}); "
                f"create a new Context instead", obj=self, attribute="type", value=value)
        self._values[name] = _check_value(name, value, self)

    def __getattr__(self, name: str) -> Any:
        # only reached for names not found normally; the internals are set in __init__
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get_attribute(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.set_attribute(name, value)

    def __getitem__(self, key: str) -> Any:
        return self.get_attribute(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_attribute(key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            CAMEL_CASE_KEYS.get(key, key) in ("type", *self._values))

    def __iter__(self) -> Iterator[str]:
        return iter(self.list_attributes())

    def keys(self) -> list[str]:
        """Return the attribute names, like a dict's ``keys()``."""
        return self.list_attributes()

    def get(self, key: str, default: Any = None) -> Any:
        """Return an attribute's value, or ``default`` if the name is not an attribute."""
        return self.get_attribute(key) if key in self else default

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Context):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        shown = []
        for name, value in self._values.items():
            if value == _COMMON_DEFAULTS.get(name, _GLOBUS_DEFAULTS.get(name)):
                continue
            shown.append(f"{name}={_MASK if name in SECRET_ATTRIBUTES else repr(value)}")
        return f"Context({self._type!r}{''.join(', ' + s for s in shown)})"

    __str__ = __repr__

    # -- globus token file -------------------------------------------------------------

    def _token_path(self) -> Path:
        if self._type != "globus":
            raise BadParameter(f"a {self._type!r} context has no token file; only "
                               f"'globus' contexts do", obj=self, attribute="token_file")
        if not self._values["token_file"]:
            raise BadParameter("this globus context has no 'token_file' set",
                               obj=self, attribute="token_file")
        return Path(os.path.expanduser(str(self._values["token_file"])))

    def write_tokens(self, tokens: Mapping[str, Any]) -> Path:
        """Write ``tokens`` as JSON to :attr:`token_file`, readable by the owner only.

        The file is written to a temporary file created with mode 0600 and then moved
        into place, so the tokens are never readable by others, not even briefly. A
        missing folder is created with mode 0700.

        :returns: the path written.
        :raises BadParameter: if this is not a globus context or has no token_file.
        """
        path = self._token_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(dict(tokens), f)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.debug("wrote globus tokens to %s", path)
        return path

    def read_tokens(self) -> dict[str, Any]:
        """Return the tokens kept in :attr:`token_file`, or ``{}`` if it does not exist.

        A file readable by group or others is still read, with a warning.

        :raises BadParameter: if this is not a globus context, has no token_file, or the
            file is not a JSON object.
        """
        path = self._token_path()
        if not path.exists():
            return {}
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("globus token file %s has mode %o; it should be 0600", path, mode)
        try:
            tokens = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise BadParameter(f"globus token file {path} is not valid JSON: {e}",
                               obj=self, attribute="token_file", value=str(path)) from e
        if not isinstance(tokens, dict):
            raise BadParameter(f"globus token file {path} must hold a JSON object, "
                               f"not {type(tokens).__name__}",
                               obj=self, attribute="token_file", value=str(path))
        return tokens


def _check_value(name: str, value: Any, ctx: Context) -> Any:
    """Return ``value`` if it suits attribute ``name``, else raise BadParameter."""
    def bad(expected: str) -> BadParameter:
        shown = _MASK if name in SECRET_ATTRIBUTES else repr(value)
        return BadParameter(f"context attribute {name!r} must be {expected}, got {shown}",
                            obj=ctx, attribute=name,
                            value=None if name in SECRET_ATTRIBUTES else value)

    if name == "life_time":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an int (seconds, -1 for unlimited)")
        return value
    if name == "collections":
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise bad("a dict of collection uuid -> local path")
        return {k: str(v) for k, v in value.items()}
    if name == "remote_port":
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if isinstance(value, (list, tuple)) and all(
                isinstance(p, int) and not isinstance(p, bool) for p in value):
            return list(value)
        raise bad("a port number or a list of port numbers")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise bad("a string or None")


__all__ = [
    "Context", "UnknownAttribute", "CONTEXT_TYPES", "SECRET_ATTRIBUTES", "CAMEL_CASE_KEYS",
]
