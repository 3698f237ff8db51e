"""Invalid descriptions are refused at submission, naming the attribute; nothing
already submitted is lost."""

from __future__ import annotations

import gc

import pytest

import rp_executor as rp
from rp_executor.exceptions import BadParameter
from support import echo, sleep


def _in_place_bad_arguments():
    d = echo("x")
    d.arguments.append(None)  # set in place, so only submit's validation can see it
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
    ({"resource": "local.localhost", "cores": 1, "runtime": 10,
      "access_schema": "bogus"}, "access_schema"),
    ({"resource": "local.localhost", "cores": 1, "runtime": 10,
      "provider": "not a provider"}, "provider"),
    ({"resource": "local.localhost", "cores": 1, "runtime": 10,
      "provider": object()}, "provider"),
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


@pytest.mark.timeout(120)
def test_a_long_list_is_all_or_nothing_and_keeps_its_order(umgr):
    # long enough to be handed to the pilot in several chunks
    n = 5000
    many = [rp.ComputeUnitDescription(function=len, args=[[0] * (i % 7)]) for i in range(n)]
    known = set(umgr.list_units())

    with pytest.raises(BadParameter) as err:
        umgr.submit_units(many + [{"executable": "/bin/true", "cpu_threads": 0}])
    assert f"descriptions[{n}]" in str(err.value)
    assert set(umgr.list_units()) == known
    assert gc.isenabled()     # the bulk submit's collector pause ended with the error

    units = umgr.submit_units(many)
    assert len(units) == n
    assert [int(u.uid.rsplit(".", 1)[1]) for u in units] == \
        sorted(int(u.uid.rsplit(".", 1)[1]) for u in units)
    assert set(umgr.wait_units([u.uid for u in units], timeout=100)) == {rp.DONE}
    assert [u.return_value for u in units] == [i % 7 for i in range(n)]
    assert gc.isenabled()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("spoil, attribute", [
    (lambda d: d.kwargs.update({7: "x"}), "kwargs"),    # in place: not checked when set
    (lambda d: setattr(d, "function", None), "executable"),   # neither is set now
])
def test_one_bad_description_among_many_of_one_template_is_found(umgr, spoil, attribute):
    # descriptions of one shape are validated whole once; the others' function and
    # arguments are still checked, and one that changed shape is validated whole
    many = [rp.ComputeUnitDescription(function=pow, args=[2, i], kwargs={"mod": 7})
            for i in range(50)]
    spoil(many[37])
    known = set(umgr.list_units())
    with pytest.raises(BadParameter) as err:
        umgr.submit_units(many)
    assert err.value.attribute == attribute
    assert "descriptions[37]" in str(err.value)
    assert set(umgr.list_units()) == known


@pytest.mark.timeout(60)
def test_units_of_one_template_share_what_the_agent_gets_and_run_as_described(umgr):
    made = [rp.ComputeUnitDescription(function=pow, args=[2, i], name="p") for i in range(5)]
    other = rp.ComputeUnitDescription(function=pow, args=[3, 2], name="q", cpu_threads=2)
    # a manager without a pilot yet: the units wait, descriptions and all
    waiting = rp.UnitManager(umgr.session)
    units = waiting.submit_units([*made, other])
    agent = [u._description._agent for u in units]
    assert agent[:5] == [{"name": "p"}] * 5 and all(a is agent[0] for a in agent[:5])
    assert agent[5] == {"name": "q", "cpu_threads": 2}
    waiting.add_pilots(umgr.get_pilots())
    assert set(waiting.wait_units(timeout=30)) == {rp.DONE}
    assert [u.return_value for u in units] == [2 ** i for i in range(5)] + [9]
    assert [u.name for u in units] == ["p"] * 5 + ["q"]
