"""skmixed: scikit-learn-compatible mixed-effects models for big grouped data."""

from . import _threads  # noqa: F401  (registers numba with threadpoolctl)

__version__ = "0.1.0"
__all__: list[str] = []
