"""Session uids: unique on this host, found after the highest one taken today."""

from __future__ import annotations

import logging
import os
import tempfile

import pytest

from rp_executor import session as session_module
from rp_executor.session import _session_uid


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """The uid registry in a temporary directory of its own."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp))
    return tmp


def prefix_and_counter(uid: str) -> tuple[str, int]:
    prefix, _, counter = uid.rpartition(".")
    return prefix + ".", int(counter)


def test_a_new_uid_follows_the_highest_taken_today_with_its_marker_and_directory(
        registry, tmp_path):
    uid, path = _session_uid(tmp_path / "a")
    prefix, first = prefix_and_counter(uid)
    assert first == 0 and path == tmp_path / "a" / uid and path.is_dir()
    markers = registry / f"rp_executor.{uid.split('.')[3]}.sessions"
    assert (markers / uid).exists()
    for counter in (1, 2, 7, 300):
        (markers / f"{prefix}{counter:04d}").touch()
    uid, _ = _session_uid(tmp_path / "b")
    assert uid == f"{prefix}0301"
    # a session elsewhere on the host took the next one meanwhile: the one after it
    (markers / f"{prefix}0302").touch()
    assert _session_uid(tmp_path / "c")[0] == f"{prefix}0303"


def test_uids_in_different_directories_differ(registry, tmp_path):
    uids = {_session_uid(tmp_path / f"base{i}")[0] for i in range(20)}
    assert len(uids) == 20


def test_markers_of_other_days_are_removed(registry, tmp_path):
    uid, _ = _session_uid(tmp_path)
    markers = registry / f"rp_executor.{uid.split('.')[3]}.sessions"
    old = markers / uid.replace(f".{uid.split('.')[4]}.", ".000001.")
    old.touch()
    _session_uid(tmp_path)
    assert not old.exists()
    assert (markers / uid).exists()


def test_without_a_registry_uids_follow_the_directories_in_the_base(tmp_path, monkeypatch,
                                                                   caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(blocker))
    base = tmp_path / "base"
    with caplog.at_level(logging.WARNING, logger=session_module.log.name):
        uid, _ = _session_uid(base)
    assert "unique per directory only" in caplog.text
    prefix, counter = prefix_and_counter(uid)
    assert counter == 0
    os.mkdir(base / f"{prefix}0041")
    assert _session_uid(base)[0] == f"{prefix}0042"
