"""The seed study's real-data application: Metacognition (Rausch & Zehetleitner 2016), vs lme4 / mgcv.

Run: ``python examples/metacognition.py``. 20 participants x 378 trials of a masked orientation task:
``contrast`` of the stimulus, ``correct`` response (0/1) and ``confidence`` rating (0-100).
Three models, each with random intercepts and contrast slopes per participant (``id``):

* confidence, linear mixed model (``lmer``),
* accuracy, logistic mixed model (``glmer``),
* confidence, additive mixed model with a smooth of contrast (``bam``).

Each is printed side by side with the R fit (numbers embedded below, R calls in the comments;
lme4 1.1-31, mgcv 1.8-41). lme4 warned that the linear fit had not converged, so for it the
example also compares the REML criterion: a correct optimum reaches it or a lower one.
"""

import argparse
import warnings

import numpy as np
import pandas as pd

from skmixed import AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor
from skmixed.datasets import load_metacognition

# lmer(confidence ~ contrast + correct + (1 + contrast | id), metacognition)
#   -> "Model failed to converge with max|grad| = 0.0037"
LMER = {"(Intercept)": 7.99553344864579, "contrast": 9.79962496249982, "correct": 15.7671081514474,
        "se (Intercept)": 5.18057203315862, "se contrast": 0.789956469583542, "se correct": 0.794365992231231,
        "sd (Intercept)": 22.9626014725859, "sd contrast": 3.47146103532898,
        "corr": -0.809793104939489, "sigma": 25.7848538164913, "REML criterion": 70746.1491379071}
# glmer(correct ~ contrast + (1 + contrast | id), metacognition, family = binomial)   (singular fit)
GLMER = {"(Intercept)": -0.464173908060717, "contrast": 0.522798585313992,
         "se (Intercept)": 0.050299613554986, "se contrast": 0.0254093740662093,
         "sd (Intercept)": 4.81531248663389e-10, "sd contrast": 0.0924781477485112,
         "logLik": -3270.05520964782}
# bam(confidence ~ s(contrast, bs='cr', k=5) + correct + s(id, bs='re') + s(id, contrast, bs='re'),
#     metacognition, method='fREML')
BAM = {"(Intercept)": 48.6042335414087, "correct": 12.8750144284275, "scale (sigma^2)": 587.938085625005,
       "sp s(contrast)": 9.74298296864931, "sp s(id)": 1.14667454326543, "sp s(id,contrast)": 1.04705652906235,
       "edf s(contrast)": 3.9876799497822, "edf s(id)": 18.777394136474, "edf s(id,contrast)": 18.5291967949833}


def compare(ours, reference):
    """Side-by-side table of skmixed's numbers and the reference.

    Parameters
    ----------
    ours, reference : dict
        Quantity name -> value; the table follows ``reference``'s order.

    Returns
    -------
    pandas.DataFrame
        Columns ``skmixed``, ``R``, ``difference`` indexed by quantity.
    """
    t = pd.DataFrame({"skmixed": pd.Series(ours), "R": pd.Series(reference)}).loc[list(reference)]
    return t.assign(difference=t["skmixed"] - t["R"])


def _sd_corr(cov):
    """Standard deviations and the first correlation of a random-effects covariance DataFrame."""
    sd = np.sqrt(np.diag(cov.to_numpy()))
    return sd, cov.to_numpy()[0, 1] / (sd[0] * sd[1]) if sd[0] * sd[1] > 0 else np.nan


def main(argv=None):
    """Fit the three models and print the comparisons (``argv``: command-line arguments, none used)."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    df = load_metacognition()
    pd.set_option("display.float_format", "{:.6g}".format)

    lmm = MixedLinearRegressor.from_formula("confidence ~ contrast + correct + (1 + contrast | id)", df)
    (sd_i, sd_c), corr = _sd_corr(lmm.cov_re_["id"])
    ours = {**lmm.fixed_effects_, **{f"se {k}": v for k, v in lmm.fixed_effects_se_.items()},
            "sd (Intercept)": sd_i, "sd contrast": sd_c, "corr": corr, "sigma": lmm.sigma_,
            "REML criterion": lmm.reml_criterion_}
    print("Confidence, linear mixed model: confidence ~ contrast + correct + (1 + contrast | id)")
    print(compare(ours, LMER).to_string())
    gap = lmm.reml_criterion_ - LMER["REML criterion"]
    verdict = "lower than or equal to" if gap <= 1e-6 else "HIGHER than"
    print(f"REML criterion: skmixed {lmm.reml_criterion_:.6f} is {verdict} lme4's {LMER['REML criterion']:.6f} "
          f"(difference {gap:.2e}; lme4 warned max|grad| = 0.0037, skmixed converged: {lmm.converged_})\n")

    with warnings.catch_warnings():   # the boundary fit is expected (glmer's is singular too): reported below
        warnings.simplefilter("ignore")
        glmm = MixedLogisticRegressor.from_formula("correct ~ contrast + (1 + contrast | id)", df)
    (sd_i, sd_c), _ = _sd_corr(glmm.cov_re_["id"])
    ours = {**glmm.fixed_effects_, **{f"se {k}": v for k, v in glmm.fixed_effects_se_.items()},
            "sd (Intercept)": sd_i, "sd contrast": sd_c, "logLik": glmm.loglik_}
    print("Accuracy, logistic mixed model (Laplace): correct ~ contrast + (1 + contrast | id)")
    print(compare(ours, GLMER).to_string())
    print(f"Both fits are singular (intercept SD on the boundary): skmixed is_singular_ = {glmm.is_singular_}\n")

    amm = AdditiveMixedRegressor(smooth=["contrast"], n_knots=5, random_slopes=["contrast"], discrete=False)
    amm.fit(df[["contrast", "correct"]], df["confidence"], groups=df["id"])
    ours = {**amm.fixed_effects_, "scale (sigma^2)": amm.scale_,
            **{f"sp {k}": v for k, v in amm.smoothing_params_.items()},
            **{f"edf {k}": v for k, v in amm.edf_.items()}}
    print("Confidence, additive mixed model (fREML): confidence ~ s(contrast, k=5) + correct"
          " + s(id, bs='re') + s(id, contrast, bs='re')")
    print(compare(ours, BAM).to_string())


if __name__ == "__main__":
    main()
