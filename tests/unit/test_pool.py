"""llmtool.io.pool: ordered results, errors carried to the parent, and a shutdown that cannot hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from llmtool.errors import BadInputError, LlmtoolError
from llmtool.io.pool import RemoteTraceback, WorkerPool, default_workers


def _square_slowly(x: int) -> int:
    time.sleep(0.002 * ((x * 7) % 5))  # finish out of order
    return x * x


def _fail_at_five(x: int) -> int:
    if x == 5:
        raise ValueError("five is right out")
    return x


def _bad_input_at_three(x: int) -> int:
    if x == 3:
        raise BadInputError("row 3: not a document")
    return x


def _kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(10)


def _pid(_) -> int:
    return os.getpid()


_state = {}


def _init_state(value) -> None:
    _state["value"] = value


def _read_state(_) -> object:
    return _state.get("value")


def _init_fails() -> None:
    raise BadInputError("the model file is broken")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is dead, only not reaped
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_in_input_order(workers):
    with WorkerPool(_square_slowly, workers) as pool:
        assert list(pool.map(range(60))) == [x * x for x in range(60)]
        assert list(pool.map([])) == []
        assert list(pool.map(range(5))) == [0, 1, 4, 9, 16]  # a pool serves several maps


def test_spawn_and_initialiser():
    with WorkerPool(_read_state, 2, init=_init_state, initargs=("ready",), start="spawn") as pool:
        assert list(pool.map(range(4))) == ["ready"] * 4


def test_work_stays_within_the_window():
    """The input is read lazily: never more than `window` items ahead of the consumer."""
    taken = []

    def items():
        for i in range(100):
            taken.append(i)
            yield i

    with WorkerPool(_square_slowly, 2, window=4) as pool:
        for n, _ in enumerate(pool.map(items())):
            assert len(taken) <= n + 1 + 4


def test_a_worker_exception_is_raised_in_the_parent_in_order():
    got = []
    with pytest.raises(ValueError, match="five is right out") as info, WorkerPool(_fail_at_five, 2) as pool:
        for x in pool.map(range(20)):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]  # the results before it, as with one worker
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "_fail_at_five" in str(info.value.__cause__)


def test_a_domain_error_keeps_its_type_and_message():
    with pytest.raises(BadInputError, match="row 3: not a document"), WorkerPool(_bad_input_at_three, 2) as pool:
        list(pool.map(range(10)))
    with pytest.raises(BadInputError, match="model file is broken"), WorkerPool(_pid, 2, init=_init_fails) as pool:
        list(pool.map(range(3)))


def test_a_worker_killed_is_an_error_and_sigterm_is_an_interruption():
    with pytest.raises(LlmtoolError, match="killed by SIGKILL"), WorkerPool(_kill_self, 2) as pool:
        list(pool.map([signal.SIGKILL]))
    # SIGTERM to the process group reaches the workers too: the run is being stopped
    with pytest.raises(KeyboardInterrupt), WorkerPool(_kill_self, 2) as pool:
        list(pool.map([signal.SIGTERM]))


def test_stopping_early_kills_the_workers_and_restores_the_signal_mask():
    pool = WorkerPool(_square_slowly, 2).start()
    pids = [w.proc.pid for w in pool.workers]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    results = pool.map(range(1000))
    next(results)
    results.close()  # a consumer that stops (break, an exception) closes the iterator
    assert pool.workers == [] and all(_gone(p) for p in pids)
    with pytest.raises(LlmtoolError, match="shut down"):
        list(pool.map(range(3)))


def test_default_workers():
    assert default_workers(3) == 3
    assert default_workers(None) >= 1


# A parent process with a pool whose workers are stuck in a long task: it prints the
# workers' pids, then waits for the test to signal it.
_STUCK = textwrap.dedent("""
    import signal, sys, time
    from llmtool.io.pool import WorkerPool

    def on_term(signum, frame):  # as llmtool.cli does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    with WorkerPool(time.sleep, 2) as pool:
        print(" ".join(str(w.proc.pid) for w in pool.workers), flush=True)
        try:
            list(pool.map([600, 600, 600, 600]))
        except KeyboardInterrupt:
            t0 = time.monotonic()
            pool.kill()
            print(f"{time.monotonic() - t0:.3f}", flush=True)
            sys.exit(130)
""")


def _start_stuck():
    p = subprocess.Popen([sys.executable, "-c", _STUCK], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert len(pids) == 2
    time.sleep(0.3)  # the workers are in their tasks
    return p, pids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_with_workers_stuck_in_a_long_task_returns_at_once(sig):
    p, pids = _start_stuck()
    t0 = time.monotonic()
    os.killpg(p.pid, sig)  # as Ctrl-C, `timeout`, scancel, systemd do: the whole group
    try:
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert time.monotonic() - t0 < 2.0
    assert p.returncode == 130
    assert all(_gone(pid) for pid in pids)


def test_workers_die_with_a_sigkilled_parent():
    p, pids = _start_stuck()
    os.kill(p.pid, signal.SIGKILL)  # the parent only: its workers must not outlive it
    p.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.05)
    alive = [pid for pid in pids if not _gone(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def test_one_worker_count_leaves_signal_handling_alone():
    """bpe-train -w 1 ran the workers' initialiser in the command's own process, which
    then ignored Ctrl-C and died of SIGTERM without removing its temporary output."""
    from llmtool.tokenizer.bpe import PATTERNS, count_chunks

    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        counts, stats = count_chunks(["hello world", "hello there"], PATTERNS["gpt2"], workers=1)
        assert counts[" world"] == 1 and stats["docs"] == 2
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == saved
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
