"""What the futures door sends to a worker: a call in pickled form, scattered data by
reference, and chunks of ``map``.

The client's units carry a :class:`Call` as their ``function``: the callable and its
arguments already pickled. The unit (which the unit manager keeps for its whole life)
then holds bytes, not the user's objects, so that a finished task keeps nothing of
its caller alive (``concurrent.futures`` promises that). Workers import this module
when they unpickle a call, so it imports only the standard library at start.
"""

from __future__ import annotations

import collections
import pickle
import threading
from typing import Any, Callable

_PROTOCOL = pickle.HIGHEST_PROTOCOL
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
