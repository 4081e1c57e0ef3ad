"""The one process pool of every stage: ordered results, bounded work, a shutdown that cannot hang.

    >>> with WorkerPool(abs, workers=1) as pool:
    ...     list(pool.map([-3, 2, -1]))
    [3, 2, 1]

Why not multiprocessing.Pool: its workers share one task queue behind a lock, and a worker
killed while holding that lock (SIGTERM to the process group, the OOM killer) leaves
`Pool.terminate()` waiting forever. Here every worker has its own two pipes, so the parent
never waits on a lock a worker could hold:

- the parent sends a task only to a worker with fewer than `depth` tasks, and a thread in
  the worker reads its task pipe all the time, so a send never waits on the worker's work;
- the parent waits on the result pipes and on the workers' exit sentinels together, so a
  worker that dies is noticed at once (died of SIGINT/SIGTERM/SIGHUP: the job is being
  stopped, KeyboardInterrupt; any other death: LlmtoolError);
- shutdown on an error, KeyboardInterrupt or an abandoned map SIGKILLs the workers and
  reaps them with a deadline; SIGINT/SIGTERM are blocked meanwhile so that a second signal
  cannot cut the shutdown short (it is delivered right after).

Workers start with SIGINT and SIGTERM blocked (so nothing arrives before their handlers
are set), ignore SIGINT (Ctrl-C reaches the whole foreground group; the parent stops them),
die of SIGTERM, and die with the parent (Linux PR_SET_PDEATHSIG; elsewhere a thread that
watches the parent pid). Results come back in submission order, so output does not
depend on the worker count; at most `window` tasks are submitted and not yet yielded.

Create pools from the main thread: PR_SET_PDEATHSIG fires when the creating thread ends.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from llmtool.errors import LlmtoolError

DEPTH = 2  # default tasks sent to one worker and not yet answered: one running, one waiting
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
REAP_SECONDS = 2.0  # how long shutdown waits for SIGKILLed workers to be reaped, in all


def default_workers(workers: int | None) -> int:
    """The worker count asked for, or the CPUs this process may run on."""
    if workers is not None:
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- in the worker


def worker_signals() -> None:
    """Signal handling of a worker: Ctrl-C is the parent's business, SIGTERM kills outright
    (the command's own SIGTERM handler, inherited through fork, would raise
    KeyboardInterrupt in the middle of a task)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _die_with_parent(parent_pid: int) -> None:
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="llmtool-parent-watch", daemon=True).start()


class _Inbox:
    """The worker's tasks, filled by its reader thread; the main thread sleeps until one comes."""

    def __init__(self):
        self.items: deque = deque()
        self.cond = threading.Condition()

    def put(self, msg) -> None:
        with self.cond:
            self.items.append(msg)
            self.cond.notify()

    def take(self):
        with self.cond:
            while not self.items:
                self.cond.wait()
            return self.items.popleft()


def _read_tasks(conn, inbox: _Inbox) -> None:
    """Drain the task pipe all the time, so the parent's sends never wait on the work."""
    if hasattr(signal, "pthread_sigmask"):  # process signals go to the main thread
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()))
    try:
        while True:
            msg = pickle.loads(conn.recv_bytes())
            inbox.put(msg)
            if msg is None:
                return
    except BaseException:  # EOF: the parent closed the pool or died; anything else: stop too
        inbox.put(None)


