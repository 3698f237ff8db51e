"""Run CPython 3.11's own concurrent.futures conformance tests against client.executor.

Usage: ``python integration_tests/cpython_cf_suite.py TEST_FILE BASE_DIR``

``TEST_FILE`` is ``Lib/test/test_concurrent_futures.py`` of Python 3.11, as Debian's
``libpython3.11-testsuite`` installs it (``/usr/lib/python3.11/test/``); it is read
where it lies, never copied into this repository. As CPython does for its own
executors, each generic mixin (:data:`MIXINS`) is combined with a small executor
mixin whose ``executor_type`` makes a :class:`~rp_executor.futures.executor.ClientExecutor`
of one shared :class:`~rp_executor.futures.client.Client` (one 5-core local pilot: the
mixins use ``max_workers=5``). :data:`EXCLUDED` lists, in this one place, every test
left out and why.

The file is made importable as the module ``cpython_cf_311`` through a link in a
temporary directory put on ``sys.path`` (which local pilots inherit), so that the
workers can unpickle its functions (``mul``, ``MyObject``, ...) by reference. It
imports ``test.support``: the interpreter's own when it has one (pyenv's has),
else Debian's, linked as ``test`` into the same directory.

Prints ``SESSION <uid>`` first (for the caller's check that no process survives)
and exits 0 when every test passed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import unittest
from pathlib import Path

MIXINS = ("ExecutorTest", "WaitTests", "AsCompletedTests", "ExecutorShutdownTest")

_ONLY_STDLIB = ("starts a new interpreter that imports the executor class by name from "
                "concurrent.futures (`from concurrent.futures import {executor_type}`) "
                "and its helpers from test.test_concurrent_futures: only the standard "
                "library's executors can be named there")

#: Tests of :data:`MIXINS` that are not run, with the reason.
EXCLUDED = {
    "ExecutorShutdownTest.test_interpreter_shutdown": _ONLY_STDLIB,
    "ExecutorShutdownTest.test_submit_after_interpreter_shutdown": _ONLY_STDLIB,
    "ExecutorShutdownTest.test_hang_gh83386": _ONLY_STDLIB,
}

MODULE = "cpython_cf_311"
WORKERS = 5   # CPython's tests count on 5 workers: more than a 2-core machine has


def load(test_file: Path, link_dir: Path):
    """Import ``test_file`` as :data:`MODULE` (see the module docstring)."""
    (link_dir / f"{MODULE}.py").symlink_to(test_file)
    try:
        import test.support  # noqa: F401
    except ImportError:
        (link_dir / "test").symlink_to(test_file.parent, target_is_directory=True)
        sys.modules.pop("test", None)
    sys.path.insert(0, str(link_dir))
    import importlib
    return importlib.import_module(MODULE)


def build(module, client) -> list[type]:
    """The test classes: each mixin of :data:`MIXINS` over the shared client."""
    from rp_executor.futures.executor import ClientExecutor

    class SharedClientExecutor(ClientExecutor):
        """A ClientExecutor of the shared client, made as CPython makes executors."""

        def __init__(self, max_workers: int | None = None) -> None:
            super().__init__(client, max_workers=max_workers)

    class ClientExecutorMixin(module.ExecutorMixin):
        executor_type = SharedClientExecutor
        worker_count = WORKERS

    classes = []
    for name in MIXINS:
        cls = type(f"Client{name}", (ClientExecutorMixin, getattr(module, name),
                                     module.BaseTestCase), {})
        for test, reason in EXCLUDED.items():
            owner, _, method = test.partition(".")
            if owner == name:
                setattr(cls, method, unittest.skip(f"excluded: {reason}")(
                    lambda self: None))
        classes.append(cls)
    return classes


def main(argv: list[str]) -> int:
    """Run the suite; return 0 when it passed."""
    test_file, base_dir = Path(argv[0]), argv[1]
    link_dir = Path(tempfile.mkdtemp(prefix="cpython-cf-"))
    module = load(test_file, link_dir)
    from rp_executor import Client

    client = Client(cores=WORKERS, base_dir=base_dir, oversubscribe=True)
    print(f"SESSION {client.session.uid}", flush=True)
    try:
        loader = unittest.TestLoader()
        suite = unittest.TestSuite(loader.loadTestsFromTestCase(cls)
                                   for cls in build(module, client))
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    finally:
        client.close()
    print(f"RESULT ran={result.testsRun} failures={len(result.failures)} "
          f"errors={len(result.errors)} skipped={len(result.skipped)}", flush=True)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
