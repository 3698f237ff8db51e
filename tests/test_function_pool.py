"""The warm function pool: real worker processes, driven as the agent loop drives them."""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import time

import cloudpickle
import psutil
import pytest

from rp_executor.agent.function_pool import FuncResult, FunctionPool
from rp_executor.agent.scheduler import NodeSlot, Slots
from rp_executor.agent.output import SHORTENED

CPU = Slots([NodeSlot("localhost", (0,), ())])

# the workers cannot import this test module: its functions travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def sandbox(tmp_path):
    return tmp_path / "pilot"


@pytest.fixture
def pool(sandbox):
    p = FunctionPool(2, sandbox, base_env={"RP_SESSION_ID": "rp.session.x",
                                          "RP_PILOT_ID": "pilot.0000"})
    yield p
    p.close()


def collect_all(pool: FunctionPool, n: int = 1, timeout: float = 20.0) -> dict[str, FuncResult]:
    """select() on the pool's fds and collect() until ``n`` results came (the agent's loop)."""
    results: dict[str, FuncResult] = {}
    deadline = time.monotonic() + timeout
    while len(results) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(results)} of {n} units came back"
        if pool.collect_timeout is None:
            select.select(pool.filenos(), [], [], min(left, 0.1))
        results.update((r.uid, r) for r in pool.collect())
    return results


def call(pool: FunctionPool, uid: str, fn, *args, **kwargs) -> FuncResult:
    submit(pool, uid, fn, *args, **kwargs)
    return collect_all(pool)[uid]


def submit(pool: FunctionPool, uid: str, fn, *args, cpu_threads: int = 1, gpus=(), **kwargs):
    pool.submit(uid, cloudpickle.dumps(fn), cloudpickle.dumps((args, kwargs)), CPU,
                cpu_threads=cpu_threads, gpus=gpus)


def value(res: FuncResult):
    assert res.ok, res.stderr or res.traceback
    if res.result_file is not None:
        with open(res.result_file, "rb") as f:
            return pickle.load(f)
    return pickle.loads(res.result)


def worker_pids(pool: FunctionPool) -> set[int]:
    found = set()
    for p in psutil.Process().children():
        try:
            named = "rp_executor.agent.worker" in " ".join(p.cmdline())
            if named and p.status() != psutil.STATUS_ZOMBIE:
                found.add(p.pid)
        except psutil.Error:
            pass  # gone, or a zombie not yet reaped
    return found


# -- results ------------------------------------------------------------------------


def test_return_values_come_back_pickled(pool):
    res = call(pool, "unit.000000", lambda a, b=0: {"sum": a + b, "args": (a, b)}, 2, b=3)
    assert value(res) == {"sum": 5, "args": (2, 3)}
    assert res.exit_code == 0 and not res.canceled and res.slots == CPU
    assert res.exception is None and res.traceback is None and res.result_file is None
    assert res.started <= res.stopped <= time.time()


def test_unpicklable_by_pickle_return_values_use_cloudpickle(pool):
    res = call(pool, "unit.000000", lambda: (lambda x: x * 2))
    assert value(res)(21) == 42


def test_large_result_goes_to_a_file(pool, sandbox):
    res = call(pool, "unit.000000", lambda n: b"x" * n, 50 << 20)
    assert res.ok and res.result is None
    assert res.result_file == str(sandbox / "unit.000000" / "result.pkl")
    assert os.path.exists(res.result_file)
    assert value(res) == b"x" * (50 << 20)


def test_large_arguments_arrive_whole(pool):
    blob = os.urandom(8 << 20)
    res = call(pool, "unit.000000", lambda b: (len(b), __import__("zlib").crc32(b)), blob)
    assert value(res) == (len(blob), __import__("zlib").crc32(blob))


def test_unpicklable_return_value_is_an_error(pool):
    res = call(pool, "unit.000000", lambda: __import__("threading").Lock())
    assert not res.ok and res.exit_code == 1
    exc = pickle.loads(res.exception)
    assert isinstance(exc, TypeError)
    assert "return value of type _thread.lock cannot be pickled" in str(exc)


