"""Compile options and the thread-parallel loop shared by the kernels."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba


def prange_only():
    """``parallel=`` options that parallelise the explicit ``prange`` loops and nothing else.

    ``parallel=True`` also rewrites every array allocation and array expression of
    the function into parallel loops, each lowered to its own threaded kernel; in
    these kernels that buys nothing (they allocate small per-group scratch arrays)
    and costs seconds of compile on a cold cache. A fresh dict on every call:
    numba consumes the one it is given.
    """
    return {"comprehension": False, "reduction": False, "inplace_binop": False, "setitem": False,
            "numpy": False, "stencil": False, "fusion": False, "prange": True}


_POOL = None
_POOL_LOCK = threading.Lock()


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS), thread_name_prefix="skmixed")
        return _POOL


def run_in_threads(kernel, n, *args):
    """Run ``kernel(lo, hi, *args)`` over ``range(n)`` cut into one contiguous piece per thread.

    The parallel loop of a ``prange`` kernel, without its compile: ``kernel`` is a
    serial ``nogil`` numba function, so the pieces run truly in parallel in a
    shared thread pool. The number of pieces is numba's thread count in the
    calling thread (which threadpoolctl and ``numba.set_num_threads`` control);
    with one thread, or few items, the kernel runs once in the caller.
    """
    k = min(numba.get_num_threads(), n)
    if k <= 1:
        kernel(0, n, *args)
        return
    cuts = [(n * i) // k for i in range(k + 1)]
    futures = [_pool().submit(kernel, cuts[i], cuts[i + 1], *args) for i in range(k)]
    for f in futures:
        f.result()  # re-raise a piece's error here
