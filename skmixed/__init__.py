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
SplitSampleMixed
    Split-sample fitting of any of them: subsamples in parallel, combined.

Inference
---------
coef_table, tidy, confint, anova, bootstrap
    lmerTest's t-tests, broom.mixed's tidy frame, lme4's confint / anova / bootMer.
"""

from . import _threads  # noqa: F401  (registers numba with threadpoolctl)
from ._base import NoGroupsWarning
from .additive import AdditiveMixedRegressor
from .inference import BootstrapResult, RefitWarning, anova, bootstrap, coef_table, confint, tidy
from .linear import MixedLinearRegressor
from .logistic import MixedLogisticRegressor
from .poisson import MixedPoissonRegressor
from .split_sample import SplitSampleMixed
from .streaming import StreamingMixed, StreamOrderWarning

__version__ = "0.1.0"
__all__ = ["AdditiveMixedRegressor", "BootstrapResult", "MixedLinearRegressor", "MixedLogisticRegressor",
           "MixedPoissonRegressor", "NoGroupsWarning", "RefitWarning", "SplitSampleMixed", "StreamingMixed",
           "StreamOrderWarning", "anova", "bootstrap", "coef_table", "confint", "tidy"]
