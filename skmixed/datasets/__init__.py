"""Small reference data sets and the seed-000 big-data simulator.

The CSV files ship inside the package (copied from lme4/mgcv's own data), so
examples and tests need nothing from the network.

Examples
--------
>>> from skmixed.datasets import load_sleepstudy, make_big_grouped_data
>>> load_sleepstudy().shape
(180, 3)
>>> make_big_grouped_data(1000, 10, seed=1).columns.tolist()
['y', 'y_bin', 'x', 'b', 'g']
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

__all__ = [
    "load_sleepstudy",
    "load_dyestuff",
    "load_dyestuff2",
    "load_penicillin",
    "load_pastes",
    "load_cbpp",
    "load_cbpp_bernoulli",
    "load_gamsim_re",
    "load_metacognition",
    "make_big_grouped_data",
]

# grouping / factor columns are read as strings so their levels match R's factors
_FACTORS = {
    "sleepstudy": ["Subject"],
    "dyestuff": ["Batch"],
    "dyestuff2": ["Batch"],
    "penicillin": ["plate", "sample"],
    "pastes": ["batch", "cask", "sample"],
    "cbpp": ["herd", "period"],
    "cbpp_bernoulli": ["herd", "period"],
    "gamsim_re": ["fac"],
    "metacognition": ["id", "sex", "block"],
}


def _load(name: str) -> pd.DataFrame:
    path = resources.files(__name__).joinpath("data", f"{name}.csv")
    with resources.as_file(path) as p:
        return pd.read_csv(p, dtype={c: str for c in _FACTORS[name]})


def load_sleepstudy() -> pd.DataFrame:
    """Reaction times of 18 subjects over 10 days of sleep deprivation (lme4's ``sleepstudy``)."""
    return _load("sleepstudy")


def load_dyestuff() -> pd.DataFrame:
    """Yield of dyestuff by batch of intermediate product (lme4's ``Dyestuff``)."""
    return _load("dyestuff")


def load_dyestuff2() -> pd.DataFrame:
    """Simulated dyestuff yields whose batch variance is estimated at zero (lme4's ``Dyestuff2``)."""
    return _load("dyestuff2")


def load_penicillin() -> pd.DataFrame:
    """Penicillin assay diameters, plates crossed with samples (lme4's ``Penicillin``)."""
    return _load("penicillin")


def load_pastes() -> pd.DataFrame:
    """Paste strength, casks nested in batches (lme4's ``Pastes``)."""
    return _load("pastes")


def load_cbpp() -> pd.DataFrame:
    """Contagious bovine pleuropneumonia incidence by herd and period (lme4's ``cbpp``)."""
    return _load("cbpp")


def load_cbpp_bernoulli() -> pd.DataFrame:
    """``cbpp`` expanded to one 0/1 row per animal."""
    return _load("cbpp_bernoulli")


def load_gamsim_re() -> pd.DataFrame:
    """mgcv's ``gamSim(1)`` with a 40-level random intercept ``fac`` and a binary ``yb``."""
    return _load("gamsim_re")


def load_metacognition() -> pd.DataFrame:
    """Metacognition experiment (Rausch & Zehetleitner 2016): 20 participants x 378 trials."""
    return _load("metacognition")


def make_big_grouped_data(n_rows: int = 2_000_000, n_groups: int = 2_000, seed=None) -> pd.DataFrame:
    """Simulate the seed-000 study data (after Clark 2019, "Mixed Models for Big Data").

    ``x ~ N(0, 1)`` per row, ``b ~ Bernoulli(0.5)`` per group, ``u_g ~ N(0, 0.5^2)``,
    ``lp = 0.5 x + 0.25 b + u_g``, ``y ~ N(lp, 1)``, ``y_bin ~ Bernoulli(logit^-1(lp))``.
    Rows are spread over groups as evenly as possible and sorted by group.

    Parameters
    ----------
    n_rows : int
        Number of rows.
    n_groups : int
        Number of groups (labelled ``0 .. n_groups-1`` in column ``g``).
    seed : int, numpy Generator or None
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    pandas.DataFrame
        Columns ``y`` (float), ``y_bin`` (0/1 int), ``x`` (float), ``b`` (0/1 int), ``g`` (int).

    Examples
    --------
    >>> df = make_big_grouped_data(10_000, 100, seed=0)
    >>> round(float(df["y"].mean()), 1)
    0.1
    """
    if n_groups < 1 or n_rows < n_groups:
        raise ValueError(f"need n_rows >= n_groups >= 1, got n_rows={n_rows}, n_groups={n_groups}")
    rng = np.random.default_rng(seed)
    g = (np.arange(n_rows, dtype=np.int64) * n_groups) // n_rows
    b_group = rng.binomial(1, 0.5, n_groups)
    u_group = rng.normal(0.0, 0.5, n_groups)
    x = rng.normal(0.0, 1.0, n_rows)
    b = b_group[g]
    lp = 0.5 * x + 0.25 * b + u_group[g]
    y = lp + rng.normal(0.0, 1.0, n_rows)
    y_bin = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-lp))).astype(np.int64)
    return pd.DataFrame({"y": y, "y_bin": y_bin, "x": x, "b": b, "g": g})
