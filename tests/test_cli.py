"""Tests of the ``rp-executor`` command line (rp_executor/cli.py): the installed console
script answers ``--help`` and ``version``, rejects what it does not know, and stays
light to import."""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import rp_executor
from rp_executor import cli

SCRIPT = Path(sys.executable).parent / "rp-executor"


def run_script(*args: str) -> subprocess.CompletedProcess:
    """Run the installed console script (the one beside this Python) with ``args``."""
    assert SCRIPT.is_file(), (f"no console script at {SCRIPT}: install the project "
                              "into this environment (pip install -e '.[test]')")
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_help_lists_the_commands_and_exits_0():
    done = run_script("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: rp-executor")
    for name in cli.COMMANDS:
        assert name in done.stdout
    assert done.stderr == ""


def test_version_command_prints_the_package_and_python_versions():
    done = run_script("version")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == f"rp-executor {rp_executor.__version__}"
    assert f"Python {platform.python_version()}" in second


def test_version_option_prints_the_package_version():
    done = run_script("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"rp-executor {rp_executor.__version__}"


def test_unknown_command_exits_nonzero_with_a_usage_message():
    done = run_script("no-such-command")
    assert done.returncode != 0
    assert "usage: rp-executor" in done.stderr
    assert "no-such-command" in done.stderr
    assert done.stdout == ""


def test_no_command_is_a_usage_error():
    assert cli.main([]) == 2


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_help(name, capsys):
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: rp-executor {name}")
    assert cli.COMMANDS[name].summary in out


def test_a_command_is_one_registered_function(capsys):
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("who")

    @cli.command("greet-for-test", configure)
    def greet(args: argparse.Namespace) -> int:
        """Greet someone, and fail."""
        print(f"hello {args.who}")
        return 3

    try:
        assert cli.main(["greet-for-test", "world"]) == 3
        assert capsys.readouterr().out == "hello world\n"
        cli.main(["--help"])
        assert "Greet someone, and fail." in capsys.readouterr().out
    finally:
        del cli.COMMANDS["greet-for-test"]


def test_a_command_name_is_registered_once():
    with pytest.raises(ValueError, match="'version' is registered twice"):
        cli.command("version")(lambda args: 0)


def test_importing_the_cli_imports_neither_parsl_nor_zmq():
    heavy = ("parsl", "zmq", "dask", "distributed", "globus_sdk", "msgpack", "cloudpickle")
    code = ("import sys, rp_executor.cli; "
            f"print(' '.join(m for m in sys.modules if m.split('.')[0] in {heavy!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == ""


def test_the_module_runs_as_a_script():
    done = subprocess.run([sys.executable, "-m", "rp_executor.cli", "version"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"rp-executor {rp_executor.__version__}\n")


@pytest.mark.parametrize("exit_code, stderr, reason", [
    (1, "", "exit code 1"),
    (3, "oops\n\n", "exit code 3: oops"),
    (127, "some output\nrp_executor: cannot execute 'x': No such file\nmore\n",
     "exit code 127: rp_executor: cannot execute 'x': No such file"),
    (None, None, "no exit code"),
])
def test_a_failed_units_reason_is_one_line(exit_code, stderr, reason):
    assert cli.failure_reason(exit_code, stderr) == reason


def _journal(tmp_path: Path) -> Path:
    """A session directory with a journal of one pilot and no units."""
    from rp_executor._core.journal import Journal
    path = tmp_path / "rp.session.cli.0000"
    path.mkdir()
    journal = Journal(path / "session.sqlite")
    journal.add_session(path.name, 1.7e9, {})
    journal.add_manager("pmgr.0000", "pmgr", 1.7e9)
    journal.add_pilots([("pilot.0000", "pmgr.0000", '{"cores": 1}')])
    journal.close_session(path.name, 1.7e9 + 5)
    journal.close()
    return path


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    path = _journal(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)   # import fails
    assert cli.main(["plot", str(path), "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rp-executor plot: error: plots need matplotlib: "
                          "pip install 'rp-executor[plot]'")
    assert not (tmp_path / "x.png").exists()


def test_watch_of_a_closed_session_shows_it_once_and_ends(tmp_path, capsys):
    path = _journal(tmp_path)
    assert cli.main(["watch", str(path)]) == 0
    first, last = capsys.readouterr().out.splitlines()
    assert first.startswith(f"{path.name}  closed  ")
    assert first.endswith("| pilots: pilot.0000 NEW | units 0: none")
    assert last.startswith(f"session {path.name} closed at ")


def test_a_file_that_cannot_be_written_is_an_error_not_a_traceback(tmp_path, capsys):
    path = _journal(tmp_path)
    target = tmp_path / "no" / "such" / "dir" / "units.csv"
    assert cli.main(["export", str(path), "-o", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rp-executor export: error: ") and str(target) in err
