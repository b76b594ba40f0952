"""Soak test (issue 8): 10^7 streamed rows in 10^4 batches with memory flat.

Marked slow: not in CI's default run (``pytest -m slow`` runs it, about a minute).
"""

import numpy as np
import pytest

from skmixed import StreamingMixed


def _rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


@pytest.mark.slow
def test_ten_million_rows_memory_flat():
    rng = np.random.default_rng(0)
    J, batch, n_batches = 1000, 1000, 10_000
    u = rng.normal(0, 1.0, J)
    m = StreamingMixed()
    rss = []
    for k in range(n_batches):
        g = rng.integers(0, J, batch)
        x = rng.normal(size=(batch, 2))
        y = 1 + x @ [0.5, -0.25] + u[g] + rng.normal(size=batch)
        m.partial_fit(x, y, groups=g)
        if k % 1000 == 999:
            rss.append(_rss_mb())
    assert m.n_seen_ == batch * n_batches
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), [1, 0.5, -0.25], atol=0.05)
    # after the first thousand batches nothing grows: per-group statistics are fixed-size
    assert max(rss[1:]) - rss[1] < 20.0, rss
