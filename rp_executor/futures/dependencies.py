"""Futures as arguments: finding them, and putting their results in their place.

A :class:`~rp_executor.futures.future.Future` among a task's arguments, also nested in
lists, tuples (named tuples included), sets, frozensets and dict values, is a
dependency. Only these containers are searched, and only for this package's
futures: other objects (a dask ``Task``, a numpy array, a user class holding a
future) pass as they are. All functions here are pure.
"""

from __future__ import annotations

from typing import Any, Callable

_CONTAINERS = (list, tuple, set, frozenset, dict)


def _is_future(obj: Any) -> bool:
    from rp_executor.futures.future import Future
    return isinstance(obj, Future)


def find_futures(obj: Any, found: dict | None = None) -> dict:
    """The futures in ``obj`` (searched as described above), as a dict in the order
    they were met, keyed by identity (a future used twice counts once)."""
    from rp_executor.futures.future import Future
    if found is None:
        found = {}
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, Future):
            found.setdefault(id(x), x)
        elif isinstance(x, dict):
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, _CONTAINERS):
            stack.extend(reversed(list(x)))
    return found


def has_futures(args: tuple | list, kwargs: dict) -> bool:
    """Whether any argument holds a future; fast for the common flat plain arguments."""
    for value in args:
        if isinstance(value, _CONTAINERS) or _is_future(value):
            return bool(find_futures(list(args) + list(kwargs.values())))
    for value in kwargs.values():
        if isinstance(value, _CONTAINERS) or _is_future(value):
            return bool(find_futures(list(args) + list(kwargs.values())))
    return False


def substitute(obj: Any, value_of: Callable[[Any], Any]) -> Any:
    """``obj`` with every future ``f`` in it replaced by ``value_of(f)``.

    Containers that hold no future are returned as they are (not copied); those that
    do are rebuilt with the same type (a named tuple with its fields, a ``dict``
    subclass through its constructor from pairs).
    """
    if _is_future(obj):
        return value_of(obj)
    if isinstance(obj, dict):
        items = [(k, substitute(v, value_of)) for k, v in obj.items()]
        if all(new is obj[k] for k, new in items):
            return obj
        return dict(items) if type(obj) is dict else type(obj)(items)
    if isinstance(obj, _CONTAINERS):
        items = [substitute(v, value_of) for v in obj]
        if isinstance(obj, (list, tuple)) and all(a is b for a, b in zip(items, obj)):
            return obj
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*items)
        return type(obj)(items)
    return obj


def rebuild(obj: Any, value_of: Callable[[Any], Any], skip: Callable[[Any], bool]) -> Any:
    """Like :func:`substitute`, but futures for which ``skip(f)`` is true are left out
    of their container (a dict loses the key); a skipped future at the top gives
    None. This is ``gather(errors="skip")``."""
    if _is_future(obj):
        return None if skip(obj) else value_of(obj)
    if isinstance(obj, dict):
        out = {k: rebuild(v, value_of, skip) for k, v in obj.items()
               if not (_is_future(v) and skip(v))}
        return out if type(obj) is dict else type(obj)(out.items())
    if isinstance(obj, _CONTAINERS):
        items = [rebuild(v, value_of, skip) for v in obj if not (_is_future(v) and skip(v))]
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*items)
        return type(obj)(items)
    return obj


def replace_with_keys(obj: Any) -> Any:
    """``obj`` with every future replaced by ``("rp-future", key)``: a form that
    can be hashed into a key (:func:`rp_executor.futures.client.token_of`)."""
    return substitute(obj, lambda f: ("rp-future", f.key))
