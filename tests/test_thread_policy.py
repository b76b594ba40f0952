"""The thread policy for large dense loops (skmixed._threads.blas_for_dense, spare_core)."""

import numba
import pytest
import threadpoolctl

import skmixed._threads as th


def _blas_threads():
    return min(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")


@pytest.fixture
def machine(monkeypatch):
    """Set the machine the policy sees: usable CPUs, the load average and other processes' runnable threads."""
    def set_(cpus=2, load1=0.3, others=0):
        monkeypatch.setattr(th, "usable_cpus", lambda: cpus)
        monkeypatch.setattr(th.os, "getloadavg", lambda: (load1, load1, load1))
        monkeypatch.setattr(th, "_runnable_threads", lambda: others)
    return set_


def test_spare_core_reads_cpus_load_and_run_queue(machine):
    machine()
    assert th.spare_core()
    machine(cpus=1)
    assert not th.spare_core()
    machine(load1=1.8)  # the last minute kept both cores busy
    assert not th.spare_core()
    machine(others=1)  # another process runnable now (a busy loop on the other core)
    assert not th.spare_core()
    machine(cpus=4, load1=2.0, others=2)
    assert th.spare_core()


def test_run_queue_reading_excludes_this_process():
    n = th._runnable_threads()
    assert n is None or n >= 0


@pytest.mark.skipif(not any(i["user_api"] == "blas" for i in threadpoolctl.threadpool_info()), reason="no BLAS")
def test_large_dense_loops_thread_only_with_a_spare_core(machine):
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        base = _blas_threads()
        machine(others=1)
        with th.blas_for_dense(2000):
            assert _blas_threads() == 1 and numba.get_num_threads() == 1
        machine()
        with th.blas_for_dense(2000):
            assert _blas_threads() == base
        with th.blas_for_dense(500):  # mid-sized parts: one thread whatever the load
            assert _blas_threads() == 1
        assert _blas_threads() == base
    # the caller's limit stays in force when a core is free
    with threadpoolctl.threadpool_limits(1):
        with th.blas_for_dense(2000):
            assert _blas_threads() == 1 and numba.get_num_threads() == 1


@pytest.mark.skipif(not any(i["user_api"] == "blas" for i in threadpoolctl.threadpool_info()), reason="no BLAS")
def test_a_core_taken_mid_loop_drops_the_second_thread(machine, monkeypatch):
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        base = _blas_threads()
        machine()
        with th.blas_for_dense(2000):  # the loop starts with a free core
            assert _blas_threads() == base
            machine(others=1)  # a busy process arrives: the next factorisation re-reads
            with th.blas_for_dense(2000):
                assert _blas_threads() == 1 and numba.get_num_threads() == 1
                # held to one thread: nested calls do not read the machine again
                monkeypatch.setattr(th, "spare_core", lambda: pytest.fail("read again"))
                with th.blas_for_dense(2000):
                    assert _blas_threads() == 1
            assert _blas_threads() == base
