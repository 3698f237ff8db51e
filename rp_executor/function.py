"""Function units on the client side: pickling calls at submit, unpickling results.

A function travels as ``cloudpickle.dumps(callable)`` (pickled once per callable and
cached) or as an importable ``"module:name"`` string that the worker imports; its
arguments travel as ``cloudpickle.dumps((args, kwargs))``. Results and exceptions
come back pickled and are unpickled only when the user asks for them.
"""

from __future__ import annotations

import pickle
import weakref
from typing import Any

import cloudpickle

from .exceptions import BadParameter

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_fn_cache: "weakref.WeakKeyDictionary[Any, bytes]" = weakref.WeakKeyDictionary()
_fn_cache_strong: dict[Any, bytes] = {}   # for callables that cannot be weakly referenced


_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
_NO_ARGS = pickle.dumps(((), {}), protocol=_PROTOCOL)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text.

    Set as the ``__cause__`` of the re-raised exception, so that Python prints the
    remote traceback below the local one (as ``concurrent.futures`` does).
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


def dump_function(fn: Any) -> bytes | str:
    """The wire form of a unit's ``function``: a ``module:name`` string stays as is."""
    if isinstance(fn, str):
        return fn
    try:
        return _fn_cache[fn]
    except TypeError:
        cached = _fn_cache_strong.get(fn)
        if cached is not None:
            return cached
    except KeyError:
        pass
    try:
        data = cloudpickle.dumps(fn, protocol=_PROTOCOL)
    except Exception as exc:
        raise BadParameter(f"ComputeUnitDescription.function: {fn!r} cannot be pickled: "
                           f"{type(exc).__name__}: {exc}", attribute="function",
                           value=fn) from exc
    try:
        _fn_cache[fn] = data
    except TypeError:
        if len(_fn_cache_strong) < 1024:
            _fn_cache_strong[fn] = data
    return data


def dump_arguments(args: Any, kwargs: dict) -> bytes:
    """The wire form of ``(args, kwargs)``.

    :raises BadParameter: an argument cannot be pickled; the message names it
        (``args[2]`` or ``kwargs['x']``).
    """
    if not kwargs and all(type(a) in _PLAIN for a in args):
        # plain values pickle the same either way, and pickle's C code is ~10x faster
        return pickle.dumps((tuple(args), {}), protocol=_PROTOCOL) if args else _NO_ARGS
    try:
        return cloudpickle.dumps((tuple(args), kwargs), protocol=_PROTOCOL)
    except Exception as whole:
        for i, value in enumerate(args):
            _check_one(f"args[{i}]", value)
        for key, value in kwargs.items():
            _check_one(f"kwargs[{key!r}]", value)
        raise BadParameter(f"ComputeUnitDescription.args: the arguments cannot be pickled: "
                           f"{type(whole).__name__}: {whole}", attribute="args",
                           value=args) from whole


def _check_one(name: str, value: Any) -> None:
    try:
        cloudpickle.dumps(value, protocol=_PROTOCOL)
    except Exception as exc:
        attribute = name.split("[", 1)[0]
        raise BadParameter(f"ComputeUnitDescription.{name}: {_short(value)} "
                           f"({type(value).__name__}) cannot be pickled: "
                           f"{type(exc).__name__}: {exc}", attribute=attribute,
                           value=value) from exc


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_result(data: bytes | None, path: str | None) -> Any:
    """Unpickle a return value sent inline (``data``) or as a file (``path``)."""
    if path is not None:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    return None if data is None else pickle.loads(data)


def load_exception(data: bytes | None, tb: str | None) -> BaseException:
    """Unpickle a worker's exception; its remote traceback becomes its ``__cause__``."""
    try:
        exc = pickle.loads(data) if data is not None else RuntimeError("unit failed")
    except Exception as err:  # the exception's class may not exist on the client
        exc = RuntimeError(f"the unit's exception could not be unpickled here: {err}")
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
        exc.remote_traceback = tb
    return exc
