"""skmixed: scikit-learn-compatible mixed-effects models for big grouped data.

Estimators
----------
MixedLinearRegressor
    Linear mixed models by profiled REML/ML (``lme4::lmer``).
SplitSampleMixed
    Split-sample fitting of any of them: subsamples in parallel, combined.
"""

from . import _threads  # noqa: F401  (registers numba with threadpoolctl)
from ._base import NoGroupsWarning
from .linear import MixedLinearRegressor
from .split_sample import SplitSampleMixed

__version__ = "0.1.0"
__all__ = ["MixedLinearRegressor", "NoGroupsWarning", "SplitSampleMixed"]
