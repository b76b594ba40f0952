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
import threading

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


def blas_for_dense(m: int):
    """The thread setting for a loop that factors an ``m``-row dense part again and again.

    One BLAS and one numba thread (:func:`single_threaded_loop`) for a few hundred
    to a few thousand rows; the caller's setting below that (calls too small to
    thread) and above (where the second thread pays).
    """
    return single_threaded_loop() if 200 < m <= 4000 else contextlib.nullcontext()


def effective_n_threads() -> int:
    """Number of threads numba kernels will use in the calling thread."""
    return numba.get_num_threads()


_register()
