"""Inference for fitted mixed models: what lme4, lmerTest, pbkrtest and broom.mixed give R users.

- :func:`coef_table`, :func:`tidy`: fixed-effects tables with Satterthwaite or Kenward-Roger t-tests
  for LMMs, z-tests for the logistic model;
- :func:`confint`: Wald, likelihood-profile (lme4's ``confint.merMod``) and
  parametric-bootstrap intervals;
- :func:`anova`: likelihood-ratio tests between models (REML fits refitted by
  ML), or F tests of one LMM's fixed-effect terms (lmerTest);
- :func:`bootstrap`: parametric bootstrap on the fitted design (lme4's ``bootMer``).
"""

from ._api import RefitWarning, anova, coef_table, confint, tidy
from ._bootstrap import BootstrapResult, bootstrap, simulate

__all__ = ["BootstrapResult", "RefitWarning", "anova", "bootstrap", "coef_table", "confint", "simulate", "tidy"]
