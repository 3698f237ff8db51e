#!/usr/bin/env python3
"""A workflow on a local pilot, written as RADICAL-Pilot's getting-started examples are.

It estimates pi by Monte Carlo: 32 units each throw darts with their own seed and print
how many hit; the client adds the counts. One unit deliberately runs a missing
executable to show how a failing unit is reported while the others go on. As in RADICAL-Pilot,
arguments are shell text (``$VAR`` expands), so the script is quoted. In a terminal a bar
shows the units ending (``wait_units(progress=True)``).

Run it with ``make demo`` (or ``python examples/getting_started.py`` in the venv).
"""

import shlex
import sys

import rp_executor as rp

THROWER = """
import random, sys
rng = random.Random(int(sys.argv[1]))
n = int(sys.argv[2])
print(sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(n)))
"""


def main() -> int:
    darts = 200_000
    session = rp.Session()
    try:
        pmgr = rp.PilotManager(session)
        pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
            resource="local.localhost", cores=2, runtime=10))
        umgr = rp.UnitManager(session)
        umgr.add_pilots(pilot)

        cuds = [rp.ComputeUnitDescription(executable=sys.executable,
                                          arguments=["-c", shlex.quote(THROWER), str(seed), str(darts)])
                for seed in range(32)]
        cuds.append(rp.ComputeUnitDescription(executable="/bin/no-such-program"))
        units = umgr.submit_units(cuds)
        # a bar of the units that ended, in a terminal or a notebook (nothing otherwise)
        umgr.wait_units(progress=True)

        done = [u for u in units if u.state == rp.DONE]
        failed = [u for u in units if u.state == rp.FAILED]
        hits = sum(int(u.stdout) for u in done)
        print(umgr)
        print(f"pilot {pilot.uid}: {pilot.state}, {len(done)} units DONE, "
              f"{len(failed)} FAILED")
        for u in failed:
            print(f"  {u.uid} failed with exit code {u.exit_code}: {u.stderr.strip()}")
        print(f"pi ~ {4 * hits / (darts * len(done)):.5f}")
        print(f"journal: {session.path}/session.sqlite")
        return 0 if len(done) == 32 and len(failed) == 1 else 1
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
