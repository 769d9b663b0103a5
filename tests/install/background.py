"""The install tests' hosts and playbook runs, begun when the session starts.

A playbook run is Ansible's own work (about one core for minutes) that waits on
nothing else: so the cluster's runs (clusterrun.build_cluster) and the single
host's (conftest.converge) run in threads beside the rest of the suite, and the
two modules that judge them run last (conftest.pytest_collection_modifyitems),
their fixtures taking the finished results (JOBS.taken).

Begun only when the session runs those modules, as root, with the tools. The
hosts boot before the first test runs (JOBS.wait_up), so no test sees links or
routes appear on this machine while it runs. A job that failed raises its error
in the fixture that takes its result (every test of that module errors with
it). The session's end, Ctrl-C included, ends the playbook runs under way and
stops every host still up (JOBS.end).
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import testhost
from installrun import end_playbooks

# A job that takes longer has hung (each playbook run has its own 900 s bound).
JOB_TIMEOUT = 3600
# Booting the hosts from the cached root: seconds; building that root first: minutes.
UP_TIMEOUT = 1800

Job = Callable[[threading.Event], object]   # sets the event once its hosts are up (or it failed)


def _run(job: Job, up: threading.Event):
    try:
        return job(up)
    finally:
        up.set()   # a job that failed before its hosts were up is waited for no longer


class Jobs:
    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future] = {}
        self._up: dict[str, threading.Event] = {}
        self._taken: set[str] = set()
        self._lock = threading.Lock()

    def start(self, name: str, job: Job) -> Future:
        """Begin *job* in a thread, once per session."""
        with self._lock:
            if name not in self._futures:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(4, thread_name_prefix="install")
                self._up[name] = threading.Event()
                self._futures[name] = self._pool.submit(_run, job, self._up[name])
            return self._futures[name]

    def wait_up(self) -> None:
        """Until every job begun has its hosts up (or has failed)."""
        deadline = time.monotonic() + UP_TIMEOUT
        for up in list(self._up.values()):
            up.wait(max(0.0, deadline - time.monotonic()))

    def take(self, name: str, job: Job):
        """*job*'s result (begun now if the session did not), or its error. The caller
        owns the result (its close() stops its hosts)."""
        future = self.start(name, job)
        self._taken.add(name)
        try:
            return future.result(JOB_TIMEOUT)
        except FutureTimeout:
            raise TimeoutError(f"the install tests' {name!r} setup was not done after {JOB_TIMEOUT} s") from None

    @contextlib.contextmanager
    def taken(self, name: str, job: Job):
        """take() for a module's fixture: the result, closed (its hosts stopped) after the module."""
        result = self.take(name, job)
        try:
            yield result
        finally:
            result.close()

    def end(self) -> None:
        """Session over: end the playbook runs under way (a job then stops at its next step
        and stops its hosts), wait for the threads, close the results nobody took, and stop
        any host still up."""
        end_playbooks()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for name, future in self._futures.items():
            if name not in self._taken and future.exception() is None:
                future.result().close()
        testhost.stop_every_host()


JOBS = Jobs()
