"""The journal holds every transition of every pilot and unit, in order."""

from __future__ import annotations

import pytest

import rp_executor as rp
from support import echo, sleep


@pytest.mark.timeout(60)
def test_journal_holds_every_transition_as_in_state_history(session, pmgr, pilot, umgr):
    units = umgr.submit_units([echo(str(i)) for i in range(10)]
                              + [rp.ComputeUnitDescription(executable="/bin/false"),
                                 sleep(100)])
    umgr.wait_units([u.uid for u in units[:-1]], timeout=30)
    umgr.cancel_units(units[-1].uid)
    pilot.cancel()
    assert [u.state for u in units] == [rp.DONE] * 10 + [rp.FAILED, rp.CANCELED]

    session.journal.flush()
    rows = session.journal.transitions()
    by_uid: dict[str, list] = {}
    for kind, uid, state, ts in rows:
        by_uid.setdefault(uid, []).append((kind, state, ts))

    assert set(by_uid) == {pilot.uid} | {u.uid for u in units}
    for obj, kind in [(pilot, "pilot")] + [(u, "unit") for u in units]:
        journaled = by_uid[obj.uid]
        assert {k for k, _, _ in journaled} == {kind}
        assert [(s, t) for _, s, t in journaled] == obj.state_history, obj.uid
        assert session.journal.transitions(obj.uid) == \
            [(kind, obj.uid, s, t) for s, t in obj.state_history]
