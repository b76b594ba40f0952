"""Make numba's thread pool obey threadpoolctl.

threadpoolctl knows BLAS and OpenMP libraries but not numba, so
``threadpool_limits(1)`` alone would leave every ``prange`` kernel on all cores.
We register a small :class:`threadpoolctl.LibController` for numba's threading
layer library; threadpoolctl then finds it among the loaded shared objects and
calls :func:`numba.set_num_threads` like it calls ``openblas_set_num_threads``.

numba's thread count is thread-local, so a limit set in one thread (a joblib
worker thread, say) does not leak into another; process-based joblib workers
(loky) already get ``NUMBA_NUM_THREADS`` capped by joblib.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import numba
import threadpoolctl


class NumbaController(threadpoolctl.LibController):
    """threadpoolctl controller for numba's parallel threading layer."""

    user_api = "numba"
    internal_api = "numba"
    # the threading-layer extension modules numba loads when its pool starts
    filename_prefixes = ("omppool", "workqueue", "tbbpool")

    def get_num_threads(self):
        return numba.get_num_threads()

    def set_num_threads(self, num_threads):
        numba.set_num_threads(max(1, min(int(num_threads), numba.config.NUMBA_NUM_THREADS)))

    def get_version(self):
        return numba.__version__

    def set_additional_attributes(self):
        self.threading_layer = numba.config.THREADING_LAYER


def _register() -> None:
    # Start numba's pool now so its library is loaded (and so discoverable by
    # threadpoolctl) before anybody calls threadpool_limits.
    numba.get_num_threads()
    if NumbaController not in threadpoolctl._ALL_CONTROLLERS:
        threadpoolctl.register(NumbaController)


_CONTROLLER = None
_BLAS_LOCK = threading.Lock()
_BLAS_DEPTH = 0
_BLAS_LIMIT = None  # the active limit object while _BLAS_DEPTH > 0


@contextlib.contextmanager
def single_threaded_blas():
    """Context manager capping BLAS/LAPACK to one thread (other libraries untouched).

    For loops of mid-sized dense factorisations (a few hundred to a few thousand
    rows): there OpenBLAS's second thread gains little on a quiet machine, and on
    a busy one its spin-waiting threads slow each call down by an order of
    magnitude (measured 30x on these 2-core machines).

    BLAS thread counts are process-wide, so the cap is reference-counted: when fits
    in several threads overlap, the first to enter sets it and the last to leave
    restores the caller's setting (a plain nested limit would restore in the
    wrong order and leave BLAS on one thread).
    """
    global _CONTROLLER, _BLAS_DEPTH, _BLAS_LIMIT
    with _BLAS_LOCK:
        if _CONTROLLER is None:
            _CONTROLLER = threadpoolctl.ThreadpoolController()
        if _BLAS_DEPTH == 0:
            _BLAS_LIMIT = _CONTROLLER.limit(limits=1, user_api="blas")
        _BLAS_DEPTH += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0:
                _BLAS_LIMIT.restore_original_limits()
                _BLAS_LIMIT = None


@contextlib.contextmanager
def single_threaded_loop():
    """One BLAS thread (:func:`single_threaded_blas`) and one numba thread in the calling thread.

    For optimiser loops whose every step is a few milliseconds to a fraction of a
    second of dense and sparse work: a second thread there gains at most 2x on an
    idle machine, while on a busy one each parallel region waits for a descheduled
    thread (BLAS spin-waits, numba's ``prange`` barriers) and a fit slows down 10-20x.
    Single-threaded, a fit keeps its speed when another process holds one core.
    numba's count is thread-local, so other threads' kernels are not affected;
    a tighter ``threadpool_limits`` set by the caller stays in force.
    """
    with single_threaded_blas():
        prev = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(prev)


def _runnable_threads() -> int | None:
    """Threads of other processes runnable on the machine right now (Linux), or None where unknown.

    The kernel's run-queue count (``/proc/loadavg``) less this process's own running
    threads (their states in ``/proc/self/task``): OpenBLAS workers spin for a while
    after a call, and must not read as another process's load.
    """
    try:
        with open("/proc/loadavg") as fh:
            total = int(fh.read().split()[3].split("/")[0])
        own = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as fh:
                    st = fh.read()
            except OSError:
                continue
            if st[st.rfind(")") + 2:st.rfind(")") + 3] == "R":
                own += 1
        return max(total - own, 0)
    except (OSError, ValueError, IndexError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def spare_core(samples: int = 3) -> bool:
    """Whether a second core is free for this process now.

    True when the process may use two or more CPUs, at least one of ``samples``
    readings of the kernel's run queue a millisecond apart leaves a CPU beside this
    process's own running threads with nothing else to run (:func:`_runnable_threads`;
    a transient thread may be missed, a busy process never is), and the one-minute
    load average leaves a core spare. Where the run queue cannot be read, the load
    average alone decides. Cheap: well under a millisecond on a free machine, ~2 ms on a busy one.
    """
    n = usable_cpus()
    if n < 2:
        return False
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return False
    if load1 > n - 0.5:
        return False
    for i in range(samples):
        if i:
            time.sleep(0.001)
        c = _runnable_threads()
        if c is None or c <= n - 2:
            return True
    return False


#: dense parts from this many rows use a second BLAS/numba thread when a core is free
PARALLEL_DENSE_ROWS = 1500


def blas_for_dense(m: int):
    """The thread setting for a loop that factors an ``m``-row dense part again and again.

    Below ~200 rows the calls are too small to thread: the caller's setting. From
    there to :data:`PARALLEL_DENSE_ROWS`, one BLAS and one numba thread
    (:func:`single_threaded_loop`): the second thread gains little per call. Larger
    parts keep the caller's setting (a second thread nearly halves a 2,000-row
    Cholesky) only while :func:`spare_core` finds a core free: with a busy process
    on the other core, two OpenBLAS threads made the same Cholesky and triangular
    inverse 4-8 times slower than one (measured on 2 cores), which is the collapse under
    load this policy exists to avoid. A ``threadpool_limits`` the caller set stays
    in force either way (it is the caller's setting, and one thread is never more).
    """
    if m <= 200:
        return contextlib.nullcontext()
    # inside a loop already held to one thread, stay there without reading the machine again
    if m >= PARALLEL_DENSE_ROWS and _BLAS_DEPTH == 0 and spare_core():
        return contextlib.nullcontext()
    return single_threaded_loop()


def effective_n_threads() -> int:
    """Number of threads numba kernels will use in the calling thread."""
    return numba.get_num_threads()


_register()
