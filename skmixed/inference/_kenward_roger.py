"""Kenward-Roger degrees of freedom (pbkrtest)."""

from __future__ import annotations

__all__ = ["kenward_roger", "kenward_roger_multi"]


def kenward_roger(est, inf, L):
    raise NotImplementedError("ddf='Kenward-Roger' is not implemented yet; use ddf='Satterthwaite'")


def kenward_roger_multi(est, inf, L):
    raise NotImplementedError("ddf='Kenward-Roger' is not implemented yet; use ddf='Satterthwaite'")
