"""One checked attribute of a description: its type hint, default and value check.

:class:`Attr` derives from its hint the exact types that pass without ``typeguard``
(the common case, so that 100,000 descriptions check fast), and words for the error
that names what would be right; :class:`Alias` maps a deprecated name onto an
attribute. The checks (:func:`at_least`, :func:`one_of`, :func:`non_empty`) return
an error text or None. :mod:`rp_executor.description` builds the descriptions from
these.
"""

from __future__ import annotations

import reprlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from typeguard import CollectionCheckStrategy, TypeCheckError, check_type

_SCALAR_TYPES = frozenset({type(None), bool, int, float, str, bytes})


def _scalar_hint(hint: Any) -> bool:
    """Whether every value the hint admits is an immutable scalar."""
    return all(m in _SCALAR_TYPES for m in _flatten(hint))
_SCALARS = (bool, int, float, str, bytes, type(None))

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxdict = 6
_repr.maxlevel = 3


def _show(value: Any) -> str:
    """Return ``repr(value)`` truncated, followed by its type name."""
    return f"{_repr.repr(value)} ({type(value).__name__})"


# -- value checks: each returns an error text (after "got ...;") or None ------------------

def at_least(n: int) -> Callable[[Any], str | None]:
    """Return a check that a number is ``>= n``."""
    def check(value: Any) -> str | None:
        return None if value >= n else f"must be an int >= {n}"
    return check


def one_of(*allowed: str) -> Callable[[Any], str | None]:
    """Return a check that a value is one of ``allowed``."""
    allowed_set = frozenset(allowed)

    def check(value: Any) -> str | None:
        return None if value in allowed_set else f"must be one of {list(allowed)!r}"
    return check


def non_empty(value: Any) -> str | None:
    """Check that a string is not empty (or only whitespace)."""
    return None if value.strip() else "must be a non-empty str (or None)"


def _describe(hint: Any) -> str:
    """Return a hint in words: ``list[str]`` -> 'a list of str'."""
    if hint is Any:
        return "any value"
    if hint is type(None) or hint is None:
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, dict) and args:
        inner = [getattr(a, "__name__", str(a)) if a is not Any else "any"
                 for a in (typing.get_args(args[0]) or (args[0],))]
        if origin is list:
            return "a list of " + " or ".join(inner)
        return f"a dict of {'/'.join(inner)} to {_describe(args[1]).removeprefix('a ')}"
    name = getattr(origin or hint, "__name__", str(hint))
    return ("an " if name[0] in "aeiou" else "a ") + name


def _fast_set(hint: Any) -> frozenset:
    """Return the exact scalar types (``object`` for Any) that satisfy ``hint``."""
    return frozenset(object if m is Any else m for m in _flatten(hint)
                     if m is Any or m in _SCALARS)


def _flatten(hint: Any) -> tuple:
    """Return the members of a union hint, or ``(hint,)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


@dataclass(frozen=True)
class Attr:
    """One attribute of a description's schema.

    :param name: the attribute name.
    :param hint: the type hint a value must satisfy (checked with typeguard).
    :param default: the default; mutable defaults are deep-copied per instance.
    :param check: a value check, called for values that are not None, returning an
        error text such as ``'must be an int >= 1'`` or None.
    :param convert: applied to a value before it is checked (RP's quirks).
    :param share: copies of the description share the value instead of deep-copying it
        (for live objects such as a Parsl provider).
    :param doc: what the attribute means.
    """

    name: str
    hint: Any
    default: Any = None
    check: Callable[[Any], str | None] | None = None
    convert: Callable[[Any], Any] | None = None
    share: bool = False
    doc: str = ""
    # Derived, so that the common case never reaches typeguard: exact types that pass.
    fast: frozenset = field(init=False, repr=False, compare=False)
    items_fast: frozenset | None = field(init=False, repr=False, compare=False)
    keys_fast: frozenset | None = field(init=False, repr=False, compare=False)
    rejects_bool: bool = field(init=False, repr=False, compare=False)
    expect: str = field(init=False, repr=False, compare=False)
    anything: bool = field(init=False, repr=False, compare=False)
    empties: frozenset = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        members = _flatten(self.hint)
        fast, items, keys = set(), None, None
        for m in members:
            origin, args = typing.get_origin(m), typing.get_args(m)
            if m is Any:
                fast.add(object)
            elif m in _SCALARS or (origin is None and isinstance(m, type)):
                fast.add(m)   # a bare class: an instance of exactly it passes
            elif origin is list and args:
                items = _fast_set(args[0])
            elif origin is dict and args:
                keys, items = _fast_set(args[0]), _fast_set(args[1])
        set_ = object.__setattr__
        set_(self, "fast", frozenset(fast))
        set_(self, "anything", object in fast)   # any value's type passes
        # the containers of which an empty one passes
        set_(self, "empties", frozenset(t for t, hinted in ((list, items is not None and
                                                             keys is None),
                                                            (dict, keys is not None))
                                        if hinted))
        set_(self, "items_fast", items)
        set_(self, "keys_fast", keys)
        # bool is an int to Python, but True is never a meaningful count.
        set_(self, "rejects_bool", (int in members or float in members) and bool not in members)
        set_(self, "expect", "must be " + _describe(self.hint))

    def _fast_ok(self, value: Any) -> bool:
        tv = type(value)
        if self.anything or tv in self.fast:
            return True
        items = self.items_fast
        if items is None:
            return False
        anything = object in items
        if tv is list and self.keys_fast is None:
            return anything or all(type(x) in items for x in value)
        if tv is dict and self.keys_fast is not None:
            if not value:
                return True
            keys = self.keys_fast
            return all(type(k) in keys for k in value) and \
                (anything or all(type(v) in items for v in value.values()))
        return False

    def problem(self, value: Any) -> str | None:
        """Return what is wrong with ``value`` for this attribute, or None."""
        if self._fast_ok(value):
            pass
        elif type(value) is bool and self.rejects_bool:
            return self.expect
        else:
            try:
                check_type(value, self.hint,
                           collection_check_strategy=CollectionCheckStrategy.ALL_ITEMS)
            except TypeCheckError as exc:
                if isinstance(value, (list, dict)) and self.items_fast is not None:
                    return f"{self.expect}; {str(exc).splitlines()[0].rstrip(':')}"
                return self.expect
        if value is not None and self.check is not None:
            return self.check(value)
        return None


@dataclass(frozen=True)
class Alias:
    """A deprecated name that reads and writes another attribute through a mapping."""

    name: str
    target: str
    to_target: Callable[[Any], Any]
    from_target: Callable[[Any], Any]
    hint: Any


__all__ = ["Attr", "Alias", "at_least", "one_of", "non_empty"]
