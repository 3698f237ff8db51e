"""Tests of the packaging: setup.py finds every package of the three source trees
(``rp_executor/``, ``agent/`` and ``staging/``) under its installed name, and
pyproject.toml keeps test tools out of the runtime dependencies."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")   # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
TREES = {"rp_executor": "rp_executor", "agent": "rp_executor.agent",
         "staging": "rp_executor.staging"}


def load_setup():
    """setup.py as a module; its ``setup()`` call runs only as ``__main__``."""
    spec = importlib.util.spec_from_file_location("rp_executor_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def package_folders(root: Path) -> dict[str, Path]:
    """Installed name -> folder, for every folder with an ``__init__.py`` in the trees."""
    found = {}
    for folder, name in TREES.items():
        for init in sorted((root / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(root / folder)
            found[".".join((name, *rel.parts))] = init.parent
    return found


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(req: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", req).group(0).lower().replace("_", "-")


def test_setup_finds_every_package_under_its_installed_name():
    setup = load_setup()
    assert setup.TREES == TREES
    assert set(setup.packages()) == set(package_folders(ROOT))


def test_package_dir_maps_every_package_to_its_folder():
    setup = load_setup()
    for name, folder in package_folders(ROOT).items():
        # setuptools' rule: the longest mapped prefix, then the rest as subfolders
        prefix = max((p for p in setup.PACKAGE_DIR if name == p or name.startswith(p + ".")),
                     key=len)
        rest = name[len(prefix):].lstrip(".").split(".") if name != prefix else []
        assert ROOT.joinpath(setup.PACKAGE_DIR[prefix], *rest) == folder, name


def test_a_new_subpackage_is_found_without_a_list(tmp_path):
    for folder in ("rp_executor", "rp_executor/newdoor", "agent", "agent/plugins",
                   "agent/plugins/slurm", "staging", "staging/backends"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "__init__.py").touch()
    (tmp_path / "rp_executor" / "configs").mkdir()   # data, not a package
    assert load_setup().packages(tmp_path) == [
        "rp_executor", "rp_executor.agent", "rp_executor.agent.plugins",
        "rp_executor.agent.plugins.slurm", "rp_executor.newdoor", "rp_executor.staging",
        "rp_executor.staging.backends"]


def test_pyproject_keeps_no_hand_kept_package_list():
    tool = pyproject().get("tool", {}).get("setuptools", {})
    assert "packages" not in tool and "package-dir" not in tool, (
        "setup.py finds the packages; a list in pyproject.toml would be kept by hand")
    assert set(tool["package-data"]["rp_executor"]) >= {"py.typed", "configs/*.json"}


def test_pytest_is_a_test_extra_not_a_runtime_dependency():
    project = pyproject()["project"]
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert not {n for n in runtime if n.startswith("pytest")}, runtime
    test_extra = {requirement_name(r) for r in project["optional-dependencies"]["test"]}
    assert "pytest" in test_extra


def test_console_script_names_the_cli_main():
    assert pyproject()["project"]["scripts"] == {"rp-executor": "rp_executor.cli:main"}
    from rp_executor.cli import main
    assert callable(main)
