"""skmixed: scikit-learn-compatible mixed-effects models for big grouped data.

Estimators
----------
MixedLinearRegressor
    Linear mixed models by profiled REML/ML (``lme4::lmer``).
MixedLogisticRegressor
    Binary and binomial-proportion GLMMs by Laplace / adaptive Gauss-Hermite (``lme4::glmer``).
MixedPoissonRegressor
    Count GLMMs (log link, offset) by Laplace / adaptive Gauss-Hermite (``glmer(family = poisson)``).
AdditiveMixedRegressor
    Additive mixed models by fREML, discretized covariates (``mgcv::bam``).
StreamingMixed
    Linear mixed models fitted online, row by row (SEMA, ``partial_fit``).
StreamingMixedLogistic
    Logistic mixed models fitted online (SEMA's idea with per-group Laplace statistics).
SplitSampleMixed
    Split-sample fitting of any of them: subsamples in parallel, combined.

Inference
---------
coef_table, tidy, confint, anova, bootstrap
    lmerTest's t-tests, broom.mixed's tidy frame, lme4's confint / anova / bootMer.

``import skmixed`` itself is quick: each estimator's module (and with it
scikit-learn, pandas and numba) is imported on first access, as in
``from skmixed import MixedLinearRegressor``.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["AdditiveMixedRegressor", "BootstrapResult", "MixedConvergenceWarning", "MixedLinearRegressor",
           "MixedLogisticRegressor", "MixedPoissonRegressor", "NoGroupsWarning", "RefitWarning", "SplitSampleMixed", "StreamingMixed",
           "StreamingMixedLogistic", "StreamOrderWarning", "anova", "bootstrap", "coef_table", "confint", "tidy"]

# public name -> module holding it (imported on first access, PEP 562)
_LAZY = {
    "AdditiveMixedRegressor": ".additive",
    "MixedConvergenceWarning": "._solvers._optim",
    "MixedLinearRegressor": ".linear",
    "MixedLogisticRegressor": ".logistic",
    "MixedPoissonRegressor": ".poisson",
    "NoGroupsWarning": "._base",
    "SplitSampleMixed": ".split_sample",
    "StreamingMixed": ".streaming",
    "StreamOrderWarning": ".streaming",
    "StreamingMixedLogistic": ".streaming_logistic",
    **{name: ".inference" for name in ("BootstrapResult", "RefitWarning", "anova", "bootstrap", "coef_table",
                                       "confint", "tidy")},
}


def __getattr__(name):
    if name in _LAZY:
        importlib.import_module("._threads", __name__)  # numba obeys threadpoolctl from here on
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skmixed' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
