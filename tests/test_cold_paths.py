"""The cold-start specialisations (issue #20) give the general kernels' results to the last bit.

A first fit compiles only the kernels its path needs: one-factor LMM paths use a
one-factor level kernel and numpy for the once-per-fit solves, the serial row pass
is Python around the threaded path's row kernel. Each is checked here against the
general code it stands in for, with exact equality.
"""

from __future__ import annotations

import numpy as np
import pytest

from skmixed._kernels import gram
from skmixed._kernels import lmm as klmm
from skmixed._solvers import first_block


def _one_factor(J, q, p, seed):
    """Random first-block factors and coupling rows of a one-factor layout (rows X then y per level)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(J, q, q + 2))
    A11 = np.einsum("jak,jbk->jab", A, A)
    A21 = rng.normal(size=(J * (p + 1), q))
    ptr = np.arange(J + 1, dtype=np.int64) * (p + 1)
    cols = np.tile(np.arange(p + 1, dtype=np.int64), J)
    lam1 = np.tril(rng.normal(size=(q, q)))
    return A11, A21, ptr, cols, lam1


@pytest.mark.parametrize("q", [1, 2, 3])
def test_one_factor_level_kernel_and_solves_match_general(q):
    J, p = 37, 3
    A11, A21, ptr, cols, lam1 = _one_factor(J, q, p, seed=q)
    none_i, none_f = np.empty(0, dtype=np.int64), np.empty(0)
    L11a, L21a = np.zeros((J, q, q)), np.zeros((J * (p + 1), q))
    L11b, L21b = np.zeros((J, q, q)), np.zeros((J * (p + 1), q))
    lda = klmm.level_factors(A11, A21, ptr, cols, lam1, none_f, none_i, none_i, none_i, 0, L11a, L21a)
    ldb = klmm.level_factors_one(A11, A21, ptr, lam1, L11b, L21b)
    assert lda == ldb and np.isfinite(lda)
    assert np.array_equal(L11a, L11b) and np.array_equal(L21a, L21b)

    v = np.random.default_rng(9).normal(size=p)
    assert np.array_equal(first_block.modes(L11a, L21a, p, v), klmm.solve_first_block(L11a, L21a, ptr, cols, v, 0))
    cv = klmm.first_block_condvar(L11a, L21a, ptr, cols, np.zeros((0, 0)), 0)
    assert np.array_equal(first_block.condvar(L11a), cv)


def test_one_factor_level_kernel_not_positive_definite():
    A11, A21, ptr, _, lam1 = _one_factor(5, 2, 1, seed=0)
    A11[3] = -np.eye(2) * 10.0  # lam1' A lam1 + I indefinite for this level
    lam1 = np.eye(2)
    ld = klmm.level_factors_one(A11, A21, ptr, lam1, np.zeros((5, 2, 2)), np.zeros((10, 2)))
    assert ld == np.inf


@pytest.mark.parametrize("weighted", [False, True])
def test_serial_row_pass_matches_threaded_chunks(weighted):
    rng = np.random.default_rng(1)
    n, J, p, q = 500, 23, 2, 2
    codes = rng.integers(0, J, n).astype(np.int64)
    X = rng.normal(size=(n, p))
    Z1 = np.column_stack([np.ones(n), X[:, 0]])
    y = rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n) if weighted else np.empty(0)
    ptr = np.arange(J + 1, dtype=np.int64) * (p + 1)
    args = (codes, Z1, np.empty((n, 0), dtype=np.int64), np.empty((n, 0), dtype=np.int64), np.empty((n, 0)),
            np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), 0,
            X, X.mean(axis=0), y, float(y.mean()), w, ptr, J)
    serial = gram.accumulate_serial(*args)
    one_chunk = gram.accumulate(*args, 1)
    for a, b in zip(serial, one_chunk):
        assert np.array_equal(a, b)
    assert q == serial[0].shape[1]
