import numpy as np, pickle, warnings
from skmixed import MixedLinearRegressor, StreamingMixed
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
g = np.repeat(np.arange(20), 20); X = rng.normal(size=(400, 2))
y = X @ [.5, -.3] + rng.normal(size=20)[g] + rng.normal(size=400)
for est in (MixedLinearRegressor(), StreamingMixed()):
    est.partial_fit(X[:200], y[:200], groups=g[:200])
    before = pickle.dumps(est)
    for bad in (lambda: est.fit(X, np.ones(400), groups=g), lambda: est.partial_fit(X[200:], 1e155*y[200:], groups=g[200:]),
                lambda: est.fit(np.c_[X, X], np.r_[y[:-1], np.nan], groups=g)):
        before = pickle.dumps(est)
        try: bad(); print("accepted!")
        except Exception as e: print(type(e).__name__, str(e)[:100])
        print(pickle.dumps(est) == before)
    est.partial_fit(X[200:], y[200:], groups=g[200:])
    print(getattr(est, "n_seen_", None) or est._stats.n_rows)