# -- exceptions ---------------------------------------------------------------------


def divide_by_zero_deep(x):
    return x / 0


def test_exceptions_keep_their_type_and_traceback(pool):
    res = call(pool, "unit.000000", divide_by_zero_deep, 1)
    assert not res.ok and res.exit_code == 1 and res.result is None
    assert isinstance(pickle.loads(res.exception), ZeroDivisionError)
    assert "divide_by_zero_deep" in res.traceback
    assert "ZeroDivisionError: division by zero" in res.traceback
    assert "worker.py" not in res.traceback  # the worker's own frame is left out


def test_custom_exception_classes_come_back(pool):
    class ShapeError(ValueError):
        pass

    def fail():
        raise ShapeError("bad shape (3, 4)")

    res = call(pool, "unit.000000", fail)
    exc = pickle.loads(res.exception)
    assert type(exc).__name__ == "ShapeError" and isinstance(exc, ValueError)
    assert str(exc) == "bad shape (3, 4)"


def test_exception_that_cannot_be_rebuilt_becomes_a_runtime_error(pool):
    class NeedsTwo(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    def fail():
        raise NeedsTwo(1, 2)

    res = call(pool, "unit.000000", fail)
    exc = pickle.loads(res.exception)
    assert isinstance(exc, RuntimeError) and "NeedsTwo" in str(exc)
    assert "NeedsTwo: 1/2" in res.traceback


def test_sys_exit_is_an_exception_not_a_death(pool):
    res = call(pool, "unit.000000", lambda: __import__("sys").exit(4))
    assert isinstance(pickle.loads(res.exception), SystemExit)
    assert value(call(pool, "unit.000001", lambda: "alive")) == "alive"


# -- output -------------------------------------------------------------------------


def chatty(n):
    import sys
    print("hello out")
    print("x" * n)
    print("hello err", file=sys.stderr)
    return n


def test_printed_output_is_captured_and_saved(pool, sandbox):
    res = call(pool, "unit.000000", chatty, 3)
    assert value(res) == 3
    assert res.stdout == "hello out\nxxx\n" and res.stderr == "hello err\n"
    assert (sandbox / "unit.000000" / "STDOUT").read_text() == res.stdout
    assert (sandbox / "unit.000000" / "STDERR").read_text() == res.stderr


def test_long_output_is_shortened_in_the_result_only(pool, sandbox):
    res = call(pool, "unit.000000", chatty, 5000)
    assert res.stdout.startswith(SHORTENED) and len(res.stdout) == len(SHORTENED) + 1024
    assert len((sandbox / "unit.000000" / "STDOUT").read_text()) == len("hello out\n") + 5001


def test_silent_units_get_no_directory(pool, sandbox):
    res = call(pool, "unit.000000", lambda: 1)
    assert res.stdout == "" and res.stderr == ""
    assert not (sandbox / "unit.000000").exists()


def test_only_stderr_gives_only_a_stderr_file(pool, sandbox):
    res = call(pool, "unit.000000", lambda: print("warn", file=__import__("sys").stderr))
    assert res.stdout == "" and res.stderr == "warn\n"
    assert not (sandbox / "unit.000000" / "STDOUT").exists()
    assert (sandbox / "unit.000000" / "STDERR").exists()


# -- environment --------------------------------------------------------------------


def env_of(*names):
    return {n: os.environ.get(n) for n in names}


@pytest.fixture
def make_pool(sandbox):
    """Pools with a chosen ``base_env``, closed at teardown."""
    pools = []

    def make(**env):
        p = FunctionPool(2, sandbox, base_env={"RP_SESSION_ID": "rp.session.x",
                                              "RP_PILOT_ID": "pilot.0000", **env})
        pools.append(p)
        return p

    yield make
    for p in pools:
        p.close()


ENV_NAMES = ("OMP_NUM_THREADS", "RP_UNIT_ID", "CUDA_VISIBLE_DEVICES", "RP_PILOT_ID",
             "RP_SESSION_ID", "RP_PILOT_SANDBOX")


def test_units_see_their_threads_ids_and_scheduled_gpu_indices(make_pool, sandbox,
                                                               monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pool = make_pool()
    submit(pool, "unit.000000", env_of, *ENV_NAMES, cpu_threads=2, gpus=[1])
    submit(pool, "unit.000001", env_of, *ENV_NAMES, gpus=[0, 2])
    envs = {uid: value(res) for uid, res in collect_all(pool, 2).items()}
    assert envs["unit.000000"] == {"OMP_NUM_THREADS": "2", "RP_UNIT_ID": "unit.000000",
                                   "CUDA_VISIBLE_DEVICES": "1", "RP_PILOT_ID": "pilot.0000",
                                   "RP_SESSION_ID": "rp.session.x",
                                   "RP_PILOT_SANDBOX": str(sandbox)}
    assert envs["unit.000001"]["CUDA_VISIBLE_DEVICES"] == "0,2"
    assert envs["unit.000001"]["OMP_NUM_THREADS"] == "1"
    # the next units on the same workers do not inherit the previous units' settings
    for i in range(2, 4):
        submit(pool, f"unit.00000{i}", env_of, *ENV_NAMES)
    for uid, res in collect_all(pool, 2).items():
        env = value(res)
        assert env["OMP_NUM_THREADS"] == "1" and env["RP_UNIT_ID"] == uid
        assert env["CUDA_VISIBLE_DEVICES"] is None


def test_gpu_indices_map_through_the_inherited_visible_devices(make_pool):
    # a batch system that gave the block devices 4, 5 and 6: the scheduler's node-local
    # index 1 is device 5, and a unit without GPUs sees the block's devices
    pool = make_pool(CUDA_VISIBLE_DEVICES="4,5,6")
    submit(pool, "unit.000000", env_of, "CUDA_VISIBLE_DEVICES", gpus=[1])
    submit(pool, "unit.000001", env_of, "CUDA_VISIBLE_DEVICES", gpus=[0, 2])
    got = {uid: value(res)["CUDA_VISIBLE_DEVICES"]
           for uid, res in collect_all(pool, 2).items()}
    assert got == {"unit.000000": "5", "unit.000001": "4,6"}
    for i in range(2, 4):
        submit(pool, f"unit.00000{i}", env_of, "CUDA_VISIBLE_DEVICES")
    assert [value(r)["CUDA_VISIBLE_DEVICES"] for r in collect_all(pool, 2).values()] == \
        ["4,5,6", "4,5,6"]


def test_user_sigint_does_not_kill_a_worker(pool):
    for i in range(2):  # both workers up and serving
        submit(pool, f"unit.x{i}", time.sleep, 0.2)
    collect_all(pool, 2)
    pids = worker_pids(pool)
    for pid in pids:
        os.kill(pid, signal.SIGINT)
    res = call(pool, "unit.000000", lambda: "fine")
    assert value(res) == "fine"
    assert worker_pids(pool) == pids


# -- deaths -------------------------------------------------------------------------


def test_worker_exit_fails_only_its_unit(pool):
    res = call(pool, "unit.000000", lambda: os._exit(3))
    assert not res.ok and res.exit_code == 3
    assert res.stderr.startswith("worker process ")
    assert "died (exit code 3) while running unit.000000" in res.stderr
    for i in range(1, 5):
        assert value(call(pool, f"unit.00000{i}", lambda: "next")) == "next"
    assert pool.size == 2 and pool.idle == 2


def test_sigkilled_worker_fails_its_unit_and_is_replaced(pool):
    res = call(pool, "unit.000000", lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert not res.ok and res.exit_code == -signal.SIGKILL
    assert "died (SIGKILL) while running unit.000000" in res.stderr
    assert value(call(pool, "unit.000001", lambda: 7)) == 7


def test_segfault_fails_its_unit_with_a_dump(pool):
    res = call(pool, "unit.000000", lambda: __import__("ctypes").string_at(0))
    assert not res.ok and res.exit_code == -signal.SIGSEGV
    assert "died (SIGSEGV) while running unit.000000" in res.stderr
    assert "Segmentation fault" in res.stderr  # faulthandler's dump from worker.<n>.err
    assert value(call(pool, "unit.000001", lambda: 8)) == 8


def test_death_of_one_worker_spares_the_other_unit(pool):
    submit(pool, "unit.000000", lambda: (time.sleep(0.5), "slow")[1])
    submit(pool, "unit.000001", lambda: os._exit(9))
    results = collect_all(pool, 2)
    assert value(results["unit.000000"]) == "slow"
    assert results["unit.000001"].exit_code == 9


def test_idle_worker_death_is_repaired(pool):
    victim = next(iter(worker_pids(pool)))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim in pool.pids:
        assert time.monotonic() < deadline, "the dead idle worker was not replaced"
        select.select(pool.filenos(), [], [], 0.1)
        assert pool.collect() == []
    assert pool.idle == 2 and pool.size == 2
    assert set(pool.pids) == worker_pids(pool)
    for i in range(2):
        submit(pool, f"unit.00000{i}", lambda: os.getpid())
    assert all(value(r) != victim for r in collect_all(pool, 2).values())


def _dead_but_not_reaped(pid: int) -> None:
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"worker {pid} did not die"
        time.sleep(0.01)


def test_a_unit_handed_to_a_worker_that_had_died_runs_in_its_replacement(pool):
    # killed while idle, the worker is handed a unit before the pool noticed: the unit
    # cannot be sent (the pipe has no reader), and runs in the fresh worker instead
    victims = sorted(worker_pids(pool))
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for pid in victims:
        _dead_but_not_reaped(pid)
    for i in range(2):
        submit(pool, f"unit.00000{i}", os.getpid)
    results = collect_all(pool, 2)
    assert all(value(r) not in victims for r in results.values())
    assert pool.size == 2 and pool.idle == 2


def test_a_unit_still_in_the_pipe_of_a_dead_worker_runs_in_its_replacement(pool):
    victim = sorted(worker_pids(pool))
    for pid in victim:
        os.kill(pid, signal.SIGSTOP)      # they cannot read what they are sent
    submit(pool, "unit.000000", os.getpid)
    submit(pool, "unit.000001", os.getpid)
    for pid in victim:
        os.kill(pid, signal.SIGKILL)
    results = collect_all(pool, 2)
    assert all(value(r) not in victim for r in results.values())


def test_a_unit_is_handed_on_once_only(sandbox):
    # workers that die as they start: the unit goes to a second one, then fails
    pool = FunctionPool(1, sandbox, python="/bin/false")
    try:
        submit(pool, "unit.000000", os.getpid)
        res = collect_all(pool)["unit.000000"]
        assert not res.ok and "died (exit code 1) while running unit.000000" in res.stderr
    finally:
        pool.close()


# -- cancel and close ---------------------------------------------------------------


def test_cancel_kills_a_sleeping_function(pool):
    submit(pool, "unit.000000", time.sleep, 60)
    time.sleep(0.2)
    t0 = time.monotonic()
    assert pool.cancel("unit.000000")
    res = collect_all(pool)["unit.000000"]
    assert res.canceled and not res.ok and res.exit_code == -signal.SIGKILL
    assert time.monotonic() - t0 < 2
    assert not pool.cancel("unit.000000")
    assert pool.idle == 2
    assert value(call(pool, "unit.000001", lambda: "after")) == "after"


def test_cancel_of_an_unknown_unit_is_false(pool):
    assert not pool.cancel("unit.999999")


def test_close_leaves_no_worker_process(sandbox):
    pool = FunctionPool(2, sandbox)
    submit(pool, "unit.000000", time.sleep, 60)
    pids = worker_pids(pool)
    assert len(pids) == 2
    left = pool.close()
    assert [r.uid for r in left] == ["unit.000000"] and left[0].canceled
    assert worker_pids(pool) == set()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)
    assert pool.filenos() == []


def test_workers_are_named_in_the_process_table(pool):
    assert len(worker_pids(pool)) == 2


# -- volume -------------------------------------------------------------------------


def test_many_noop_calls_all_come_back(pool):
    fn, args = cloudpickle.dumps(lambda i: i), [cloudpickle.dumps(((i,), {})) for i in range(5000)]
    sent, results = 0, {}
    deadline = time.monotonic() + 60
    while len(results) < 5000:
        assert time.monotonic() < deadline, f"only {len(results)} of 5000 came back"
        while pool.idle and sent < 5000:
            pool.submit(f"unit.{sent:06d}", fn, args[sent], CPU)
            sent += 1
        select.select(pool.filenos(), [], [], 0.1)
        results.update((r.uid, r) for r in pool.collect())
    assert all(pickle.loads(results[f"unit.{i:06d}"].result) == i for i in range(5000))
    assert pool.running == 0 and pool.idle == 2


def test_function_the_worker_cannot_load_fails_its_unit(pool):
    # pickled by reference to a module the worker does not have
    fn = b"\x80\x05\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x07nowhere\x94\x8c\x04func\x94\x93\x94."
    pool.submit("unit.000000", fn, cloudpickle.dumps(((), {})), CPU)
    res = collect_all(pool)["unit.000000"]
    assert not res.ok and res.exit_code == 1
    assert isinstance(pickle.loads(res.exception), ModuleNotFoundError)
    assert "No module named 'nowhere'" in res.traceback
    assert value(call(pool, "unit.000001", lambda: 1)) == 1


def test_the_pool_has_a_worker_per_core_up_to_a_ceiling():
    from rp_executor.agent.function_pool import MAX_WORKERS, WORKERS_PER_CORE, pool_size
    assert pool_size(2, node_cores=2) == 2
    assert pool_size(8, node_cores=2) == 2 * WORKERS_PER_CORE      # oversubscribed
    assert pool_size(1_000_000, node_cores=2) == 2 * WORKERS_PER_CORE
    assert pool_size(1_000_000, node_cores=1024) == MAX_WORKERS
    assert pool_size(4096, node_cores=2, limit=1000) == 1000      # the session's setting
    assert pool_size(1, node_cores=64, limit=16) == 1


# units queued behind a running one ----------------------------------------------------

def queue(pool: FunctionPool, uid: str, fn, *args, **kwargs) -> bool:
    # depth given: the mechanics, whatever the policy would say of these units
    return pool.queue(uid, cloudpickle.dumps(fn), cloudpickle.dumps((args, kwargs)),
                      depth=1)


def wait_for_file(path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def touch_then_sleep(path, seconds):
    open(path, "w").close()
    time.sleep(seconds)
    return path


def touch(path):
    open(path, "w").close()
    return path


def test_a_queued_unit_runs_next_in_its_worker_and_takes_over_the_slots(sandbox):
    with FunctionPool(1, sandbox) as pool:
        submit(pool, "unit.000000", touch_then_sleep, str(sandbox / "first"), 0.3)
        assert queue(pool, "unit.000001", os.getpid)
        assert not queue(pool, "unit.000002", os.getpid)   # one queued per worker
        assert sorted(pool.running_uids()) == ["unit.000000", "unit.000001"]
        results = collect_all(pool, 2)
        first, second = results["unit.000000"], results["unit.000001"]
        assert first.successor == "unit.000001" and first.slots == CPU
        assert second.successor is None and second.slots == CPU
        assert value(second) != os.getpid() and second.started >= first.stopped
        assert pool.idle == 1


def test_only_a_unit_of_one_core_without_threads_or_gpus_takes_a_queued_one(sandbox):
    with FunctionPool(2, sandbox) as pool:
        submit(pool, "unit.000000", time.sleep, 0.2, cpu_threads=2)
        submit(pool, "unit.000001", time.sleep, 0.2, gpus=[0])
        assert not queue(pool, "unit.000002", os.getpid)
        collect_all(pool, 2)


def test_a_canceled_queued_unit_never_runs_and_spares_the_unit_before_it(sandbox):
    with FunctionPool(1, sandbox) as pool:
        submit(pool, "unit.000000", touch_then_sleep, str(sandbox / "first"), 0.5)
        assert queue(pool, "unit.000001", touch, str(sandbox / "second"))
        assert pool.cancel("unit.000001")
        results = collect_all(pool, 2)
        assert results["unit.000001"].canceled and results["unit.000001"].slots is None
        assert value(results["unit.000000"]) == str(sandbox / "first")
        assert results["unit.000000"].successor is None
        assert not (sandbox / "second").exists()
        assert pool.running == 0 and pool.size == 1


def test_cancel_of_a_unit_with_one_queued_behind_hands_that_one_to_a_fresh_worker(sandbox):
    with FunctionPool(1, sandbox) as pool:
        submit(pool, "unit.000000", touch_then_sleep, str(sandbox / "first"), 60)
        wait_for_file(sandbox / "first")
        assert queue(pool, "unit.000001", touch, str(sandbox / "second"))
        victim = pool.pids[0]
        assert pool.cancel("unit.000000")
        results = collect_all(pool, 2)
        assert results["unit.000000"].canceled
        assert results["unit.000000"].successor == "unit.000001"
        assert value(results["unit.000001"]) == str(sandbox / "second")
        assert victim not in pool.pids and pool.size == 1


def test_a_queued_unit_outlives_the_death_of_the_worker_it_waited_for(sandbox):
    with FunctionPool(1, sandbox) as pool:
        submit(pool, "unit.000000", touch_then_sleep, str(sandbox / "first"), 60)
        wait_for_file(sandbox / "first")
        assert queue(pool, "unit.000001", touch, str(sandbox / "second"))
        os.kill(pool.pids[0], signal.SIGKILL)
        results = collect_all(pool, 2)
        assert not results["unit.000000"].ok and "SIGKILL" in results["unit.000000"].stderr
        assert results["unit.000000"].successor == "unit.000001"
        assert value(results["unit.000001"]) == str(sandbox / "second")


def test_close_cancels_queued_units_too(sandbox):
    pool = FunctionPool(1, sandbox)
    submit(pool, "unit.000000", time.sleep, 60)
    assert queue(pool, "unit.000001", os.getpid)
    ended = {r.uid: r for r in pool.close()}
    assert sorted(ended) == ["unit.000000", "unit.000001"]
    assert all(r.canceled for r in ended.values())


def test_many_queued_noop_calls_all_come_back_once(pool):
    results: dict[str, FuncResult] = {}
    todo = [f"unit.{i:06d}" for i in range(300)]
    deadline = time.monotonic() + 60
    while len(results) < 300:
        assert time.monotonic() < deadline, f"only {len(results)} of 300 came back"
        while todo and pool.idle:
            submit(pool, todo.pop(0), os.getpid)
        while todo and queue(pool, todo[0], os.getpid):
            todo.pop(0)
        select.select(pool.filenos(), [], [], 0.1)
        for res in pool.collect():
            assert res.uid not in results
            results[res.uid] = res
    assert all(r.ok for r in results.values()) and pool.running == 0


def test_the_worker_inbox_drops_a_canceled_request_it_has_not_started():
    from rp_executor.agent.worker import Inbox, write_frame
    r, w = os.pipe()
    try:
        inbox = Inbox(r)
        for request in (("unit.000001", b"f", b"a", "1", None, None), ("unit.000002", b"f", b"a",
                        "1", None, None), ("unit.000001",), ("unit.000009",)):
            write_frame(w, pickle.dumps(request))
        assert inbox.fill(wait=False)
        assert [req[0] for req in inbox.pending] == ["unit.000002"]
        assert inbox.take_dropped() == ("unit.000001",) and inbox.take_dropped() == ()
        os.close(w)
        w = -1
        inbox.pending.clear()
        assert not inbox.fill(wait=True) and inbox.ended
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
