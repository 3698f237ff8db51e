"""Fork launch of units: real processes, started by launcher processes, collected with
reap()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from rp_executor.agent.executing import MAX_IO_LOGLENGTH, SHORTENED, Finished, ForkExecutor, tail
from rp_executor.agent.scheduler import NodeSlot, Slots

CPU = Slots([NodeSlot("localhost", (0,), ())])


@pytest.fixture
def ex(tmp_path):
    executor = ForkExecutor(tmp_path / "pilot", base_env={"RP_SESSION_ID": "rp.session.x",
                                                          "RP_PILOT_ID": "pilot.0000"})
    yield executor
    executor.kill_all()


def unit(uid: str, executable: str, *arguments: str, **descr) -> dict:
    return {"uid": uid, "description": {"executable": executable, "arguments": list(arguments), **descr}}


def reap_all(ex: ForkExecutor, n: int = 1, timeout: float = 10.0) -> dict[str, Finished]:
    """Call reap() until ``n`` results arrived, as the agent loop would."""
    results: dict[str, Finished] = {}
    deadline = time.monotonic() + timeout
    while len(results) < n:
        assert time.monotonic() < deadline, f"only {len(results)} of {n} units ended"
        results.update((r.uid, r) for r in ex.reap())
        time.sleep(0.01)
    return results


def run_one(ex: ForkExecutor, u: dict, slots: Slots = CPU) -> Finished:
    ex.launch(u, slots)
    return reap_all(ex)[u["uid"]]


def unit_pid(uid: str, timeout: float = 10.0) -> int:
    """The pid (and process group) of the process leading unit ``uid``: a
    descendant of this process with ``RP_UNIT_ID`` that leads its group."""
    deadline = time.monotonic() + timeout
    while True:
        for p in psutil.Process().children(recursive=True):
            try:
                if p.environ().get("RP_UNIT_ID") == uid and os.getpgid(p.pid) == p.pid:
                    return p.pid
            except (psutil.Error, ProcessLookupError):
                continue
        assert time.monotonic() < deadline, f"no process of {uid}"
        time.sleep(0.02)


def live_group_members(pgid: int) -> list[psutil.Process]:
    """Processes of the group that are not zombies (PID 1 may reap them late)."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return found


