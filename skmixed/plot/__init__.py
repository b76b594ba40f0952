"""Plot helpers (the ``plot`` extra: matplotlib is imported only when a helper is called)."""

from .streaming import plot_trace

__all__ = ["plot_trace"]
