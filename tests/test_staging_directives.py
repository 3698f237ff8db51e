"""Staging directives: parsing, expansion, where each step runs, URL resolution."""

from __future__ import annotations

import pytest

import rp_executor as rp
from rp_executor.staging import directives as sd

UUID = "0b6e3f3c-1b1a-4b8f-9d0e-0123456789ab"


def test_string_shorthands_expand_like_radical_pilot():
    a, b, c, d, e = sd.expand(["in.dat", "a.txt > unit:///b.txt", "b.txt < a.txt",
                               "x >> y", "y << x"], "input_staging")
    assert (a.source, a.target, a.action, a.flags) == ("in.dat", "in.dat", rp.TRANSFER,
                                                      rp.CREATE_PARENTS)
    assert (b.source, b.target) == ("a.txt", "unit:///b.txt")
    assert (c.source, c.target) == ("a.txt", "b.txt")
    assert (d.source, d.target) == ("x", "y") == (e.source, e.target)
    assert a.field == "input_staging[0]" and e.field == "input_staging[4]"


def test_dict_form_with_defaults_and_flag_lists():
    d = sd.parse({"source": "pilot:///dir/f.txt", "action": rp.LINK,
                  "flags": [rp.CREATE_PARENTS, rp.NON_FATAL]}, "input_staging[0]")
    assert d.target == "f.txt" and d.action == rp.LINK
    assert d.flags == rp.CREATE_PARENTS | rp.NON_FATAL and not d.fatal
    assert sd.parse({"source": "a", "flags": "RECURSIVE"}).flags == rp.RECURSIVE


def test_a_single_directive_is_wrapped_in_a_list():
    assert len(sd.expand("a > b", "output_staging")) == 1
    assert len(sd.expand({"source": "a"}, "output_staging")) == 1


@pytest.mark.parametrize("value, words", [
    ({"source": "a", "tgt": "b"}, ["'tgt'", "allowed keys", "source, target"]),
    ({"target": "b"}, ["source", "mandatory"]),
    ({"source": "a", "action": "Copy2"}, ["action", "Copy2", "Copy, Link, Move"]),
    ({"source": "a", "flags": 1024}, ["flags", "1024", "CREATE_PARENTS"]),
    ({"source": "a", "priority": "high"}, ["priority", "'high'", "int"]),
    ("sftp://host/x > y", ["scheme 'sftp'", "globus://"]),
    ("globus://not-a-uuid/x > y", ["collection uuid"]),
    ({"source": f"globus://{UUID}/x", "action": rp.COPY}, ["TRANSFER"]),
    ({"source": "client:///x", "action": rp.LINK}, ["client://", "TRANSFER"]),
    ("a > ", ["source > target"]),
    (42, ["must be a str", "dict"]),
])
def test_malformed_directives_raise_bad_parameter_naming_field_value_and_allowed(value, words):
    with pytest.raises(rp.BadParameter) as info:
        sd.expand([value], "input_staging")
    assert "input_staging[0]" in str(info.value)
    for w in words:
        assert w in str(info.value)


def test_plan_puts_each_action_where_it_runs():
    ins = sd.expand(["a", {"source": "b", "action": rp.COPY},
                     {"source": "c", "action": rp.TARBALL}], "input_staging")
    outs = sd.expand([{"source": "d", "action": rp.MOVE}, "e",
                      {"source": "f", "action": rp.TARBALL}], "output_staging")
    p = sd.plan(ins, outs)
    assert [d.source for d in p.client_in] == ["a", "c"]
    assert [d.source for d in p.agent_in] == ["b", "c"]
    assert [d.source for d in p.agent_out] == ["d", "f"]
    assert [d.source for d in p.client_out] == ["e", "f"]
    assert p.wire() == {"in": [d.as_wire() for d in p.agent_in],
                        "out": [d.as_wire() for d in p.agent_out]}
    assert sd.plan(sd.expand(["a"], "input_staging"), []).wire() is None
    assert sd.plan_description([], []) is None


def test_schemes_resolve_to_their_directories():
    paths = sd.Paths(client="/c", unit="/r/s/p/u", pilot="/r/s/p", resource="/r")
    assert sd.resolve("client:///a/b", paths, "unit") == "/c/a/b"
    assert sd.resolve("unit://a/b", paths, "client") == "/r/s/p/u/a/b"
    assert sd.resolve("pilot:///x", paths, "unit") == "/r/s/p/staging_area/x"
    assert sd.resolve("staging:///x", paths, "unit") == "/r/s/p/staging_area/x"
    assert sd.resolve("resource:///x", paths, "unit") == "/r/staging_area/x"
    assert sd.resolve("file:///etc/x", paths, "unit") == "/etc/x"
    assert sd.resolve("/etc/x", paths, "unit") == "/etc/x"
    assert sd.resolve("rel/x", paths, "client") == "/c/rel/x"
    assert sd.resolve(f"globus://{UUID}/~/x", paths, "unit") == sd.GlobusPath(UUID, "/~/x")
    with pytest.raises(ValueError):
        sd.resolve("client:///x", sd.Paths(unit="/u"), "unit")


def test_wire_form_round_trips():
    d = sd.parse({"source": "a", "target": "b", "action": rp.MOVE, "flags": rp.NON_FATAL},
                 "output_staging[3]")
    assert sd.Directive.from_wire(d.as_wire()) == d


def test_unit_descriptions_with_bad_directives_fail_at_submit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with rp.Session() as session:
        umgr = rp.UnitManager(session)
        with pytest.raises(rp.BadParameter, match=r"descriptions\[1\]: input_staging\[0\]"):
            umgr.submit_units([rp.ComputeUnitDescription(executable="/bin/true"),
                               rp.ComputeUnitDescription(executable="/bin/true",
                                                         input_staging=[{"src": "a"}])])
        with pytest.raises(rp.BadParameter, match="Context\\('globus'\\)"):
            umgr.submit_units(rp.ComputeUnitDescription(
                executable="/bin/true", input_staging=f"globus://{UUID}/x > x"))
        pmgr = rp.PilotManager(session)
        with pytest.raises(rp.BadParameter, match="invalid action 'Link' on pilot level"):
            pmgr.submit_pilots(rp.ComputePilotDescription(
                resource="local.localhost", cores=1, runtime=1,
                input_staging={"source": "a", "action": rp.LINK}))
        assert umgr.list_units() == [] and pmgr.list_pilots() == []
