"""Unit and pilot staging end to end on a local pilot: every action and scheme, in
and out, byte-identical; failures name the directive; the staging states are passed."""

from __future__ import annotations

import os
import shlex

import pytest

import rp_executor as rp

DATA = {name: os.urandom(3000 + i) for i, name in enumerate(
    ["t1", "t2", "t3", "tar", "copy", "link", "move", "pin", "rin"])}


def _states(unit):
    return [s for s, _ in unit.state_history]


def test_every_action_and_scheme_stages_in_and_out_byte_identical(umgr, pilot, tmp_path):
    (tmp_path / "t1.bin").write_bytes(DATA["t1"])
    (tmp_path / "t2.bin").write_bytes(DATA["t2"])
    (tmp_path / "abs").mkdir()
    (tmp_path / "abs/t3.bin").write_bytes(DATA["t3"])
    (tmp_path / "tree/sub").mkdir(parents=True)
    (tmp_path / "tree/sub/tar.bin").write_bytes(DATA["tar"])
    pilot.stage_in([{"source": "client:///t1.bin", "target": "pilot:///copy.bin"},
                    "t2.bin > pilot:///move.bin"])
    area = os.path.join(pilot.pilot_sandbox, "staging_area")
    with open(os.path.join(area, "copy.bin"), "wb") as f:
        f.write(DATA["copy"])
    with open(os.path.join(area, "move.bin"), "wb") as f:
        f.write(DATA["move"])
    os.makedirs(os.path.join(pilot.resource_sandbox, "staging_area"), exist_ok=True)
    with open(os.path.join(pilot.resource_sandbox, "staging_area", "link.bin"), "wb") as f:
        f.write(DATA["link"])
    script = ("cp t1.bin o1.bin && cp in/t2.bin o2.bin && cp t3.bin o3.bin && "
              "cp -r tree otree && cp copy.bin ocopy.bin && cp link.bin olink.bin && "
              "cp move.bin omove.bin")
    u = umgr.submit_units(rp.ComputeUnitDescription(
        executable="/bin/sh", arguments=["-c", shlex.quote(script)],
        input_staging=[
            {"source": "client:///t1.bin", "target": "unit:///t1.bin",
             "action": rp.TRANSFER},
            "t2.bin > in/t2.bin",
            f"file://{tmp_path}/abs/t3.bin",
            {"source": "tree", "target": "unit:///tree", "action": rp.TARBALL},
            {"source": "pilot:///copy.bin", "target": "unit:///copy.bin", "action": rp.COPY},
            {"source": "resource:///link.bin", "target": "link.bin", "action": rp.LINK},
            {"source": "pilot:///move.bin", "action": rp.MOVE}],
        output_staging=[
            {"source": "unit:///o1.bin", "target": "client:///out/o1.bin",
             "action": rp.TRANSFER},
            "o2.bin",
            f"o3.bin > file://{tmp_path}/abs/o3.bin",
            {"source": "otree", "target": "client:///out/otree", "action": rp.TARBALL},
            {"source": "ocopy.bin", "target": "pilot:///ocopy.bin", "action": rp.COPY},
            {"source": "unit:///olink.bin", "target": "resource:///olink.bin",
             "action": rp.LINK},
            {"source": "omove.bin", "target": f"file://{tmp_path}/abs/omove.bin",
             "action": rp.MOVE}]))
    assert u.wait(timeout=60) == rp.DONE, (u.state, u.stderr)
    history = _states(u)
    for state in (rp.UMGR_STAGING_INPUT, rp.AGENT_STAGING_INPUT, rp.AGENT_STAGING_OUTPUT,
                  rp.UMGR_STAGING_OUTPUT):
        assert state in history
    sandbox = u.unit_sandbox
    assert os.path.islink(os.path.join(sandbox, "link.bin"))
    assert not os.path.exists(os.path.join(area, "move.bin"))   # moved
    assert (tmp_path / "out/o1.bin").read_bytes() == DATA["t1"]
    assert (tmp_path / "o2.bin").read_bytes() == DATA["t2"]
    assert (tmp_path / "abs/o3.bin").read_bytes() == DATA["t3"]
    assert (tmp_path / "out/otree/sub/tar.bin").read_bytes() == DATA["tar"]
    with open(os.path.join(area, "ocopy.bin"), "rb") as f:
        assert f.read() == DATA["copy"]
    olink = os.path.join(pilot.resource_sandbox, "staging_area", "olink.bin")
    assert os.path.islink(olink)
    with open(olink, "rb") as f:
        assert f.read() == DATA["link"]
    assert (tmp_path / "abs/omove.bin").read_bytes() == DATA["move"]
    assert not os.path.exists(os.path.join(sandbox, "omove.bin"))


def test_units_without_directives_skip_the_staging_machinery(umgr):
    u = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/true"))
    assert u.wait(timeout=30) == rp.DONE
    assert umgr._staging._stager is None and not umgr._staging.plans


@pytest.mark.parametrize("directive, words", [
    ("missing.bin", ["input_staging[0]", "'missing.bin'", "does not exist"]),
    ({"source": "pilot:///missing.bin", "action": rp.COPY},
     ["input_staging[0]", "Copy", "does not exist"]),
    ({"source": "nothing", "target": "unit:///x", "action": rp.TARBALL},
     ["input_staging[0]", "Tarball", "does not exist"]),
])
def test_a_failed_input_step_fails_the_unit_naming_the_directive(umgr, directive, words):
    u = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/true",
                                                    input_staging=[directive]))
    assert u.wait(timeout=30) == rp.FAILED
    for w in words:
        assert w in u.stderr
    assert rp.EXECUTING not in _states(u)


