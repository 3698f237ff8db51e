"""Pilot and unit descriptions: what the user asks for, checked when it is set.

A description is a declarative schema (a tuple of :class:`~rp_executor._core.attrs.Attr`)
plus a tiny base class,
:class:`Description`, that stores one value per attribute, checks every value as it is
set (attribute, item or constructor access) and checks the whole description in
:meth:`Description.validate`, which the managers call at submit.

The attributes and defaults are those of RADICAL-Pilot 0.50
(``compute_pilot_description.py`` and ``compute_unit_description.py``). Unlike RP
there is no camel-case access; an unknown name raises :class:`BadParameter` with the
closest known name as a suggestion.

Checks are written for volume: a UnitManager may build and validate 100,000 unit
descriptions, so the common case (``type(value)`` is exactly the hinted type) never
reaches ``typeguard``.
"""

from __future__ import annotations

import copy
import difflib
import posixpath
import logging
import re
import typing
import warnings
from typing import Any, Callable, ClassVar, Iterator

from typeguard import TypeCheckError, check_type

from rp_executor._core.attrs import (  # noqa: F401  (Attr, Alias and the checks: re-exported)
    _SCALAR_TYPES,
    Alias,
    Attr,
    _describe,
    _repr,
    _scalar_hint,
    _show,
    at_least,
    non_empty,
    one_of,
)
from rp_executor.exceptions import BadParameter

log = logging.getLogger(__name__)

#: Values of ``gpu_process_type`` ('' means POSIX).
PROCESS_TYPES = ("", "POSIX", "MPI")
#: Values of ``cpu_process_type``: also FUNC, a callable named by ``executable``.
CPU_PROCESS_TYPES = (*PROCESS_TYPES, "FUNC")
#: Values of ``cpu_thread_type`` ('' means POSIX).
CPU_THREAD_TYPES = ("", "POSIX", "OpenMP")
#: Values of ``gpu_thread_type`` ('' means POSIX).
GPU_THREAD_TYPES = ("", "POSIX", "OpenMP", "CUDA")

_IMMUTABLE = (type(None), bool, int, float, str, bytes, tuple, frozenset)


_EMPTY_LIST: list = []   # shared by snapshots; never modified
_EMPTY_DICT: dict = {}
_UNSET = object()


def _fresh(default: Any) -> Any:
    """A description's own copy of a mutable default (empty ones without deepcopy)."""
    if not default and type(default) in (list, dict):
        return type(default)()
    return copy.deepcopy(default)


def _placeholder(default: Any) -> Any:
    """What a snapshot holds for a mutable default: a shared, never changed empty
    container where the default is one."""
    if type(default) is list and not default:
        return _EMPTY_LIST
    if type(default) is dict and not default:
        return _EMPTY_DICT
    return copy.deepcopy(default)


