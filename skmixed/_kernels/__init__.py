"""All of skmixed's numba code, one module per model family.

Kernels are compiled on first use and cached on disk (``cache=True``: in
``__pycache__`` beside these sources, or under ``NUMBA_CACHE_DIR``), so a first fit
on a fresh install, container or Dask worker pays a compile of some seconds and
later processes load the machine code in milliseconds. Importing this package
registers a numba compile listener that says so on stderr, once per process, when
a skmixed kernel is really compiled (a cache load is silent). ``python -m skmixed
warmup`` compiles every kernel ahead of time. Set ``SKMIXED_COMPILE_NOTICE=0`` to
silence the line.
"""

import os
import sys
import threading

from numba.core import event as _event

from .. import _threads  # noqa: F401  (numba's pool obeys threadpoolctl wherever a kernel runs)

_NOTICE = ("skmixed: compiling numba kernels for this fit -- once per install (the machine code is cached "
           "on disk), some seconds. `python -m skmixed warmup` compiles all of them ahead of time.")


class _CompileNotice(_event.Listener):
    """Prints :data:`_NOTICE` the first time a skmixed kernel starts compiling."""

    def __init__(self):
        self.done = False
        self.lock = threading.Lock()

    def on_start(self, ev):
        if self.done:
            return
        disp = ev.data.get("dispatcher")
        module = getattr(getattr(disp, "py_func", None), "__module__", "") or ""
        if not module.startswith("skmixed."):
            return
        with self.lock:
            if self.done:
                return
            self.done = True
        if os.environ.get("SKMIXED_COMPILE_NOTICE", "1") != "0":
            print(_NOTICE, file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


_event.register("numba:compile", _CompileNotice())
