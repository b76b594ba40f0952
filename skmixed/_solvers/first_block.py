"""Once-per-fit solves on the first block's per-level factors, in numpy, for one grouping factor.

With one grouping factor every level's stored coupling rows are its ``X`` and ``y``
columns, in order (:class:`skmixed._design.layout.BlockLayout`), so ``L21`` is a
``(J, p + 1, q)`` array and the per-level solves of
:func:`skmixed._kernels.lmm.solve_first_block` and
:func:`skmixed._kernels.lmm.first_block_condvar` are a few whole-array operations
over the levels (Python loops only over the ``q`` and ``p`` columns). They run once
per fit, so a compiled kernel would buy microseconds and cost its compile (about a
second on an empty numba cache) in every first fit. The arithmetic is the kernels',
operation for operation, so the results are the same to the last bit.
"""

from __future__ import annotations

import numpy as np


def modes(L11, L21, p, v):
    """The conditional modes ``u1`` (J, q) given ``beta = v`` (see ``solve_first_block``).

    Examples
    --------
    >>> import numpy as np
    >>> L11 = np.array([[[2.0]], [[4.0]]])           # two levels, q = 1
    >>> L21 = np.array([[1.0], [6.0], [2.0], [4.0]])  # rows (x, y) per level, p = 1
    >>> modes(L11, L21, 1, np.array([2.0]))
    array([[2.],
           [0.]])
    """
    J, q = L11.shape[0], L11.shape[1]
    rows = L21.reshape(J, p + 1, q)
    rhs = rows[:, p, :].copy()
    for s in range(p):
        rhs -= rows[:, s, :] * v[s]
    u = np.empty((J, q))
    for a in range(q - 1, -1, -1):
        acc = rhs[:, a].copy()
        for c in range(a + 1, q):
            acc -= L11[:, c, a] * u[:, c]
        u[:, a] = acc / L11[:, a, a]
    return u


def condvar(L11):
    """Per level, ``L11_j^-T L11_j^-1`` (J, q, q): the conditional covariances of ``u1`` over ``sigma^2``.

    Examples
    --------
    >>> import numpy as np
    >>> condvar(np.array([[[2.0, 0.0], [1.0, 1.0]]]))
    array([[[ 0.5, -0.5],
            [-0.5,  1. ]]])
    """
    J, q = L11.shape[0], L11.shape[1]
    Linv = np.zeros((J, q, q))
    for c in range(q):
        Linv[:, c, c] = 1.0 / L11[:, c, c]
        for a in range(c + 1, q):
            acc = np.zeros(J)
            for b in range(c, a):
                acc -= L11[:, a, b] * Linv[:, b, c]
            Linv[:, a, c] = acc / L11[:, a, a]
    out = np.empty((J, q, q))
    for a in range(q):
        for b in range(q):
            acc = np.zeros(J)
            for c in range(q):
                acc += Linv[:, c, a] * Linv[:, c, b]
            out[:, a, b] = acc
    return out
