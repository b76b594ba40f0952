"""Per-batch cost of the level index: 10^6 groups arriving over 1,000 batches."""
import sys, time
import numpy as np
from skmixed.streaming import StreamingMixed
n_batches = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
per = int(sys.argv[2]) if len(sys.argv) > 2 else 1000   # new groups per batch
kind = sys.argv[3] if len(sys.argv) > 3 else "int"
rng = np.random.default_rng(0)
m = StreamingMixed()
times = []
t0 = time.perf_counter()
for b in range(n_batches):
    g = np.repeat(np.arange(b * per, (b + 1) * per), 2)  # 2 rows per new group
    g = np.r_[g, rng.integers(0, (b + 1) * per, per)]     # + rows of old groups
    if kind == "str":
        g = np.array([f"u{v}" for v in g], dtype=object)
    x = rng.normal(size=(len(g), 1))
    y = x[:, 0] + rng.normal(size=len(g))
    t = time.perf_counter()
    m.partial_fit(x, y, groups=g)
    times.append(time.perf_counter() - t)
times = np.array(times)
print(f"{kind}: groups {m.n_groups_}, rows {m.n_seen_}, total {time.perf_counter()-t0:.1f}s; "
      f"batch ms: first100 median {1e3*np.median(times[:100]):.2f}, last100 median {1e3*np.median(times[-100:]):.2f}")
