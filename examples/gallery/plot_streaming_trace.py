"""
Streaming: estimates as the rows arrive
=======================================

:class:`~skmixed.StreamingMixed` fits a linear mixed model in one pass with the
SEMA algorithm (Ippel, Kaptein & Vermunt): each row updates the estimates once
and is never revisited. The first figure traces the estimates on a stationary
stream against the full-data maximum-likelihood fit; the second, a stream whose
effect of ``x0`` jumps halfway, where ``forgetting=`` tracks the change that
plain SEMA averages away.
"""

# %%
# A stationary stream
# -------------------
import numpy as np

from skmixed import MixedLinearRegressor, StreamingMixed
from skmixed.plot import plot_trace

rng = np.random.default_rng(0)
n, J = 20_000, 200
g = rng.integers(0, J, n)
X = rng.normal(size=(n, 2))
y = 10 + 1.0 * X[:, 0] - X[:, 1] + rng.normal(0, 2, J)[g] + rng.normal(size=n)

stream = StreamingMixed(n_train=500, trace_every=200)
for lo in range(0, n, 2_000):  # rows arrive in batches
    stream.partial_fit(X[lo:lo + 2_000], y[lo:lo + 2_000], groups=g[lo:lo + 2_000])
ml = MixedLinearRegressor(reml=False).fit(X, y, groups=g)
# labels passed as an array make one factor named "group"
truth = {"beta[x0]": ml.coef_[0], "beta[x1]": ml.coef_[1],
         "Phi[(Intercept),(Intercept)]": float(ml.cov_re_["group"].iloc[0, 0]), "sigma2": ml.sigma_**2}
axes = plot_trace(stream, params=list(truth), truth=truth)
axes[0].figure.suptitle("SEMA (line) against the full-data ML fit (dashed)", fontsize=10)
axes[0].figure.tight_layout()
print(stream.fixed_effects_)

# %%
# A drifting stream
# -----------------
beta1 = np.where(np.arange(n) < n // 2, 1.0, 3.0)
y2 = 10 + beta1 * X[:, 0] - X[:, 1] + rng.normal(0, 2, J)[g] + rng.normal(size=n)
plain = StreamingMixed(n_train=500, trace_every=200).fit(X, y2, groups=g)
forget = StreamingMixed(n_train=500, trace_every=200, forgetting=2_000).fit(X, y2, groups=g)
axes = plot_trace(plain, params=["beta[x0]", "sigma2"], label="plain SEMA")
plot_trace(forget, params=["beta[x0]", "sigma2"], axes=axes, label="forgetting=2000")
axes[0].plot(np.arange(1, n + 1), beta1, "k--", lw=1, label="truth")
axes[0].legend(fontsize=8)
axes[0].figure.tight_layout()
print(f"end of stream: plain {plain.coef_[0]:.2f}, forgetting {forget.coef_[0]:.2f}, truth 3")