class Description:
    """Base of the descriptions: a fixed set of checked attributes.

    Construct with ``Cls(from_dict=None, **kwargs)`` (keyword arguments win) or
    ``Cls.from_dict(d)``. Values are read and set as attributes (``d.executable``) or
    items (``d['executable']``); iteration and :meth:`keys` give the attribute names.
    Setting a wrong type or value, or an unknown name, raises :class:`BadParameter`.
    Names with a leading underscore that are not in the schema are ordinary Python
    attributes, so subclasses and internals may keep private state.
    """

    _schema: ClassVar[tuple[Attr, ...]] = ()
    _aliases: ClassVar[tuple[Alias, ...]] = ()
    #: Alternatives of which at least one must be set (not None, not '') at validate().
    _required_one_of: ClassVar[tuple[str, ...]] = ()
    _attrs: ClassVar[dict[str, Attr]] = {}
    _alias_map: ClassVar[dict[str, Alias]] = {}
    _immutable_defaults: ClassVar[dict[str, Any]] = {}
    _mutable_defaults: ClassVar[tuple[Attr, ...]] = ()
    _recheck: ClassVar[tuple[Attr, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _order: ClassVar[dict[str, int]] = {}
    _placeholders: ClassVar[dict[str, Any]] = {}
    _other_mutables: ClassVar[tuple[Attr, ...]] = ()
    _recheck_of: ClassVar[dict[str, Attr]] = {}
    _copied_set: ClassVar[frozenset] = frozenset()
    _shared: ClassVar[frozenset] = frozenset()
    _shared_order: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._attrs = {a.name: a for a in cls._schema}
        cls._shared = frozenset(a.name for a in cls._schema if a.share)
        cls._shared_order = tuple(a.name for a in cls._schema if a.share)
        cls._copied_set = frozenset(a.name for a in cls._schema
                                    if not a.share and not _scalar_hint(a.hint))
        # validate() checks again only what can change in place: values of scalar-only
        # attributes were checked when set and are immutable
        cls._recheck = tuple(a for a in cls._schema if not _scalar_hint(a.hint))
        cls._alias_map = {a.name: a for a in cls._aliases}
        cls._immutable_defaults = {a.name: a.default for a in cls._schema
                                   if isinstance(a.default, _IMMUTABLE)}
        cls._mutable_defaults = tuple(a for a in cls._schema
                                      if not isinstance(a.default, _IMMUTABLE))
        cls._defaults = {a.name: a.default for a in cls._schema}
        cls._order = {a.name: i for i, a in enumerate(cls._schema)}
        cls._placeholders = {a.name: _placeholder(a.default) for a in cls._mutable_defaults
                             if not a.default and type(a.default) in (list, dict)}
        cls._other_mutables = tuple(a for a in cls._mutable_defaults
                                    if a.name not in cls._placeholders)
        cls._recheck_of = {a.name: a for a in cls._recheck}
        # Descriptions are sparse: an instance holds only what was set. Immutable
        # defaults are read through the class; mutable ones are made on first access
        # (__getattr__). 100,000 descriptions would otherwise hold 3.8 million entries
        # and 900,000 empty containers (600,000 lists for the garbage collector to walk).
        for name, default in cls._immutable_defaults.items():
            present = getattr(cls, name, _UNSET)
            if present is not _UNSET and (callable(present) or isinstance(present, property)):
                raise TypeError(f"{cls.__name__}: attribute {name!r} would hide a method")
            setattr(cls, name, default)

    def __init__(self, from_dict: typing.Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        if from_dict is not None:
            if not isinstance(from_dict, typing.Mapping):
                raise BadParameter(f"{type(self).__name__}: from_dict got "
                                   f"{_show(from_dict)}; must be a dict of attribute "
                                   f"names to values", attribute="from_dict",
                                   value=from_dict)
            for name, value in from_dict.items():
                self._set(name, value, 4)
        attrs, held = self._attrs, self.__dict__
        for name, value in kwargs.items():
            # what _set does in the common case, without its call (100,000 units
            # are made one description each)
            attr = attrs.get(name)
            if attr is not None and attr.convert is None and \
                    (attr.anything or type(value) in attr.fast or
                     (type(value) in attr.empties and not value)):
                check = attr.check
                if check is None or value is None or check(value) is None:
                    held[name] = value
                    continue
            self._set(name, value, 4)

    @classmethod
    def from_dict(cls, d: typing.Mapping[str, Any]) -> "Description":
        """Return a description with the attributes in ``d`` set (checked)."""
        return cls(from_dict=d)

    # -- setting and getting ---------------------------------------------------------

    def _fail(self, name: str, value: Any, problem: str, label: str | None = None) -> None:
        raise BadParameter(f"{type(self).__name__}.{label or name}: got {_show(value)}; "
                           f"{problem}", obj=self, attribute=name, value=value)

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(
            name, list(self._attrs) + list(self._alias_map), n=1, cutoff=0.6) \
            if isinstance(name, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else \
            f"; known attributes: {', '.join(self._attrs)}"
        return f"{type(self).__name__} has no attribute {name!r}{hint}"

    def _set(self, name: Any, value: Any, _depth: int = 3) -> None:
        attr = self._attrs.get(name)
        if attr is None:
            alias = self._alias_map.get(name)
            if alias is None:
                if isinstance(name, str) and name.startswith("_"):
                    object.__setattr__(self, name, value)
                    return
                raise BadParameter(self._unknown(name), obj=self, attribute=name,
                                   value=value)
            self._set_alias(alias, value, _depth + 1)
            return
        if attr.convert is not None:
            value = attr.convert(value)
        if attr.anything or type(value) in attr.fast:
            # the common case, Attr.problem's first branch written out
            check = attr.check
            problem = None if check is None or value is None else check(value)
        else:
            problem = attr.problem(value)
        if problem is not None:
            self._fail(name, value, problem)
        self.__dict__[name] = value

    def _set_alias(self, alias: Alias, value: Any, depth: int) -> None:
        warnings.warn(f"{type(self).__name__}.{alias.name} is deprecated; "
                      f"use {alias.target}", DeprecationWarning, stacklevel=depth)
        label = f"{alias.name} (alias of {alias.target})"
        try:
            check_type(value, alias.hint)
        except TypeCheckError:
            self._fail(alias.name, value, "must be " + _describe(alias.hint), label)
        if type(value) is bool and alias.hint is int:
            self._fail(alias.name, value, "must be an int", label)
        target = self._attrs[alias.target]
        mapped = alias.to_target(value)
        problem = target.problem(mapped)
        if problem is not None:
            self._fail(alias.name, value, problem, label)
        self.__dict__[alias.target] = mapped

    __setattr__ = _set

    def _peek(self, name: str) -> Any:
        """The value of attribute ``name`` without making a mutable default: a default
        comes back shared, so the caller must not change it."""
        return self.__dict__.get(name, self._defaults[name])

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: a mutable default not used yet,
        # aliases and unknown names.
        attr = type(self)._attrs.get(name)
        if attr is not None:
            value = self.__dict__[name] = _fresh(attr.default)
            return value
        alias = type(self)._alias_map.get(name)
        if alias is not None:
            return alias.from_target(self._peek(alias.target))
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(self._unknown(name))

    def __getitem__(self, name: str) -> Any:
        if name in self._attrs or name in self._alias_map:
            return getattr(self, name)
        raise BadParameter(self._unknown(name), obj=self, attribute=name)

    def __setitem__(self, name: str, value: Any) -> None:
        if isinstance(name, str) and name.startswith("_") and name not in self._attrs:
            raise BadParameter(self._unknown(name), obj=self, attribute=name, value=value)
        self._set(name, value, 4)

    def __contains__(self, name: object) -> bool:
        return name in self._attrs

    def __iter__(self) -> Iterator[str]:
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)

    def get(self, name: str, default: Any = None) -> Any:
        """Return the value of attribute ``name``, or ``default`` if there is none."""
        if name in self._attrs or name in self._alias_map:
            return getattr(self, name)
        return default

    def keys(self) -> list[str]:
        """Return the attribute names, in schema order (aliases excluded)."""
        return list(self._attrs)

    def items(self) -> list[tuple[str, Any]]:
        """Return ``(name, value)`` pairs of all attributes (not copied)."""
        return [(n, getattr(self, n)) for n in self._attrs]

    # -- copies, comparison, display -------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """Return all attributes as a new dict; values are deep copies (except shared ones)."""
        d, memo = self.__dict__, {}
        out = {}
        for a in self._schema:
            value = d[a.name] if a.name in d else _fresh(a.default)
            out[a.name] = value if a.share else copy.deepcopy(value, memo)
        return out

    def non_defaults(self) -> dict[str, Any]:
        """The attributes whose values differ from their defaults, as a new dict
        (values not copied); what the journal records."""
        # an instance holds only what was set (and shared empty placeholders): look
        # at those, in schema order, not at every attribute of the schema
        defaults, order = self._defaults, self._order
        found = [(order[name], name, value) for name, value in self.__dict__.items()
                 if name in defaults and value != defaults[name]]
        if len(found) > 1:
            found.sort()
        return {name: value for _, name, value in found}

    def copy(self) -> "Description":
        """Return a deep copy of this description."""
        return copy.deepcopy(self)

    def __deepcopy__(self, memo: dict) -> "Description":
        new = type(self).__new__(type(self))
        # the common empty default: a new one without the deepcopy machinery
        object.__setattr__(new, "__dict__", self._copied_values(
            dict(self.__dict__), lambda empty: type(empty)(), memo))
        return new

    def _snapshot(self) -> "Description":
        """A copy for a manager to keep: like :meth:`copy`, but empty lists and dicts
        are shared read-only placeholders (a manager never changes a description, and
        100,000 units would otherwise hold 700,000 empty containers)."""
        new = type(self).__new__(type(self))
        # a read of a mutable default would make one per unit: share one instead
        d = self._copied_values({**self._placeholders, **self.__dict__}, _placeholder, {})
        for a in self._other_mutables:
            if a.name not in d:
                d[a.name] = _placeholder(a.default)
        object.__setattr__(new, "__dict__", d)
        return new

    def _copied_values(self, d: dict, empty: Callable[[Any], Any], memo: dict) -> dict:
        """``d`` (a new dict holding the instance's values) with the mutable values
        deep-copied; an empty list or dict becomes ``empty(value)``."""
        scalars, copied = _SCALAR_TYPES, self._copied_set
        # what the instance holds of the attributes that may hold mutable values
        for name, value in self.__dict__.items():
            tv = type(value)
            if tv in scalars or name not in copied:
                continue
            if (tv is list or tv is dict) and not value:
                d[name] = empty(value)
            elif tv is list and all(type(x) in scalars for x in value):
                d[name] = value[:]     # what deepcopy makes, without its machinery
            elif tv is dict and all(type(x) in scalars for x in value.values()) and \
                    all(type(k) in scalars for k in value):
                d[name] = dict(value)
            else:
                d[name] = copy.deepcopy(value, memo)
        return d

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(self._peek(n) == other._peek(n) for n in self._attrs)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        d = self.__dict__
        parts = [f"{a.name}={_repr.repr(d[a.name])}" for a in self._schema
                 if a.name in d and d[a.name] != a.default]
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- whole-description checks ----------------------------------------------------

    def validate(self) -> None:
        """Check every attribute again and the rules across attributes.

        Values set in place (``d.arguments.append(...)``) are checked here too.

        :raises BadParameter: naming the first offending attribute and its value.
        """
        scalars = _SCALAR_TYPES
        recheck = self._recheck_of
        # what the instance holds (what it does not hold is a default, and defaults
        # are valid); scalars were checked when set and cannot change in place,
        # containers can
        bad = []
        for name, value in self.__dict__.items():
            if type(value) in scalars or (not value and type(value) in (list, dict)):
                continue
            a = recheck.get(name)
            if a is not None:
                problem = a.problem(value)
                if problem is not None:
                    bad.append((self._order[name], name, value, problem))
        if bad:
            _, name, value, problem = min(bad, key=lambda b: b[0])   # schema order
            self._fail(name, value, problem)
        held = self.__dict__      # an attribute it does not hold has its default
        if self._required_one_of and not any(
                held.get(n, self._defaults[n]) not in (None, "")
                for n in self._required_one_of):
            first = self._required_one_of[0]
            self._fail(first, self._peek(first),
                       f"must be set: {type(self).__name__} needs "
                       f"{' or '.join(map(repr, self._required_one_of))} (not None, not '')")
        self._validate_whole()

    def _validate_whole(self) -> None:
        """Subclass hook: rules across attributes. Raise BadParameter on failure."""

    def _shape(self) -> tuple | None:
        """What :meth:`validate`, a journal record and the agent's copy of this
        description depend on, but for its shared values (a unit's function and its
        arguments): its other values, when all are immutable scalars (an empty list
        or dict counts as not set), and whether each shared value is set or empty;
        None when another value is a container, which may change in place.

        Descriptions of one shape need :meth:`validate` once; the others of that
        shape need only :meth:`_validate_shared`.
        """
        shared, scalars = self._shared, _SCALAR_TYPES
        key: list = [type(self)]
        for name, value in self.__dict__.items():
            tv = type(value)
            if name in shared:
                key.append((name, bool(value) if tv in (list, tuple, dict) else value is None))
            elif tv in scalars:
                key.append((name, value, tv))     # 1 and True are equal, not alike
            elif value or tv is not type(self._placeholders.get(name)):
                return None     # a container that is not the empty default
        return tuple(key)

    def _validate_shared(self) -> None:
        """:meth:`validate` for a description of a shape (:meth:`_shape`) that
        another description passed: its shared values are checked again.

        :raises BadParameter: naming the first offending attribute and its value.
        """
        held, recheck = self.__dict__, self._recheck_of
        for name in self._shared_order:
            value = held.get(name)
            if value is None or (not value and type(value) in (list, dict)):
                continue
            a = recheck.get(name)
            if a is not None:
                problem = a.problem(value)
                if problem is not None:
                    self._fail(name, value, problem)


# -- the two descriptions ------------------------------------------------------------------

_Staging = list[str | dict[str, Any]]


def _wrap_directive(value: Any) -> Any:
    # RP wraps a single directive into a list.
    return [value] if isinstance(value, (str, dict)) else value


def _mpi_quirk(value: Any) -> Any:
    # RP 0.50 turned cpu_process_type=True (the old `mpi` flag) into 'MPI'.
    return "MPI" if value is True or value == "True" else value


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be an int > 0 (minutes) or None"


def _non_empty_items(value: Any) -> str | None:
    return None if all(s.strip() for s in value) else "must be a list of non-empty str"


class ComputePilotDescription(Description):
    """What a pilot should be: where (``resource``), how big (``cores``), how long
    (``runtime``, minutes). ``provider`` may carry a Parsl ExecutionProvider to use
    instead of one built from the resource configuration.

    A pilot whose block runs on this machine (``local.localhost``, or any
    ``LocalProvider``) may not ask for more cores or GPUs than the machine has,
    unless ``oversubscribe`` is True: :meth:`PilotManager.submit_pilots
    <rp_executor.pilot_manager.PilotManager.submit_pilots>` raises
    :class:`BadParameter` naming the field, the value and what is allowed.
    """

    _schema = (
        Attr("resource", str | None, None, non_empty, doc="resource label, e.g. local.localhost"),
        Attr("access_schema", str | None, None, non_empty, doc="None: the first schema"),
        Attr("runtime", int | None, None, _positive, doc="minutes; mandatory"),
        Attr("sandbox", str | None, None, non_empty, doc="overrides the remote workdir"),
        Attr("cores", int, 0, at_least(0), doc="mandatory (>= 1 at validate)"),
        Attr("gpus", int, 0, at_least(0)),
        Attr("oversubscribe", bool, False,
             doc="a pilot on this machine (LocalProvider) may ask for more cores or GPUs "
                 "than the machine has; refused at submit_pilots otherwise"),
        Attr("memory", int | None, None, at_least(0), doc="MB"),
        Attr("queue", str | None, None, non_empty),
        Attr("project", str | None, None, non_empty),
        Attr("cleanup", bool | None, None),
        Attr("candidate_hosts", list[str] | None, None, _non_empty_items),
        Attr("exit_on_error", bool, False),
        Attr("_config", Any, None, doc="agent config name or dict"),
        Attr("input_staging", _Staging, [], convert=_wrap_directive),
        Attr("output_staging", _Staging, [], convert=_wrap_directive),
        Attr("output", str | None, None, non_empty,
             doc="file in the pilot sandbox for the agent's stdout (None: the provider's)"),
        Attr("error", str | None, None, non_empty,
             doc="file in the pilot sandbox for the agent's stderr (None: the provider's)"),
        Attr("provider", Any, None, share=True, doc="a Parsl ExecutionProvider"),
    )

    def _validate_whole(self) -> None:
        if self.resource is None:
            self._fail("resource", None, "must be a non-empty str such as "
                       "'local.localhost' (the resource is mandatory)")
        if self.runtime is None:
            self._fail("runtime", None, "must be an int > 0 (minutes; runtime is mandatory)")
        if self.cores < 1:
            self._fail("cores", self.cores, "must be an int >= 1 (pilot size must be defined)")


def _function_check(value: Any) -> str | None:
    if callable(value):
        return None
    if isinstance(value, str) and _IMPORTABLE.match(value):
        return None
    return "must be a callable or an importable 'module:name' string"


def _unit_sandbox(value: Any) -> str | None:
    if value is None:
        return None
    problem = non_empty(value)
    if problem:
        return problem
    if not value.startswith("/") and \
            posixpath.normpath(value).split("/")[0] == "..":
        return "must stay inside the pilot sandbox when relative (no '..' out of it)"
    return None


_IMPORTABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_CALLABLE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class ComputeUnitDescription(Description):
    """What a unit should run (``executable`` with ``arguments`` and ``environment``,
    or a Python ``function`` with ``args`` and ``kwargs``) and what it needs (``cpu_processes`` x ``cpu_threads`` cores, ``gpu_processes``
    GPUs, memory, local storage), plus staging and pre/post commands.

    Deprecated aliases: ``cores`` (``cpu_processes``) and ``mpi`` (``True`` means
    ``cpu_process_type='MPI'``); setting them warns with DeprecationWarning.
    """

    _required_one_of = ("executable", "function")
    _schema = (
        Attr("executable", str | None, None, non_empty),
        Attr("function", Any, None, _function_check, share=True,
             doc="a Python callable, or 'module:name' of an importable one"),
        Attr("args", list | tuple, [], share=True, doc="positional arguments of function"),
        Attr("kwargs", dict[str, Any], {}, share=True, doc="keyword arguments of function"),
        Attr("arguments", list[str | int | float], [],
             doc="strings (numbers become strings); a FUNC unit's positional arguments"),
        Attr("environment", dict[str, str], {}),
        Attr("name", str | None, None),
        Attr("kernel", str | None, None),
        Attr("cpu_processes", int, 1, at_least(1)),
        Attr("cpu_process_type", str, "", one_of(*CPU_PROCESS_TYPES), convert=_mpi_quirk),
        Attr("cpu_threads", int, 1, at_least(1)),
        Attr("cpu_thread_type", str, "", one_of(*CPU_THREAD_TYPES)),
        Attr("gpu_processes", int, 0, at_least(0)),
        Attr("gpu_process_type", str, "", one_of(*PROCESS_TYPES)),
        Attr("gpu_threads", int, 1, at_least(1)),
        Attr("gpu_thread_type", str, "", one_of(*GPU_THREAD_TYPES)),
        Attr("lfs_per_process", int, 0, at_least(0), doc="MB"),
        Attr("mem_per_process", int, 0, at_least(0), doc="MB"),
        Attr("tag", str | None, None, doc="uid of an earlier unit to co-locate with"),
        Attr("tags", dict[str, Any], {}),
        Attr("sandbox", str | None, None, _unit_sandbox,
             doc="absolute, or relative to the pilot sandbox (and inside it)"),
        Attr("input_staging", _Staging, [], convert=_wrap_directive),
        Attr("output_staging", _Staging, [], convert=_wrap_directive),
        Attr("pre_exec", list[str], []),
        Attr("post_exec", list[str], []),
        Attr("stdout", str | None, None, non_empty),
        Attr("stderr", str | None, None, non_empty),
        Attr("restartable", bool, False),
        Attr("cleanup", bool, False),
        Attr("pilot", str, "", doc="uid of a pilot to bind to early"),
        Attr("metadata", Any, None),
        Attr("priority", int, 0, doc="units with a higher priority start first when "
                                     "they wait for free cores on a pilot"),
    )
    _aliases = (
        Alias("cores", "cpu_processes", lambda v: v, lambda v: v, int),
        Alias("mpi", "cpu_process_type", lambda v: "MPI" if v else "",
              lambda v: v == "MPI", bool),
    )

    def _validate_whole(self) -> None:
        # what the instance holds; the defaults of these are None, '' and empty
        held = self.__dict__
        function, executable = held.get("function"), held.get("executable")
        if held.get("cpu_process_type") == "FUNC":
            if function is not None:
                self._fail("function", function, "cannot be set for a FUNC unit: "
                           "its 'executable' names the callable")
            if executable and not _CALLABLE_NAME.match(executable):
                self._fail("executable", executable, "must name a callable for a "
                           "FUNC unit, such as 'math.exp' or 'mymodule.work'")
        if function is not None and executable:
            self._fail("function", function,
                       "cannot be set together with 'executable': a unit runs one or the other")
        if function is None and (held.get("args") or held.get("kwargs")):
            name = "args" if held.get("args") else "kwargs"
            self._fail(name, held[name], "is only used with 'function', which is not set")


__all__ = [
    "Attr", "Alias", "Description", "ComputePilotDescription", "ComputeUnitDescription",
    "PROCESS_TYPES", "CPU_PROCESS_TYPES", "CPU_THREAD_TYPES", "GPU_THREAD_TYPES", "at_least", "one_of",
    "non_empty",
]
