"""The rest of RADICAL-Pilot 0.50's method set: validity, metadata, the journal as the
session's database, gathering the session's files, and the agent's output files."""

from __future__ import annotations

import json
import os

import pytest

import rp_executor as rp


@pytest.mark.timeout(120)
def test_validity_metadata_and_the_journal_as_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session = rp.Session()
    pmgr, umgr = rp.PilotManager(session), rp.UnitManager(session)
    try:
        assert session.is_valid() and pmgr.is_valid() and umgr.is_valid(term=False)
        session.inject_metadata({"campaign": "c1", "n": 3})
        session.inject_metadata({"campaign": "c2"})
        with pytest.raises(rp.BadParameter, match="inject_metadata: expected a dict; "
                                                  "got list"):
            session.inject_metadata(["not", "a", "dict"])
        assert session.dburl == f"sqlite:///{session.path}/session.sqlite"
        assert session.as_dict()["dburl"] == session.dburl
        db = session.get_db()
        try:
            rows = db.execute("SELECT data FROM metadata ORDER BY seq").fetchall()
            managers = {uid for (uid,) in db.execute("SELECT uid FROM managers")}
        finally:
            db.close()
        assert [json.loads(r) for (r,) in rows] == [{"campaign": "c1", "n": 3},
                                                    {"campaign": "c2"}]
        assert managers == {pmgr.uid, umgr.uid}
    finally:
        session.close()
    assert not session.is_valid() and not pmgr.is_valid() and not umgr.is_valid()


@pytest.mark.timeout(120)
def test_the_agent_writes_its_output_files_and_fetch_gathers_them(session, pmgr, tmp_path):
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=1, runtime=10, output="agent.out",
        error="agent.err"))
    assert pilot.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, pilot.log
    umgr = rp.UnitManager(session)
    umgr.add_pilots(pilot)
    unit = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/true"))
    assert unit.wait(timeout=60) == rp.DONE
    for name in ("agent.out", "agent.err"):
        assert os.path.isfile(os.path.join(pilot.pilot_sandbox, name)), name
    with open(os.path.join(pilot.pilot_sandbox, "agent.prof"), "w") as f:
        f.write("1.0,sync_abs,agent,MainThread,pilot.0000,PMGR_ACTIVE,\n")
    logs = session.fetch_logfiles()
    assert {os.path.basename(p) for p in logs} >= {"agent.log", "agent.out", "agent.err"}
    assert all(p.startswith(os.path.join(session.path, pilot.uid)) for p in logs)
    profiles = session.fetch_profiles(tgt=tmp_path / "profiles")
    assert profiles == [str(tmp_path / "profiles" / pilot.uid / "agent.prof"),
                        str(tmp_path / "profiles" / f"{pmgr.uid}.prof"),
                        str(tmp_path / "profiles" / f"{umgr.uid}.prof")]
    assert open(profiles[0]).read().startswith("1.0,sync_abs")
    assert "agent.prof" not in {os.path.basename(p) for p in logs}
    dump = json.loads(open(session.fetch_json(tgt=tmp_path)).read())
    assert dump["uid"] == session.uid
    assert [p["uid"] for p in dump["pilots"]] == [pilot.uid]
    assert [(u["uid"], u["state"]) for u in dump["units"]] == [(unit.uid, rp.DONE)]
