"""RP 0.50's argument rule end to end on a local pilot: each argument is double-quoted
(``$VAR`` expands, spaces stay inside it) unless it is empty (dropped), an operator, a
glob or wrapped in single quotes (passed as it is)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import rp_executor as rp

# prints each argument it gets as [arg]: shows where one argument ends
# one write per process: the ranks of an MPI unit share its stdout
SHOW = "'s=; for a in \"$@\"; do s=\"$s[$a]\"; done; printf \"%s\\n\" \"$s\"'"


def words(*arguments, **descr) -> rp.ComputeUnitDescription:
    """A unit that prints the arguments it gets, one ``[...]`` each."""
    return rp.ComputeUnitDescription(executable="/bin/sh",
                                     arguments=["-c", SHOW, "sh", *arguments], **descr)


def echo(*arguments, **descr) -> rp.ComputeUnitDescription:
    return rp.ComputeUnitDescription(executable="/bin/echo", arguments=list(arguments),
                                     **descr)


CASES = [
    # (description, its stdout)
    (rp.ComputeUnitDescription(executable="/bin/sh", arguments=["-c", "echo $FOO $BAR"],
                               environment={"FOO": "a", "BAR": "b"}), "a b\n"),
    (words("hello world"), "[hello world]\n"),
    (words("a", "", "b"), "[a][b]\n"),
    (words("'$HOME'"), "[$HOME]\n"),
    (words('say "hi"'), '[say "hi"]\n'),
    (words("${NOPE:-x}", "$(echo sub stitute)"), "[x][sub stitute]\n"),
    (words("*.txt", pre_exec=["touch y.txt x.txt"]), "[x.txt][y.txt]\n"),
    (words("mix", "", "$FOO", "'$BAR'", "c d", 'q"q', environment={"FOO": "a", "BAR": "b"}),
     '[mix][a][$BAR][c d][q"q]\n'),
    (echo("x is $X", pre_exec=["export X=1"]), "x is 1\n"),
    (echo("abc", "|", "tr", "a-c", "A-C"), "ABC\n"),
    (rp.ComputeUnitDescription(executable="/bin/false", arguments=["||", "echo", "rescued"]),
     "rescued\n"),
    (echo("-n", "hi", ">", "out.txt", "&&", "cat", "out.txt", "out.txt"), "hihi"),
]


@pytest.mark.timeout(90)
def test_every_rule_of_the_argument_quoting_holds_end_to_end(umgr):
    units = umgr.submit_units([d for d, _ in CASES])
    assert umgr.wait_units(timeout=60) == [rp.DONE] * len(CASES), \
        [(u.uid, u.stderr) for u in units]
    assert [u.stdout for u in units] == [out for _, out in CASES]


@pytest.mark.timeout(60)
def test_plain_arguments_are_execd_without_a_shell_and_keep_their_spaces(umgr):
    u = umgr.submit_units(echo("hello world", "", "3"))
    assert umgr.wait_units(timeout=30) == [rp.DONE], u.stderr
    assert u.stdout == "hello world 3\n"
    assert not (Path(u.unit_sandbox) / f"{u.uid}.sh").exists()


@pytest.mark.timeout(60)
def test_a_redirection_inside_one_argument_reads_and_writes_staged_files(umgr, tmp_path):
    (tmp_path / "in.dat").write_bytes(b"0123456789")
    u = umgr.submit_units(rp.ComputeUnitDescription(
        executable="/bin/sh", arguments=["-c", "wc -c < in.dat > count.txt"],
        input_staging=["in.dat"], output_staging=["count.txt > result/count.txt"]))
    assert umgr.wait_units(timeout=30) == [rp.DONE], u.stderr
    assert u.stdout == ""
    assert (tmp_path / "result" / "count.txt").read_text().strip() == "10"


@pytest.mark.timeout(90)
@pytest.mark.skipif(shutil.which("mpirun") is None and os.environ.get("CI") != "true",
                    reason="no mpirun on this machine (under CI=true this test must run)")
def test_mpi_units_get_the_same_arguments_on_every_rank(umgr):
    env = {"OMPI_MCA_btl": "self,tcp", "MSG": "hello world"}
    direct, scripted = umgr.submit_units([
        rp.ComputeUnitDescription(executable="/bin/echo", arguments=["a  b", "", "3"],
                                  cpu_processes=2, cpu_process_type=rp.MPI, environment=env),
        rp.ComputeUnitDescription(executable="/bin/sh", arguments=["-c", SHOW, "sh", "$MSG",
                                                                   "'$MSG'", 'x "y"'],
                                  cpu_processes=2, cpu_process_type=rp.MPI, environment=env),
    ])
    assert umgr.wait_units(timeout=60) == [rp.DONE, rp.DONE], (direct.stderr, scripted.stderr)
    assert direct.stdout == "a  b 3\n" * 2
    assert scripted.stdout == '[hello world][$MSG][x "y"]\n' * 2
