"""Local staging actions between paths: byte-identical results, flags, failures."""

from __future__ import annotations

import os

import pytest

import rp_executor as rp
from rp_executor.staging import directives as sd
from rp_executor.staging import local
from rp_executor.staging.worker import Worker, resource_steps

DATA = bytes(range(256)) * 41


def _tree(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(DATA)
    (root / "sub" / "b.bin").write_bytes(DATA[::-1])
    os.chmod(root / "a.bin", 0o751)
    return root


@pytest.mark.parametrize("action", [rp.COPY, rp.TRANSFER])
def test_copy_and_transfer_give_byte_identical_files_and_trees(tmp_path, action):
    src = _tree(tmp_path / "src")
    assert local.perform(action, str(src / "a.bin"), str(tmp_path / "x/y/a.bin"),
                         rp.CREATE_PARENTS)
    assert (tmp_path / "x/y/a.bin").read_bytes() == DATA
    assert os.stat(tmp_path / "x/y/a.bin").st_mode & 0o777 == 0o751
    local.perform(action, str(src), str(tmp_path / "tree"), rp.CREATE_PARENTS | rp.RECURSIVE)
    assert (tmp_path / "tree/sub/b.bin").read_bytes() == DATA[::-1]


def test_link_makes_a_symlink_and_move_removes_the_source(tmp_path):
    src = _tree(tmp_path / "src")
    local.link(str(src / "a.bin"), str(tmp_path / "l/a.bin"), rp.CREATE_PARENTS)
    assert os.readlink(tmp_path / "l/a.bin") == str(src / "a.bin")
    assert (tmp_path / "l/a.bin").read_bytes() == DATA
    local.move(str(src / "sub"), str(tmp_path / "m/sub"), rp.CREATE_PARENTS)
    assert not (src / "sub").exists()
    assert (tmp_path / "m/sub/b.bin").read_bytes() == DATA[::-1]


def test_tarball_packs_and_unpacks_files_and_trees(tmp_path):
    src = _tree(tmp_path / "src")
    for name, what in (("f", src / "a.bin"), ("d", src)):
        tarball = tmp_path / f"{name}.tar"
        assert local.pack(str(what), str(tarball), 0)
        assert local.unpack(str(tarball), str(tmp_path / "out" / name), rp.CREATE_PARENTS)
        assert not tarball.exists()
    assert (tmp_path / "out/f").read_bytes() == DATA
    assert (tmp_path / "out/d/sub/b.bin").read_bytes() == DATA[::-1]


def test_without_create_parents_a_missing_target_directory_is_an_error(tmp_path):
    (tmp_path / "a").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="CREATE_PARENTS"):
        local.copy(str(tmp_path / "a"), str(tmp_path / "no/such/a"), 0)


def test_skip_failed_skips_a_missing_source(tmp_path):
    assert local.copy(str(tmp_path / "missing"), str(tmp_path / "t"), rp.SKIP_FAILED) is False
    assert not (tmp_path / "t").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        local.copy(str(tmp_path / "missing"), str(tmp_path / "t"), 0)


def test_run_names_the_directive_and_honours_non_fatal(tmp_path):
    fatal, soft = sd.expand([{"source": "m1", "action": rp.COPY},
                             {"source": "m2", "action": rp.COPY, "flags": rp.NON_FATAL}],
                            "input_staging")
    missing = str(tmp_path / "missing")

    def step():
        local.copy(missing, str(tmp_path / "t"), 0)
    warnings = local.run([(soft, step)])
    assert len(warnings) == 1 and "input_staging[1]" in warnings[0] and "NON_FATAL" in warnings[0]
    with pytest.raises(local.StagingError) as info:
        local.run([(fatal, step), (soft, step)])
    assert "input_staging[0]" in str(info.value) and "does not exist" in str(info.value)
    assert "'m1'" in str(info.value)


def test_resource_steps_resolve_unit_pilot_and_resource_schemes(tmp_path):
    pilot = tmp_path / "res/sess/pilot"
    (pilot / "staging_area").mkdir(parents=True)
    (tmp_path / "res/staging_area").mkdir(parents=True)
    (pilot / "staging_area/p.bin").write_bytes(DATA)
    (tmp_path / "res/staging_area/r.bin").write_bytes(DATA[:7])
    unit = pilot / "unit.000000"
    unit.mkdir()
    paths = sd.Paths(unit=str(unit), pilot=str(pilot), resource=str(tmp_path / "res"))
    ds = sd.expand([{"source": "pilot:///p.bin", "target": "unit:///in/p.bin",
                     "action": rp.COPY},
                    {"source": "resource:///r.bin", "target": "r.bin", "action": rp.LINK},
                    {"source": f"file://{pilot}/staging_area/p.bin", "target": "f.bin",
                     "action": rp.COPY}], "input_staging")
    local.run(resource_steps([d.as_wire() for d in ds], paths, "unit.000000", False))
    assert (unit / "in/p.bin").read_bytes() == DATA
    assert (unit / "r.bin").read_bytes() == DATA[:7]
    assert (unit / "f.bin").read_bytes() == DATA


def test_worker_runs_jobs_off_thread_and_reports_errors():
    woken = []
    w = Worker(wake=lambda: woken.append(1))
    w.submit("ok", lambda: 42)
    w.submit("bad", lambda: 1 / 0)
    import time
    deadline = time.monotonic() + 5
    done = []
    while len(done) < 2 and time.monotonic() < deadline:
        done += w.collect()
        time.sleep(0.01)
    w.close()
    assert {k: (r, type(e).__name__ if e else None) for k, r, e in done} == \
        {"ok": (42, None), "bad": (None, "ZeroDivisionError")}
    assert w.pending == 0 and len(woken) == 2
