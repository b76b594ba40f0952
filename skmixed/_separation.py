"""Separation checks for the binary GLMM: which columns or groups make estimates diverge.

Fixed-effect (quasi-)separation shows in the fit as coefficients that run off on the
internal unit-spread scale (the logistic estimator checks those). Group-level separation
is read off the data: when every level of a grouping factor holds a single class, the
random effects can fit the labels exactly and the variance diverges (glmer returns a huge
theta without a word). This module names the factor and the levels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pure_levels", "group_separation", "separation_message"]


def pure_levels(y, weights, codes, n_levels):
    """Boolean per level: all of its (positively weighted) rows have the same class."""
    w = np.ones_like(y) if weights is None else weights
    pos = w > 0
    n = np.bincount(codes[pos], weights=w[pos], minlength=n_levels)
    s = np.bincount(codes[pos], weights=(w * y)[pos], minlength=n_levels)
    seen = n > 0
    return seen & ((s <= 0) | (s >= n))


def group_separation(y, weights, factors, theta_by_factor, big=10.0):
    """Messages for factors whose levels separate the classes.

    Complete: every level has a single class. Quasi: the fitted SD (on the logit scale)
    of the factor's random effect exceeds ``big`` while some levels have a single class.
    """
    out = []
    for f in factors:
        pure = pure_levels(y, weights, f.codes, f.n_levels)
        msg = separation_message(f.name, f.levels, pure, theta_by_factor.get(f.name, 0.0), big)
        if msg:
            out.append(msg)
    return out


def separation_message(name, levels, pure, sd, big=10.0):
    """The message for one factor from its levels' single-class flags ``pure`` (None: no separation);
    a distributed fit sums the flags from its partitions."""
    k = int(np.sum(pure))
    if k == 0:
        return None
    names = [str(v) for v in np.asarray(levels)[np.asarray(pure, dtype=bool)][:5]]
    more = "" if k <= 5 else f" and {k - 5} more"
    if k == len(pure):
        return (f"every level of grouping factor {name!r} has a single class (complete separation by "
                f"groups): its random-effect variance diverges and the estimates are not meaningful")
    if sd > big:
        return (f"grouping factor {name!r}: random-effect SD {sd:.3g} on the logit scale diverges; "
                f"{k} of {len(pure)} levels have a single class (quasi-separation by groups), e.g. "
                f"{names}{more}")
    return None
