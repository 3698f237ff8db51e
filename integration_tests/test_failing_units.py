"""Units that fail at run time end FAILED with the reason; the others go on."""

from __future__ import annotations

import pytest

import rp_executor as rp
from support import echo


@pytest.mark.timeout(60)
def test_failing_and_missing_executables_fail_alone(umgr):
    units = umgr.submit_units([
        echo("before"),
        rp.ComputeUnitDescription(executable="/bin/false"),
        rp.ComputeUnitDescription(executable="/bin/data", arguments=["x"]),
        # through the shell (pre_exec makes it a script): bash reports the missing file
        rp.ComputeUnitDescription(executable="/bin/data", pre_exec=["true"]),
        rp.ComputeUnitDescription(executable="/bin/sh",
                                  arguments=["-c", "'echo broken >&2; exit 3'"]),
        echo("after"),
    ])
    umgr.wait_units(timeout=30)
    before, false, missing, missing_sh, exit3, after = units

    assert (before.state, before.exit_code, before.stdout) == (rp.DONE, 0, "before\n")
    assert (after.state, after.exit_code, after.stdout) == (rp.DONE, 0, "after\n")

    assert false.state == rp.FAILED
    assert false.exit_code == 1

    assert missing.state == rp.FAILED
    assert missing.exit_code == 127
    assert "/bin/data" in missing.stderr and "No such file" in missing.stderr, missing.stderr

    assert missing_sh.state == rp.FAILED
    assert missing_sh.exit_code == 127
    assert "/bin/data" in missing_sh.stderr and "No such file" in missing_sh.stderr, \
        missing_sh.stderr

    assert exit3.state == rp.FAILED
    assert exit3.exit_code == 3
    assert exit3.stderr == "broken\n"
