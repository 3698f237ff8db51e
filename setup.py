"""Which packages the distribution holds, found rather than listed.

The metadata lives in pyproject.toml ([project]); this file only computes
``packages`` and ``package_dir``. The installed namespace is one package,
``rp_executor``, built from three folders of the checkout: ``rp_executor/`` as
itself, ``agent/`` as ``rp_executor.agent`` and ``staging/`` as
``rp_executor.staging``. Every folder with an ``__init__.py`` below them is a
package, so a new subpackage is in the wheel without anyone adding it to a list
(tests/test_packaging.py checks that).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

# folder of the checkout -> the name it installs as
TREES = {
    "rp_executor": "rp_executor",
    "agent": "rp_executor.agent",
    "staging": "rp_executor.staging",
}

PACKAGE_DIR = {name: folder for folder, name in TREES.items()}
"""``package_dir`` for setuptools, which maps a subpackage of a mapped package to the
matching subfolder (``rp_executor.agent.x`` -> ``agent/x``)."""


def packages(root: Path = HERE) -> list[str]:
    """The installed names of every package in :data:`TREES` below ``root``: each
    tree's own folder and every folder with an ``__init__.py`` under it."""
    found = []
    for folder, name in TREES.items():
        if not (root / folder / "__init__.py").is_file():
            raise FileNotFoundError(f"{root / folder}/__init__.py is missing: the folder "
                                    f"{folder!r} must be the package {name!r}")
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(where=str(root / folder))]
    return sorted(found)


if __name__ == "__main__":
    setup(packages=packages(), package_dir=PACKAGE_DIR)
