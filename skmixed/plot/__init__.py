"""Plot helpers (the ``plot`` extra: matplotlib is imported only when a helper is called)."""

from .random_effects import plot_caterpillar, plot_group_lines
from .streaming import plot_trace

__all__ = ["plot_caterpillar", "plot_group_lines", "plot_trace"]