def _portable(exc: BaseException) -> tuple[BaseException, str]:
    """The exception and its traceback text, in a form that survives pickling."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc, tb


def _worker_main(tasks_conn, results_conn, fn, init, initargs, parent_pid, inherited) -> None:
    for c in inherited:  # the parent's ends of every pipe, copied by fork: only the parent keeps them
        c.close()
    worker_signals()
    _die_with_parent(parent_pid)
    inbox = _Inbox()
    reader = threading.Thread(target=_read_tasks, args=(tasks_conn, inbox), name="llmtool-tasks", daemon=True)
    reader.start()
    failure = None
    try:
        if init is not None:
            init(*initargs)
    except BaseException as e:  # every task then answers with the initialiser's error
        failure = _portable(e)
    while True:
        msg = inbox.take()
        if msg is None:
            return
        seq, item = msg
        if failure is not None:
            reply = (seq, False, failure)
        else:
            try:
                reply = (seq, True, fn(item))
            except BaseException as e:
                reply = (seq, False, _portable(e))
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # an unpicklable result is this task's error
            data = pickle.dumps((seq, False, _portable(e)), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            results_conn.send_bytes(data)
        except OSError:  # the parent has gone
            return


# ---------------------------------------------------------------- in the parent


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (attached as its __cause__)."""

    def __str__(self) -> str:
        return "\n" + self.args[0]


class _Worker:
    def __init__(self, proc, tasks, results):
        self.proc = proc
        self.tasks = tasks  # parent's sending end
        self.results = results  # parent's receiving end
        self.pending: deque[int] = deque()  # sequence numbers sent, not yet answered


def _death(proc) -> BaseException:
    """What a worker's unexpected end means for the run."""
    proc.join(0.5)
    code = proc.exitcode
    if code is not None and code < 0 and -code in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # the job is being stopped (e.g. SIGTERM to the process group): the parent's turn next
        return KeyboardInterrupt()
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
        if -code == signal.SIGKILL:
            how += " (out of memory?)"
    else:
        how = f"exited unexpectedly (code {code})"
    return LlmtoolError(f"a worker process (pid {proc.pid}) {how}")


