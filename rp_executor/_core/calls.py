"""Pickled calls and their outcomes: what a function unit carries and brings back.

Client side: a function travels as ``cloudpickle.dumps(callable)`` (pickled once per
callable and cached) or as an importable ``"module:name"`` string that the worker imports; its
arguments travel as ``cloudpickle.dumps((args, kwargs))``. Results and exceptions
come back pickled and are unpickled only when the user asks for them.

Worker side (the futures door): a :class:`Call` holds a callable and its arguments
already pickled, :class:`ScatterRef` names scattered data by path, and
:func:`run_chunk` runs a chunk of ``map``. A unit then holds bytes, not the user's
objects, so that a finished task keeps nothing of its caller alive.
"""

from __future__ import annotations

import builtins
import collections
import importlib
import pickle
import sys
import threading
import traceback
import weakref
from typing import Any, Callable

import cloudpickle

from rp_executor.exceptions import BadParameter

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


def dump_call(description: Any) -> tuple[bytes | str, bytes]:
    """A function unit's function and arguments, pickled; for a FUNC unit (RADICAL-
    Pilot's ``cpu_process_type=FUNC``) a :class:`FuncCall` of its ``executable``,
    ``arguments`` and ``pre_exec``.

    :raises BadParameter: the function or an argument cannot be pickled (naming it).
    """
    d = description
    if d.function is None:
        call = FuncCall(d.executable, list(d.arguments), list(d.pre_exec))
        return pickle.dumps(call, protocol=_PROTOCOL), _NO_ARGS
    return dump_function(d.function), dump_arguments(d.args, d.kwargs)


class FuncCall:
    """A FUNC unit as RADICAL-Pilot ran it, in a warm worker: the ``pre_exec`` lines
    run first as Python statements (``"import math"``), then the callable ``name``
    (``"math.exp"``, ``"mymodule.work"``: looked up among the names the statements
    made, else imported) is called with ``arguments``. ``str(result)`` goes to stdout
    and an exception's traceback to stderr, which the worker captures for the unit.
    """

    __slots__ = ("name", "arguments", "pre_exec")

    def __init__(self, name: str, arguments: list, pre_exec: list[str]) -> None:
        self.name, self.arguments, self.pre_exec = name, arguments, pre_exec

    def __call__(self) -> Any:
        namespace: dict[str, Any] = {}
        try:
            for line in self.pre_exec:
                exec(line, namespace)
            result = _resolve(self.name, namespace)(*self.arguments)
        except BaseException:
            traceback.print_exc()   # into the unit's stderr
            raise
        sys.stdout.write(str(result))
        return result

    def __reduce__(self) -> tuple:
        return FuncCall, (self.name, self.arguments, self.pre_exec)

    def __repr__(self) -> str:
        return f"<FUNC call of {self.name}>"


def _resolve(name: str, namespace: dict[str, Any]) -> Callable:
    """The object a dotted ``name`` names: from ``namespace`` if its first part is
    there, else from the longest importable module prefix, else a builtin."""
    parts = name.split(".")
    if parts[0] in namespace:
        obj, rest = namespace[parts[0]], parts[1:]
    else:
        for i in range(len(parts) - 1, 0, -1):
            try:
                obj, rest = importlib.import_module(".".join(parts[:i])), parts[i:]
                break
            except ImportError:
                continue
        else:
            obj, rest = builtins, parts
    for part in rest:
        obj = getattr(obj, part)
    return obj


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


_FN_CACHE_SIZE = 64
_SCATTER_CACHE_SIZE = 8

# worker side: unpickled callables by their pickle, and scattered data by path
_functions: "collections.OrderedDict[bytes, Callable]" = collections.OrderedDict()
_scattered: "collections.OrderedDict[str, Any]" = collections.OrderedDict()
_scatter_lock = threading.Lock()


class Call:
    """A callable with its arguments, both pickled: ``Call(fn, args)()`` runs
    ``fn(*args, **kwargs)`` after unpickling them.

    :param fn: the pickled callable (``cloudpickle.dumps(fn)``), or the
        ``"module:name"`` of an importable one.
    :param args: the pickled ``(args, kwargs)``.
    :param name: the callable's name, for ``repr`` and the journal.
    """

    __slots__ = ("fn", "args", "name", "__weakref__")

    def __init__(self, fn: bytes | str, args: bytes, name: str = "") -> None:
        self.fn = fn
        self.args = args
        self.name = name

    def __call__(self) -> Any:
        fn = _functions.get(self.fn)
        if fn is None:
            fn = _import(self.fn) if isinstance(self.fn, str) else pickle.loads(self.fn)
            _functions[self.fn] = fn
            if len(_functions) > _FN_CACHE_SIZE:
                _functions.popitem(last=False)
        args, kwargs = pickle.loads(self.args)
        return fn(*args, **kwargs)

    def __reduce__(self) -> tuple:
        return Call, (self.fn, self.args, self.name)

    def __repr__(self) -> str:
        return f"<call of {self.name or 'a function'}>"


def _import(name: str) -> Callable:
    """The callable named ``module:qualified.name``."""
    import importlib
    module, _, path = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


class ScatterRef:
    """Scattered data in an argument: pickles as the path of the file holding it, and
    unpickles (in the worker) as the data itself, read once per worker process."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return load_scattered, (self.path,)


def load_scattered(path: str) -> Any:
    """The data scattered to ``path``, from this process's cache or the file.

    A worker keeps the last few it read, so that many units on one pilot read a large
    argument once. The object is shared by the units the worker runs: treat it as
    read-only.
    """
    with _scatter_lock:
        if path in _scattered:
            _scattered.move_to_end(path)
            return _scattered[path]
    with open(path, "rb") as fh:
        value = pickle.load(fh)
    with _scatter_lock:
        _scattered[path] = value
        while len(_scattered) > _SCATTER_CACHE_SIZE:
            _scattered.popitem(last=False)
    return value


def run_chunk(fn: Callable, chunk: list[tuple]) -> list:
    """``[fn(*args) for args in chunk]``: one unit of ``executor.map(chunksize=n)``."""
    return [fn(*args) for args in chunk]
