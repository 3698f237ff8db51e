"""FUNC units as RADICAL-Pilot ran them: ``executable`` names a callable, ``pre_exec``
lines are Python statements, ``arguments`` its positional arguments, and the result
is the unit's stdout (``str(result)``) and its ``return_value``."""

from __future__ import annotations

import pytest

import rp_executor as rp


def _func(executable, arguments, pre_exec=()):
    return rp.ComputeUnitDescription(executable=executable, arguments=list(arguments),
                                     pre_exec=list(pre_exec), cpu_process_type=rp.FUNC)


@pytest.mark.timeout(120)
def test_func_units_call_named_callables_in_warm_workers(session, pmgr, tmp_path,
                                                         monkeypatch):
    (tmp_path / "mymodule.py").write_text(
        "def work(n, scale=1):\n    return [n * scale] * 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))   # the client's modules reach the workers
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost_funcs", cores=2, runtime=10))
    umgr = rp.UnitManager(session)
    umgr.add_pilots(pilot)
    exp, work, builtin, failing = umgr.submit_units([
        _func("math.exp", [1], ["import math"]),
        _func("mymodule.work", [3]),
        _func("max", [4, 9, 2]),
        _func("math.sqrt", [-1], ["import math"]),
    ])
    assert umgr.wait_units(timeout=60) == [rp.DONE, rp.DONE, rp.DONE, rp.FAILED]
    assert (exp.stdout, exp.return_value) == ("2.718281828459045", 2.718281828459045)
    assert (work.stdout, work.return_value) == ("[3, 3]", [3, 3])
    assert (builtin.stdout, builtin.return_value) == ("9", 9)
    assert failing.stdout == "" and failing.return_value is None
    assert "Traceback" in failing.stderr and "ValueError: math domain error" in \
        failing.stderr
    assert isinstance(failing.exception, ValueError)


@pytest.mark.timeout(120)
def test_a_func_unit_whose_setup_fails_fails_with_its_traceback(umgr):
    unit = umgr.submit_units(_func("nosuchmodule.f", [], ["import nosuchmodule"]))
    assert unit.wait(timeout=60) == rp.FAILED
    assert "ModuleNotFoundError: No module named 'nosuchmodule'" in unit.stderr


def test_a_func_unit_must_name_a_callable_and_has_no_function():
    with pytest.raises(rp.BadParameter, match="must name a callable for a FUNC unit"):
        _func("/bin/echo", []).validate()
    with pytest.raises(rp.BadParameter, match="cannot be set for a FUNC unit"):
        rp.ComputeUnitDescription(function=print, cpu_process_type=rp.FUNC).validate()
    with pytest.raises(rp.BadParameter, match="arguments"):
        _func("max", [{"not": "a scalar"}])
