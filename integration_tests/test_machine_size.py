"""A local pilot fits this machine unless it says it oversubscribes."""

from __future__ import annotations

import os

import pytest

import rp_executor as rp
from rp_executor.agent.resource_manager import detect_gpus
from rp_executor.exceptions import BadParameter

CORES = len(os.sched_getaffinity(0))


def local(**kw) -> rp.ComputePilotDescription:
    return rp.ComputePilotDescription(resource="local.localhost", runtime=10, **kw)


@pytest.mark.timeout(60)
def test_a_local_pilot_larger_than_this_machine_is_refused_naming_what_is_allowed(pmgr):
    with pytest.raises(BadParameter) as err:
        pmgr.submit_pilots([local(cores=1), local(cores=CORES + 1)])
    assert str(err.value) == (
        f"descriptions[1].cores: {CORES + 1} is more than the {CORES} cores of this "
        f"machine (local.localhost); allowed: 1..{CORES}, or set oversubscribe=True")
    assert (err.value.attribute, err.value.value) == ("cores", CORES + 1)

    gpus = detect_gpus(os.environ)
    with pytest.raises(BadParameter) as err:
        pmgr.submit_pilots({"resource": "local.localhost", "runtime": 10, "cores": 1,
                            "gpus": gpus + 1})
    allowed = f"0..{gpus}" if gpus else "0"
    assert str(err.value) == (
        f"descriptions[0].gpus: {gpus + 1} is more than the {gpus} GPUs of this machine "
        f"(local.localhost); allowed: {allowed}, or set oversubscribe=True")
    assert (err.value.attribute, err.value.value) == ("gpus", gpus + 1)
    assert pmgr.list_pilots() == []      # nothing was launched