def wait_group_gone(pgid: int, timeout: float = 2.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := live_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# -- output, arguments, environment ------------------------------------------------


def test_echo_prints_its_arguments_into_the_unit_sandbox(ex, tmp_path):
    res = run_one(ex, unit("unit.000000", "/bin/echo", "hello", "world"))
    assert (res.exit_code, res.stdout, res.stderr, res.canceled) == (0, "hello world\n", "", False)
    assert res.slots == CPU
    assert res.started <= res.stopped
    assert res.sandbox == tmp_path / "pilot" / "unit.000000"
    assert (res.sandbox / "STDOUT").read_text() == "hello world\n"


def test_unit_environment_has_rp_variables_and_the_description_environment(ex):
    res = run_one(ex, unit("unit.000001", "/bin/sh", "-c",
                           "'echo $RP_UNIT_ID $RP_UNIT_NAME $RP_SESSION_ID $RP_PILOT_ID $TEST $RP_UNIT_SANDBOX'",
                           name="greeter", environment={"TEST": "jabberwocky"}))
    words = res.stdout.split()
    assert words[:5] == ["unit.000001", "greeter", "rp.session.x", "pilot.0000", "jabberwocky"]
    assert words[5].endswith("/pilot/unit.000001")


def test_arguments_are_double_quoted_so_variables_expand(ex):
    # RP's example: /bin/echo with argument '$RP_UNIT_ID greets $TEST'
    res = run_one(ex, unit("unit.000002", "/bin/echo", "$RP_UNIT_ID greets $TEST",
                           environment={"TEST": "world"}))
    assert res.stdout == "unit.000002 greets world\n"


def test_single_quoted_arguments_pass_and_inner_double_quotes_are_kept(ex):
    # RP 0.50 double-quotes every argument not wrapped in single quotes, escaping
    # the '"' inside: '"c  d"' reaches echo with its quotes
    res = run_one(ex, unit("unit.000003", "/bin/echo", "'a   b'", '"c  d"'))
    assert res.stdout == 'a   b "c  d"\n'


def test_plain_arguments_run_without_a_shell_script(ex):
    res = run_one(ex, unit("unit.000004", "/bin/echo", "x=1,y:2@h/p%^+"))
    assert res.stdout == "x=1,y:2@h/p%^+\n"
    assert not (res.sandbox / "unit.000004.sh").exists()


def test_shell_builtin_executable_goes_through_the_shell(ex):
    res = run_one(ex, unit("unit.000005", "exit", "3"))
    assert res.exit_code == 3


def test_omp_threads_and_cuda_devices_follow_the_slots(ex, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slots = Slots([NodeSlot("localhost", (0, 1, 2, 3), (1, 3))])
    res = run_one(ex, unit("unit.000006", "/bin/sh", "-c", "'echo $OMP_NUM_THREADS $CUDA_VISIBLE_DEVICES'",
                           cpu_processes=1, cpu_threads=4, gpu_processes=2), slots)
    assert res.stdout == "4 1,3\n"


def test_cuda_devices_map_through_the_blocks_own_visible_devices(tmp_path, monkeypatch):
    # the agent's environment when it starts is the block's
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    ex = ForkExecutor(tmp_path / "pilot")
    try:
        slots = Slots([NodeSlot("localhost", (0,), (1, 3))])
        res = run_one(ex, unit("unit.000007", "/usr/bin/env"), slots)
        assert "CUDA_VISIBLE_DEVICES=5,7\n" in res.stdout
    finally:
        ex.kill_all()


def test_custom_stdout_and_stderr_names_and_sandbox(ex, tmp_path):
    res = run_one(ex, unit("unit.000008", "/bin/sh", "-c", "'echo out; echo err >&2'",
                           stdout="my.out", stderr="my.err", sandbox="shared/dir"))
    assert (res.stdout, res.stderr) == ("out\n", "err\n")
    assert (tmp_path / "pilot" / "shared" / "dir" / "my.out").read_text() == "out\n"


# -- pre_exec / post_exec ------------------------------------------------------------


def test_pre_exec_and_post_exec_run_around_the_command_in_the_same_shell(ex):
    res = run_one(ex, unit("unit.000010", "/bin/echo", "$GREETING",
                           pre_exec=["export GREETING=hi", "echo pre > pre.txt  # a comment"],
                           post_exec=["echo post"]))
    assert res.exit_code == 0
    assert res.stdout == "hi\npost\n"
    assert (res.sandbox / "pre.txt").read_text() == "pre\n"


def test_failing_pre_exec_fails_the_unit_before_the_command(ex):
    res = run_one(ex, unit("unit.000011", "/bin/echo", "never", pre_exec=["false", "echo no"]))
    assert res.exit_code == 1
    assert res.stdout == ""
    assert "pre_exec failed: false" in res.stderr


def test_failing_post_exec_fails_the_unit(ex):
    res = run_one(ex, unit("unit.000012", "/bin/true", post_exec=["test -e missing"]))
    assert res.exit_code == 1
    assert "post_exec failed: test -e missing" in res.stderr


def test_post_exec_keeps_the_commands_exit_code(ex):
    res = run_one(ex, unit("unit.000013", "/bin/sh", "-c", "'exit 7'", post_exec=["true"]))
    assert res.exit_code == 7


# -- failures ------------------------------------------------------------------------


def test_false_exits_with_1(ex):
    assert run_one(ex, unit("unit.000020", "/bin/false")).exit_code == 1


def test_missing_executable_gives_127_and_explains_in_stderr(ex):
    res = run_one(ex, unit("unit.000021", "/bin/data"))
    assert res.exit_code == 127
    assert "rp_executor: cannot execute '/bin/data': No such file or directory" in res.stderr
    assert "No such file or directory" in (res.sandbox / "STDERR").read_text()
    assert ex.running == 0


def test_missing_executable_through_the_shell_also_gives_127(ex):
    res = run_one(ex, unit("unit.000022", "/bin/data", "$X"))
    assert res.exit_code == 127
    assert "No such file or directory" in res.stderr


def test_non_executable_file_gives_126(ex, tmp_path):
    script = tmp_path / "not_executable.sh"
    script.write_text("echo hi\n")
    res = run_one(ex, unit("unit.000023", str(script)))
    assert res.exit_code == 126
    assert "Permission denied" in res.stderr


def test_description_without_executable_fails_the_unit_without_raising(ex):
    res = run_one(ex, {"uid": "unit.000024", "description": {"arguments": []}})
    assert res.exit_code == 1
    assert "executable" in res.stderr


def test_environment_the_os_cannot_take_fails_the_unit_without_raising(ex):
    res = run_one(ex, unit("unit.000026", "/bin/true", environment={"A=B": "x"}))
    assert res.exit_code == 1
    assert "rp_executor: invalid unit description" in res.stderr
    assert ex.running == 0


def test_sandbox_path_taken_by_a_file_fails_the_unit(ex, tmp_path):
    (tmp_path / "pilot").mkdir()
    (tmp_path / "pilot" / "unit.000027").write_text("in the way\n")
    res = run_one(ex, unit("unit.000027", "/bin/true"))
    assert res.exit_code == 1
    assert "cannot create unit sandbox" in res.stderr


def test_description_the_executor_cannot_use_fails_the_unit_without_raising(ex):
    res = run_one(ex, unit("unit.000028", "/bin/true", sandbox=5))
    assert res.exit_code == 1
    assert res.stderr.startswith("rp_executor: cannot launch")
    assert ex.running == 0


def test_unit_killed_by_a_signal_reports_minus_signum(ex):
    ex.launch(unit("unit.000025", "/bin/sleep", "10"), CPU)
    pid = unit_pid("unit.000025")
    os.kill(pid, signal.SIGKILL)
    res = reap_all(ex)["unit.000025"]
    assert (res.exit_code, res.canceled) == (-signal.SIGKILL, False)


def test_a_unit_whose_leader_is_killed_leaves_no_process(ex):
    # the shell running pre_exec is killed: its command there does not run on
    ex.launch(unit("unit.000026", "/bin/echo", "never", pre_exec=["sleep 100"]), CPU)
    pgid = unit_pid("unit.000026")
    while len(live_group_members(pgid)) < 2:   # the shell starts its sleep
        time.sleep(0.02)
    os.kill(pgid, signal.SIGKILL)
    res = reap_all(ex)["unit.000026"]
    assert (res.exit_code, res.canceled) == (-signal.SIGKILL, False)
    assert wait_group_gone(pgid) == []


def test_background_children_of_a_unit_that_exits_are_left_alone(ex):
    # as in RADICAL-Pilot: a unit may leave a process behind on purpose
    ex.launch(unit("unit.000027", "/bin/sh", "-c", "'sleep 100 & echo started'"), CPU)
    res = reap_all(ex)["unit.000027"]
    assert (res.exit_code, res.stdout) == (0, "started\n")
    left = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.environ().get("RP_UNIT_ID") == "unit.000027" and \
                    p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.Error:
            continue
    try:
        assert [p.name() for p in left] == ["sleep"]
    finally:
        for p in left:
            p.kill()


# -- output tails ----------------------------------------------------------------------


def test_long_stdout_is_shortened_to_its_tail(ex):
    res = run_one(ex, unit("unit.000030", "/bin/sh", "-c", "'seq 1 2000'"))
    assert res.stdout.startswith(SHORTENED)
    assert len(res.stdout) == len(SHORTENED) + MAX_IO_LOGLENGTH
    assert res.stdout.endswith("1999\n2000\n")


def test_binary_stdout_is_reported_as_binary(ex):
    res = run_one(ex, unit("unit.000031", "/bin/sh", "-c", r"'printf \\377\\376\\000binary'"))
    assert res.stdout == "unit stdout is binary -- use file staging"
    assert res.stderr == ""


def test_tail_reads_multibyte_text_cut_in_the_middle_of_a_character(tmp_path):
    f = tmp_path / "out"
    f.write_text("é" * 3000, encoding="utf-8")  # 6000 bytes, window starts mid-character
    text = tail(f)
    assert text == SHORTENED + "é" * MAX_IO_LOGLENGTH


def test_tail_of_a_short_file_is_the_whole_file(tmp_path):
    f = tmp_path / "out"
    f.write_text("x" * MAX_IO_LOGLENGTH)
    assert tail(f) == "x" * MAX_IO_LOGLENGTH
    assert tail(tmp_path / "missing") == ""


def test_binary_stderr_names_stderr(tmp_path):
    f = tmp_path / "err"
    f.write_bytes(b"\xff\xfe")
    assert tail(f, "stderr") == "unit stderr is binary -- use file staging"


# -- cancel / kill_all ------------------------------------------------------------------


def test_cancel_kills_the_whole_process_group(ex):
    ex.launch(unit("unit.000040", "/bin/sh", "-c", "'sleep 100 & sleep 100'"), CPU)
    pgid = unit_pid("unit.000040")
    while len(live_group_members(pgid)) < 2:   # the shell starts its sleeps
        time.sleep(0.02)
    assert ex.cancel("unit.000040") is True
    res = reap_all(ex)["unit.000040"]
    assert res.canceled is True
    assert res.exit_code == -signal.SIGTERM
    assert wait_group_gone(pgid) == []
    assert ex.running == 0


def test_cancel_can_follow_launch_at_once(ex):
    ex.launch(unit("unit.000043", "/bin/sleep", "100"), CPU)
    assert ex.running == 1
    assert ex.cancel("unit.000043") is True
    res = reap_all(ex)["unit.000043"]
    assert (res.exit_code, res.canceled) == (-signal.SIGTERM, True)


def test_cancel_escalates_to_sigkill_after_the_grace(tmp_path):
    ex = ForkExecutor(tmp_path, kill_grace=0.3)
    try:
        # the script's shell and its children ignore SIGTERM
        ex.launch(unit("unit.000041", "/bin/sleep", "100", pre_exec=["trap '' TERM", "sleep 100 &"]), CPU)
        pgid = unit_pid("unit.000041")
        while len(live_group_members(pgid)) < 2:   # the shell starts its sleep
            time.sleep(0.02)
        t0 = time.monotonic()
        assert ex.cancel("unit.000041")
        assert 0 < ex.reap_timeout <= 0.3
        res = reap_all(ex)["unit.000041"]
        assert time.monotonic() - t0 >= 0.3
        assert res.canceled and res.exit_code == -signal.SIGKILL
        assert wait_group_gone(pgid) == []
    finally:
        ex.kill_all()


def test_cancel_of_an_unknown_or_finished_unit_returns_false(ex):
    assert ex.cancel("unit.nope") is False
    ex.launch(unit("unit.000042", "/bin/true"), CPU)
    time.sleep(0.3)
    assert ex.cancel("unit.000042") is False
    res = reap_all(ex)["unit.000042"]
    assert (res.exit_code, res.canceled) == (0, False)


def test_kill_all_leaves_no_process_and_reports_every_unit(ex):
    for i in range(3):
        ex.launch(unit(f"unit.00005{i}", "/bin/sh", "-c", "'sleep 100 & sleep 100'"), CPU)
    ex.launch(unit("unit.000059", "/bin/data"), CPU)
    pgids = [unit_pid(f"unit.00005{i}") for i in range(3)]
    results = {r.uid: r for r in ex.kill_all()}
    assert set(results) == {"unit.000050", "unit.000051", "unit.000052", "unit.000059"}
    assert all(results[f"unit.00005{i}"].canceled for i in range(3))
    assert results["unit.000059"].exit_code == 127
    assert ex.running == 0
    for pgid in pgids:
        assert wait_group_gone(pgid) == []
    assert ex.reap() == []


def test_many_units_run_concurrently_and_are_all_reaped(tmp_path):
    ex = ForkExecutor(tmp_path, launchers=2)
    try:
        for i in range(50):
            ex.launch(unit(f"unit.{i:06d}", "/bin/echo", str(i)),
                      Slots([NodeSlot("localhost", (i % 4,), ())]))
        results = reap_all(ex, 50)
        assert {r.stdout for r in results.values()} == {f"{i}\n" for i in range(50)}
        assert ex.running == 0
    finally:
        ex.kill_all()


def test_units_are_reaped_while_another_child_of_the_agent_is_a_zombie(ex):
    # the agent's function workers and staging tools are its children too,
    # reaped by their own code: one that ended must not hide the units' ends
    other = subprocess.Popen(["/bin/true"])
    try:
        deadline = time.monotonic() + 5
        while psutil.Process(other.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for i in range(3):
            ex.launch(unit(f"unit.00007{i}", "/bin/echo", str(i)), CPU)
        results = reap_all(ex, 3)
        assert {r.stdout for r in results.values()} == {"0\n", "1\n", "2\n"}
        # still there for its owner to reap
        assert os.waitid(os.P_PID, other.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    finally:
        other.wait()


# -- launchers ---------------------------------------------------------------------------


def launcher_of(pid: int) -> psutil.Process:
    """The launcher that started the unit process ``pid``, checked to be one."""
    parent = psutil.Process(pid).parent()
    assert "rp_executor.agent.launcher" in " ".join(parent.cmdline()), parent.cmdline()
    return parent


def test_units_on_different_cores_start_in_different_launchers_children_of_the_agent(tmp_path):
    ex = ForkExecutor(tmp_path / "pilot", launchers=2)
    try:
        for core in (0, 1):
            ex.launch(unit(f"unit.00008{core}", "/bin/sleep", "100"),
                      Slots([NodeSlot("localhost", (core,), ())]))
        launchers = [launcher_of(unit_pid(f"unit.00008{core}")) for core in (0, 1)]
        assert launchers[0].pid != launchers[1].pid
        assert all(la.ppid() == os.getpid() for la in launchers)
        # the pilot's sweep finds them by the pilot sandbox on their command line
        assert all(str(tmp_path / "pilot") in la.cmdline() for la in launchers)
        assert ex.filenos() and len(ex.filenos()) == 2
    finally:
        results = {r.uid: r for r in ex.kill_all()}
    assert all(r.canceled for r in results.values()) and len(results) == 2
    assert [la for la in launchers if la.is_running() and
            la.status() != psutil.STATUS_ZOMBIE] == []


def test_a_killed_launcher_fails_its_units_and_the_next_unit_gets_a_new_one(ex):
    ex.launch(unit("unit.000090", "/bin/sleep", "100"), CPU)
    pid = unit_pid("unit.000090")
    launcher = launcher_of(pid)
    try:
        launcher.kill()
        res = reap_all(ex)["unit.000090"]
    finally:
        os.killpg(pid, signal.SIGKILL)   # its launcher could not end it
    assert (res.exit_code, res.canceled) == (1, False)
    assert "the launcher of the unit ended" in res.stderr
    assert run_one(ex, unit("unit.000091", "/bin/echo", "again")).stdout == "again\n"


def test_a_launcher_told_to_terminate_ends_and_reports_its_units(ex):
    ex.launch(unit("unit.000092", "/bin/sleep", "100"), CPU)
    pgid = unit_pid("unit.000092")
    launcher_of(pgid).terminate()
    res = reap_all(ex)["unit.000092"]
    assert (res.exit_code, res.canceled) == (-signal.SIGTERM, False)
    assert wait_group_gone(pgid) == []


def test_units_end_with_their_agent_even_when_it_is_killed(tmp_path):
    # an "agent" process with an executor: SIGKILL ends it, and its launcher, seeing
    # its requests end, ends the unit's whole group
    agent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from rp_executor.agent.executing import ForkExecutor
        from rp_executor.agent.scheduler import NodeSlot, Slots
        ex = ForkExecutor({str(tmp_path)!r})
        ex.launch({{"uid": "unit.000093", "description": {{
            "executable": "/bin/sh", "arguments": ["-c", "'sleep 100 & sleep 100'"]}}}},
            Slots([NodeSlot("localhost", (0,), ())]))
        print("launched", flush=True)
        time.sleep(100)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout.readline() == "launched\n"
        pgid = unit_pid("unit.000093")
        while len(live_group_members(pgid)) < 2:   # the shell starts its sleeps
            time.sleep(0.02)
        agent.kill()
        agent.wait()
        assert wait_group_gone(pgid, timeout=30) == []
    finally:
        agent.kill()
        agent.wait()
        agent.stdout.close()
