"""Resource descriptions and the registry a session looks them up in.

A :class:`ResourceConfig` is one entry of RADICAL-Pilot's ``resource_<site>.json``
files: how to reach a machine (per access schema), how its batch system and agent are
set up, and here also which Parsl provider starts the pilot's block. Its label is
``<site>.<key>``: key ``localhost`` of ``resource_local.json`` is ``local.localhost``.

A :class:`ResourceRegistry` holds the configs by label. It loads the ones shipped in
``rp_executor/configs/``, then the user's in ``~/.radical/pilot/configs/`` and
``~/.rp_executor/configs/`` (deep-merged over the shipped ones, user values winning),
and the aliases of ``resource_aliases.json`` files. :meth:`ResourceRegistry.get` gives
what RP's ``Session.get_resource_config`` gave: a deep copy with the chosen schema's
keys merged to the top level.
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from rp_executor.exceptions import BadParameter, DoesNotExist

log = logging.getLogger(__name__)

#: Keys of a resource config and their values when a config does not set them.
DEFAULTS: dict[str, Any] = {
    "description": "",
    "notes": "",
    "schemas": ["local"],
    "default_queue": None,
    "lrms": "local",
    "agent_scheduler": "CONTINUOUS",
    "agent_spawner": "POPEN",
    "task_launch_method": "FORK",
    "mpi_launch_method": "MPIRUN",
    "cores_per_node": None,
    "gpus_per_node": 0,
    "default_remote_workdir": None,
    "mandatory_args": [],
    "python_interpreter": None,
    "provider": "LocalProvider",
    "provider_args": {},
    "export_to_cu": {},
}

_FILE_RE = re.compile(r"^resource_(?P<site>[^/\\]+)\.json$")
ALIASES_FILE = "resource_aliases.json"

#: Folders, relative to the home directory, whose resource files override the shipped.
USER_CONFIG_DIRS = (Path(".radical/pilot/configs"), Path(".rp_executor/configs"))


def _read_json(path: Path) -> Any:
    """Read a JSON file, dropping lines that start with '#' as RP's configs allow."""
    try:
        text = path.read_text()
    except OSError as e:
        raise BadParameter(f"cannot read resource config file {path}: {e}",
                           value=str(path)) from e
    text = "\n".join("" if line.lstrip().startswith("#") else line
                     for line in text.splitlines())
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadParameter(f"resource config file {path} is not valid JSON: {e}",
                           value=str(path)) from e


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into ``base`` in place and return it.

    Dicts are merged key by key; any other value of ``over`` replaces ``base``'s
    (RP's ``dict_merge(policy='overwrite')``).
    """
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class ResourceConfig:
    """The description of one resource, under a label such as ``'local.localhost'``.

    Values are reachable as attributes (``rc.cores_per_node``) and as dict keys
    (``rc['cores_per_node']``); keys the config does not set read as :data:`DEFAULTS`.
    Keys beyond those are kept as given (RP's files have many). A dict value under a
    name listed in ``schemas`` holds that access schema's keys, such as
    ``job_manager_endpoint`` and ``filesystem_endpoint``.

    :param label: the resource label, usually ``<site>.<name>``.
    :param cfg: the config dict; it is deep-copied.
    :raises BadParameter: if the label is empty or a known key has a value of the wrong
        type.
    """

    def __init__(self, label: str, cfg: Mapping[str, Any] | None = None) -> None:
        if not isinstance(label, str) or not label:
            raise BadParameter(f"a resource label must be a non-empty string, got {label!r}",
                               attribute="label", value=label)
        if cfg is not None and not isinstance(cfg, Mapping):
            raise BadParameter(f"the config of resource {label!r} must be a dict, "
                               f"got {type(cfg).__name__}", attribute="cfg", value=cfg)
        object.__setattr__(self, "label", label)
        cfg = {k: v for k, v in copy.deepcopy(dict(cfg or {})).items() if k != "label"}
        object.__setattr__(self, "_cfg", cfg)
        _validate(label, self._full())

    def _full(self) -> dict[str, Any]:
        # a deep copy throughout: callers may change what they get
        return copy.deepcopy({**DEFAULTS, **self._cfg})

    # -- files -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> list["ResourceConfig"]:
        """Read a ``resource_<site>.json`` file into configs labelled ``<site>.<key>``.

        :raises BadParameter: if the file name does not have that form, the file cannot
            be read or parsed, or an entry is not a valid config.
        """
        path = Path(path)
        m = _FILE_RE.match(path.name)
        if not m or path.name == ALIASES_FILE:
            raise BadParameter(f"resource config file {path} must be named "
                               f"'resource_<site>.json'", value=str(path))
        data = _read_json(path)
        if not isinstance(data, dict):
            raise BadParameter(f"resource config file {path} must hold a JSON object of "
                               f"resource name -> config, not {type(data).__name__}",
                               value=str(path))
        site = m.group("site")
        configs = []
        for key, cfg in data.items():
            if not isinstance(cfg, dict):
                raise BadParameter(f"entry {key!r} of {path} must be a JSON object, "
                                   f"not {type(cfg).__name__}", value=cfg)
            configs.append(cls(f"{site}.{key}", cfg))
        return configs

    # -- plain data ----------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """Return the config with defaults filled in and ``'label'``, as a deep copy."""
        return {"label": self.label, **self._full()}

    def copy(self) -> "ResourceConfig":
        """Return an independent copy."""
        return ResourceConfig(self.label, self._cfg)

    def merged(self, over: Mapping[str, Any]) -> "ResourceConfig":
        """Return a copy with ``over`` deep-merged into it (its values win)."""
        return ResourceConfig(self.label, deep_merge(copy.deepcopy(self._cfg), over))

    @property
    def schemas(self) -> list[str]:
        """The access schemas, the default first."""
        return list(self._full()["schemas"])

    def get(self, schema: str | None = None) -> dict[str, Any]:
        """Return the config as a dict with one access schema's keys at the top level.

        :param schema: the schema to use; None means the first of ``schemas``.
        :raises BadParameter: if ``schema`` is neither in ``schemas`` nor a sub-dict of
            the config.
        """
        out = self.as_dict()
        if schema is None:
            schema = out["schemas"][0]
        sub = out.get(schema)
        if schema in out["schemas"] and sub is None:
            return out  # the schema needs no endpoints of its own
        if not isinstance(sub, dict) or schema in DEFAULTS:
            known = [s for s in out["schemas"]]
            raise BadParameter(f"resource {self.label!r} has no access schema {schema!r}; "
                               f"its schemas are {known}",
                               obj=self, attribute="schema", value=schema)
        out.update(copy.deepcopy(sub))
        return out

    # -- attribute and dict access -----------------------------------------------------

    def _known_keys(self) -> list[str]:
        return sorted({*DEFAULTS, *self._cfg})

    def __getitem__(self, key: str) -> Any:
        if key == "label":
            return self.label
        full = self._full()
        if key not in full:
            raise KeyError(key)
        return full[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "label":
            raise BadParameter("the label of a ResourceConfig is fixed; create a new one",
                               obj=self, attribute="label", value=value)
        trial = self._full()
        trial[key] = value
        _validate(self.label, trial)
        self._cfg[key] = copy.deepcopy(value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._known_keys(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AttributeError(f"resource config {self.label!r} has no key "
                                 f"{name!r}{hint}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __contains__(self, key: object) -> bool:
        return key == "label" or key in DEFAULTS or key in self._cfg

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def keys(self) -> list[str]:
        """Return the config's keys, like a dict's ``keys()``."""
        return list(self.as_dict())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceConfig):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (f"ResourceConfig({self.label!r}, provider={self['provider']!r}, "
                f"schemas={self.schemas!r})")


def _validate(label: str, cfg: Mapping[str, Any]) -> None:
    """Raise BadParameter if a known key of ``cfg`` has a value of the wrong type."""
    def bad(key: str, expected: str) -> BadParameter:
        return BadParameter(f"resource {label!r}: {key!r} must be {expected}, "
                            f"got {cfg[key]!r}", attribute=key, value=cfg[key])

    schemas = cfg["schemas"]
    if (not isinstance(schemas, list) or not schemas
            or not all(isinstance(s, str) and s for s in schemas)):
        raise bad("schemas", "a non-empty list of schema names such as ['local']")
    for schema in schemas:
        if schema in DEFAULTS:
            raise BadParameter(f"resource {label!r}: schema name {schema!r} clashes with "
                               f"the config key of that name", attribute="schemas",
                               value=schemas)
        if cfg.get(schema) is not None and not isinstance(cfg[schema], dict):
            raise bad(schema, f"a dict of the {schema!r} schema's keys")
    for key in ("cores_per_node", "gpus_per_node"):
        value = cfg[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise bad(key, "an int >= 0 or null")
    if not isinstance(cfg["mandatory_args"], list):
        raise bad("mandatory_args", "a list of pilot description keys")
    if not isinstance(cfg["provider_args"], dict):
        raise bad("provider_args", "a dict of keyword arguments for the provider")
    if not isinstance(cfg["export_to_cu"], (dict, list)):
        raise bad("export_to_cu", "a dict of environment variables (or RP's list of names)")
    if cfg["provider"] is not None and not isinstance(cfg["provider"], str):
        raise bad("provider", "the name of a Parsl provider class such as 'SlurmProvider'")


class ResourceRegistry:
    """The resource configs a session knows, by label, and aliases for labels.

    :param load_builtin: load the configs shipped in ``rp_executor/configs/``.
    :param user_dirs: folders whose ``resource_*.json`` and ``resource_aliases.json``
        are loaded after the shipped ones, later folders winning; None means
        ``~/.radical/pilot/configs`` and ``~/.rp_executor/configs``.
    :raises BadParameter: if a config file is malformed.
    """

    def __init__(self, load_builtin: bool = True,
                 user_dirs: Iterable[str | os.PathLike[str]] | None = None) -> None:
        self._configs: dict[str, ResourceConfig] = {}
        self._aliases: dict[str, str] = {}
        if load_builtin:
            configs = importlib.resources.files("rp_executor") / "configs"
            with importlib.resources.as_file(configs) as folder:
                self._load_dir(Path(folder), override=False)
        if user_dirs is None:
            user_dirs = [Path.home() / d for d in USER_CONFIG_DIRS]
        for folder in user_dirs:
            self._load_dir(Path(folder), override=True)

    def _load_dir(self, folder: Path, override: bool) -> None:
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("resource_*.json")):
            if path.name == ALIASES_FILE:
                continue
            for rc in ResourceConfig.from_file(path):
                if override and rc.label in self._configs:
                    log.info("resource %s: merging user config from %s", rc.label, path)
                    self._configs[rc.label] = self._configs[rc.label].merged(rc._cfg)
                else:
                    log.debug("resource %s: loaded from %s", rc.label, path)
                    self._configs[rc.label] = rc
        aliases = folder / ALIASES_FILE
        if aliases.is_file():
            data = _read_json(aliases)
            if not isinstance(data, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
                raise BadParameter(f"{aliases} must hold a JSON object of alias -> label",
                                   value=str(aliases))
            self._aliases.update(data)

    # -- queries -----------------------------------------------------------------------

    def list(self) -> list[str]:
        """Return the sorted labels of the known resources, aliases not included."""
        return sorted(self._configs)

    @property
    def aliases(self) -> dict[str, str]:
        """A copy of the alias -> label map."""
        return dict(self._aliases)

    def __contains__(self, label: object) -> bool:
        return label in self._configs or (
            label in self._aliases and self._aliases[label] in self._configs)

    def __len__(self) -> int:
        return len(self._configs)

    def resolve(self, label: str) -> str:
        """Return the label ``label`` stands for, following an alias with a warning.

        :raises DoesNotExist: if neither a label nor an alias of a known label.
        """
        if label in self._configs:
            return label
        if label in self._aliases:
            target = self._aliases[label]
            log.warning("resource %r is an alias; use %r instead", label, target)
            if target in self._configs:
                return target
            raise DoesNotExist(f"Resource alias {label!r} points to {target!r}, which is "
                               f"not known; known resources: {', '.join(self.list())}")
        close = difflib.get_close_matches(str(label), [*self._configs, *self._aliases], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DoesNotExist(f"Resource {label!r} is not known; known resources: "
                           f"{', '.join(self.list()) or 'none'}{hint}")

    def get(self, label: str, schema: str | None = None) -> dict[str, Any]:
        """Return a deep copy of ``label``'s config with ``schema``'s keys at the top.

        :param schema: the access schema; None means the config's first.
        :raises DoesNotExist: for an unknown label, with the close match if any.
        :raises BadParameter: for a schema the resource does not have.
        """
        return self._configs[self.resolve(label)].get(schema)

    def get_config(self, label: str) -> ResourceConfig:
        """Return a copy of ``label``'s :class:`ResourceConfig` (alias resolved)."""
        return self._configs[self.resolve(label)].copy()

    # -- changes -------------------------------------------------------------------------

    def add(self, rc_or_path: ResourceConfig | str | os.PathLike[str]) -> list[str]:
        """Add a config, or all configs of a ``resource_<site>.json`` file.

        A config whose label is known replaces the old one, with a warning (as RP's
        ``add_resource_config``).

        :returns: the labels added.
        :raises BadParameter: for anything else, or a malformed file.
        """
        if isinstance(rc_or_path, ResourceConfig):
            configs = [rc_or_path.copy()]
        elif isinstance(rc_or_path, (str, os.PathLike)):
            configs = ResourceConfig.from_file(rc_or_path)
        else:
            raise BadParameter(f"add() takes a ResourceConfig or the path of a "
                               f"resource_<site>.json file, got {type(rc_or_path).__name__}",
                               value=rc_or_path)
        for rc in configs:
            if rc.label in self._configs:
                log.warning("replacing the config of resource %s", rc.label)
            self._configs[rc.label] = rc
        return [rc.label for rc in configs]

    def add_alias(self, alias: str, label: str) -> None:
        """Make ``alias`` stand for ``label``.

        :raises BadParameter: if ``alias`` is itself a resource label.
        """
        if alias in self._configs:
            raise BadParameter(f"{alias!r} is a resource label and cannot be an alias",
                               attribute="alias", value=alias)
        self._aliases[alias] = label

    def __repr__(self) -> str:
        return f"ResourceRegistry({self.list()!r})"


__all__ = ["ResourceConfig", "ResourceRegistry", "DEFAULTS", "deep_merge"]