class WorkerPool:
    """`fn` over items in `workers` processes (1: in this process), results in input order.

    `init(*initargs)` runs once in each worker before its first task (in this process
    when workers <= 1). `start` is "fork" (fast; the workers share the parent's loaded
    state) or "spawn" (fresh interpreters: for work that uses libraries which are not
    fork-safe once the parent has used them). With spawn, `fn`, `init` and `initargs`
    must pickle. `depth` tasks at most wait at one worker (2 hides the round trip; 1 for
    long tasks, so that none waits behind a slow one while another worker is idle).
    Use it as a context manager: leaving the block normally lets the workers exit;
    leaving it with an exception kills them.
    """

    def __init__(self, fn: Callable, workers: int, *, init: Callable | None = None, initargs: tuple = (),
                 start: str = "fork", window: int | None = None, depth: int = DEPTH):
        self.fn = fn
        self.n = max(1, int(workers))
        self.init = init
        self.initargs = initargs
        self.start_method = start if start in mp.get_all_start_methods() else "spawn"
        self.window = window or 4 * self.n  # submitted and not yet yielded, in all
        self.depth = max(1, depth)
        self.workers: list[_Worker] = []
        self.started = False
        self.broken = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> WorkerPool:
        if self.started:
            return self
        self.started = True
        if self.n <= 1:
            if self.init is not None:
                self.init(*self.initargs)
            return self
        try:
            self._start_workers()
        except BaseException:  # a signal that came while they started is raised here, too
            self.kill()
            raise
        return self

    def _start_workers(self) -> None:
        ctx = mp.get_context(self.start_method)
        pipes = [(ctx.Pipe(duplex=False), ctx.Pipe(duplex=False)) for _ in range(self.n)]
        # parent's ends; with fork a worker inherits all of them and closes them first thing
        parent_ends = [c for (t_recv, t_send), (r_recv, r_send) in pipes for c in (t_send, r_recv)]
        inherited = parent_ends if self.start_method == "fork" else []
        blocked = hasattr(signal, "pthread_sigmask")
        # Workers start with SIGINT/SIGTERM blocked (the mask is inherited through fork and exec)
        # until their own handlers are set; here they wait until every worker has started.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if blocked else None
        try:
            for (t_recv, t_send), (r_recv, r_send) in pipes:
                proc = ctx.Process(target=_worker_main, name="llmtool-worker", daemon=True,
                                   args=(t_recv, r_send, self.fn, self.init, self.initargs, os.getpid(),
                                         inherited))
                self.workers.append(_Worker(proc, t_send, r_recv))
                proc.start()
                t_recv.close()
                r_send.close()
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.kill()

    def close(self) -> None:
        """Let idle workers exit (a few seconds at most), then kill whatever is left."""
        try:
            deadline = time.monotonic() + 5.0
            for w in self.workers:
                try:
                    w.tasks.send_bytes(pickle.dumps(None))
                except OSError:
                    pass
            for w in self.workers:
                w.proc.join(max(0.0, deadline - time.monotonic()))
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL every worker and reap it; never waits on anything a worker holds."""
        self.broken = True
        if not self.workers:
            return
        blocked = hasattr(signal, "pthread_sigmask")
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if blocked else None
        try:
            for w in self.workers:
                if w.proc.pid is not None and w.proc.exitcode is None:
                    try:
                        w.proc.kill()
                    except OSError:
                        pass
            deadline = time.monotonic() + REAP_SECONDS
            for w in self.workers:
                if w.proc.pid is not None:
                    # a process in uninterruptible sleep (e.g. on a dead NFS server) is left behind
                    w.proc.join(max(0.0, deadline - time.monotonic()))
                for c in (w.tasks, w.results):
                    try:
                        c.close()
                    except OSError:
                        pass
            self.workers = []
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)

    # ------------------------------------------------------------ work

    def map(self, items: Iterable) -> Iterator:
        """fn(item) for every item, in order. Stopping early (break, an exception) kills the pool."""
        if not self.started:
            self.start()
        if self.n <= 1:
            for item in items:
                yield self.fn(item)
            return
        if self.broken:
            raise LlmtoolError("internal: the worker pool was already shut down")
        finished = False
        try:
            yield from self._map(iter(items))
            finished = True
        finally:
            if not finished:
                self.kill()

    def _map(self, items: Iterator) -> Iterator:
        done: dict[int, tuple] = {}  # answers that came before their turn
        next_in = next_out = 0
        exhausted = False
        while True:
            # hand out work, least busy worker first, within the window
            while not exhausted and next_in - next_out < self.window:
                w = min(self.workers, key=lambda w: len(w.pending))
                if len(w.pending) >= self.depth:
                    break
                try:
                    item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                self._send(w, (next_in, item))
                w.pending.append(next_in)
                next_in += 1
            if next_out in done:  # hand back the next result in order
                ok, value = done.pop(next_out)
                next_out += 1
                if not ok:
                    exc, tb = value
                    if not isinstance(exc, LlmtoolError):
                        exc.__cause__ = RemoteTraceback(tb)
                    raise exc
                yield value
            elif exhausted and next_out == next_in:
                return
            else:
                self._collect(done)

    def _send(self, w: _Worker, msg) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            w.tasks.send_bytes(data)
        except OSError:  # broken pipe: the worker is gone
            raise _death(w.proc)

    def _collect(self, done: dict) -> None:
        """Wait for at least one result (or a worker's death) and file what came."""
        from multiprocessing.connection import wait

        busy = [w for w in self.workers if w.pending]
        by_handle = {}
        for w in busy:
            by_handle[id(w.results)] = w
            by_handle[w.proc.sentinel] = w
        ready = wait([w.results for w in busy] + [w.proc.sentinel for w in busy])
        for r in ready:
            w = by_handle[r if isinstance(r, int) else id(r)]
            if not w.pending:
                continue
            try:
                # a worker that died right after answering still has its answer in the pipe
                if isinstance(r, int) and not w.results.poll():
                    raise EOFError
                seq, ok, value = pickle.loads(w.results.recv_bytes())
            except (EOFError, OSError):
                raise _death(w.proc)
            w.pending.remove(seq)
            done[seq] = (ok, value)
