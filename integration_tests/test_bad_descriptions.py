"""Invalid descriptions are refused at submission, naming the attribute; nothing
already submitted is lost."""

from __future__ import annotations

import pytest

import rp_executor as rp
from rp_executor.exceptions import BadParameter
from support import echo, sleep


def _in_place_bad_arguments():
    d = echo("x")
    d.arguments.append(5)  # set in place, so only submit's validation can see it
    return d


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad, attribute", [
    ({"executable": "/bin/echo", "argumnets": ["x"]}, "argumnets"),
    ({"executable": "/bin/echo", "cpu_threads": 0}, "cpu_threads"),
    ({"executable": "/bin/echo", "environment": {"A": 1}}, "environment"),
    ({"arguments": ["no executable"]}, "executable"),
    (_in_place_bad_arguments, "arguments"),
])
def test_invalid_unit_descriptions_raise_naming_the_attribute(umgr, bad, attribute):
    earlier = umgr.submit_units([sleep(0.5), echo("earlier")])
    known = set(umgr.list_units())
    bad = bad() if callable(bad) else bad

    with pytest.raises(BadParameter) as err:
        umgr.submit_units(bad)
    assert err.value.attribute == attribute
    assert attribute in str(err.value)

    # a list with one bad description submits none of it
    with pytest.raises(BadParameter) as err:
        umgr.submit_units([echo("good"), bad])
    assert err.value.attribute == attribute
    assert "descriptions[1]" in str(err.value)
    assert set(umgr.list_units()) == known

    assert umgr.wait_units(timeout=30) == [rp.DONE, rp.DONE]
    assert earlier[1].stdout == "earlier\n"
    later = umgr.submit_units(echo("later"))
    assert later.wait(timeout=30) == rp.DONE


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad, attribute", [
    ({"resource": "local.localhost", "cores": 0, "runtime": 10}, "cores"),
    ({"resource": "local.localhost", "cores": 1}, "runtime"),
    ({"cores": 1, "runtime": 10}, "resource"),
    ({"resource": "local.localhost", "cores": 1, "runtime": 10, "gpu": 1}, "gpu"),
])
def test_invalid_pilot_descriptions_raise_naming_the_attribute(pmgr, umgr, pilot, bad,
                                                               attribute):
    unit = umgr.submit_units(sleep(0.5))
    with pytest.raises(BadParameter) as err:
        pmgr.submit_pilots(bad)
    assert err.value.attribute == attribute
    assert attribute in str(err.value)
    assert pmgr.list_pilots() == [pilot.uid]
    assert unit.wait(timeout=30) == rp.DONE
    assert pilot.state == rp.PMGR_ACTIVE