def test_non_fatal_and_skip_failed_directives_let_the_unit_go_on(umgr, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    u = umgr.submit_units(rp.ComputeUnitDescription(
        executable="/bin/cat", arguments=["a.txt"],
        input_staging=["a.txt",
                       {"source": "nope", "flags": rp.NON_FATAL},
                       {"source": "pilot:///nope", "action": rp.COPY, "flags": rp.SKIP_FAILED},
                       {"source": "pilot:///nope_in", "action": rp.COPY,
                        "flags": rp.NON_FATAL}],
        output_staging=[{"source": "nope.out", "flags": rp.NON_FATAL},
                        {"source": "nope2.out", "action": rp.COPY,
                         "target": "pilot:///x", "flags": rp.NON_FATAL}]))
    assert u.wait(timeout=30) == rp.DONE, u.stderr
    assert u.stdout.strip() == "a"
    assert "output_staging[0]" in u.stderr and "NON_FATAL" in u.stderr
    assert "output_staging[1]" in u.stderr
    # failed NON_FATAL input directives are reported too: the client's TRANSFER and
    # the agent's COPY
    assert "input_staging[1]" in u.stderr and "input_staging[3]" in u.stderr
    assert "input_staging[2]" not in u.stderr   # SKIP_FAILED skips quietly


@pytest.mark.parametrize("directive", [
    "never_written.txt",
    {"source": "never_written.txt", "target": "pilot:///x", "action": rp.COPY}])
def test_a_failed_output_step_fails_the_unit(umgr, directive):
    u = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/true",
                                                    output_staging=[directive]))
    assert u.wait(timeout=30) == rp.FAILED
    assert "output_staging[0]" in u.stderr and "does not exist" in u.stderr
    assert u.exit_code == 0


def test_a_failed_unit_skips_its_output_staging_as_in_radical_pilot(umgr, tmp_path):
    u = umgr.submit_units(rp.ComputeUnitDescription(
        executable="/bin/sh", arguments=["-c", shlex.quote("echo partial > out.txt; exit 3")],
        output_staging=["out.txt",
                        {"source": "out.txt", "target": "pilot:///out.txt",
                         "action": rp.COPY}]))
    assert u.wait(timeout=30) == rp.FAILED
    assert u.exit_code == 3
    assert not (tmp_path / "out.txt").exists()
    assert not os.path.exists(os.path.join(u.pilot_sandbox, "staging_area", "out.txt"))
    # the agent passes AGENT_STAGING_OUTPUT (it collects stdout and stderr) and then
    # goes straight to FAILED: no output directive runs, and the client stages nothing
    assert rp.UMGR_STAGING_OUTPUT not in _states(u)


def test_function_units_stage_too(umgr, tmp_path):
    (tmp_path / "n.txt").write_text("41")
    u = umgr.submit_units(rp.ComputeUnitDescription(
        function="builtins:len", args=["abc"],
        input_staging={"source": "n.txt", "target": "pilot:///n.txt"},
        output_staging={"source": "pilot:///n.txt", "target": "back/n.txt"}))
    assert u.wait(timeout=30) == rp.DONE, u.stderr
    assert u.return_value == 3
    assert (tmp_path / "back/n.txt").read_text() == "41"


def test_pilot_stage_in_and_out_and_description_staging(pmgr, session, tmp_path):
    (tmp_path / "shared.dat").write_bytes(DATA["pin"])
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/f.dat").write_bytes(DATA["rin"])
    p = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=1, runtime=5,
        input_staging=["shared.dat", {"source": "dir", "target": "resource:///dir",
                                      "action": rp.TARBALL}],
        output_staging=["pilot:///result.dat > results/result.dat"]))
    assert p.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, (p.state, p.log)
    area = os.path.join(p.pilot_sandbox, "staging_area")
    with open(os.path.join(area, "shared.dat"), "rb") as f:
        assert f.read() == DATA["pin"]
    with open(os.path.join(p.resource_sandbox, "staging_area/dir/f.dat"), "rb") as f:
        assert f.read() == DATA["rin"]
    p.stage_in({"source": "shared.dat", "target": "pilot:///sub/again.dat"})
    umgr = rp.UnitManager(session)
    umgr.add_pilots(p)
    u = umgr.submit_units(rp.ComputeUnitDescription(
        executable="/bin/sh", arguments=["-c", shlex.quote(f"cat {area}/sub/again.dat > {area}/result.dat")]))
    assert u.wait(timeout=30) == rp.DONE
    p.stage_out("pilot:///result.dat > copy/result.dat")
    assert (tmp_path / "copy/result.dat").read_bytes() == DATA["pin"]
    with pytest.raises(RuntimeError, match="pilot staging failed: stage_in\\[0\\]"):
        p.stage_in("no_such_file")
    with pytest.raises(rp.BadParameter, match="invalid action 'Copy' on pilot level"):
        p.stage_in({"source": "a", "action": rp.COPY})
    pmgr.cancel_pilots(p.uid)
    assert (tmp_path / "results/result.dat").read_bytes() == DATA["pin"]
