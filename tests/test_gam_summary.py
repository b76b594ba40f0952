"""summary.gam / gam.check for AdditiveMixedRegressor against mgcv 1.8-41 (issue 19, item 4).

R (tests/data/gamsim_mgcv_formula.R data):
  b <- bam(y ~ s(x0, k=10, bs="cr") + s(x1, bs="ps") + te(x2, x3) + s(fac, bs="re") + z, data=d, discrete=TRUE)
  summary(b)$s.table; set.seed(1); mgcv:::k.check(b); summary(b)$r.sq; summary(b)$dev.expl
"""

import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from skmixed import AdditiveMixedRegressor
from skmixed._gam_stats import format_pval, psum_chisq_sf

FORMULA = "y ~ s(x0, k = 10, bs = 'cr') + s(x1, bs = 'ps') + te(x2, x3) + s(fac, bs = 're') + z"
# summary(b)$s.table (edf, Ref.df, F) for the smooths
S_TABLE = {"s(x0)": (4.538311901, 5.552522595, 36.01960233), "s(x1)": (3.484735419, 4.187649854, 454.36081353),
           "te(x2,x3)": (8.985410939, 9.001603661, 482.28244298)}
K_INDEX = {"s(x0)": 1.0310871425, "s(x1)": 0.9939169493, "te(x2,x3)": 0.8963230558}
R_SQ, DEV_EXPL = 0.6984165, 0.7020409


@pytest.fixture(scope="module")
def fit():
    d = pd.read_csv(DATA / "gamsim_mgcv_formula.csv")
    return AdditiveMixedRegressor.from_formula(FORMULA, d), d


def test_smooth_table_against_summary_gam(fit):
    m, _ = fit
    tab = m.smooth_table()
    for name, (edf, ref_df, F) in S_TABLE.items():
        assert tab.loc[name, "edf"] == pytest.approx(edf, abs=1e-3)
        assert tab.loc[name, "Ref.df"] == pytest.approx(ref_df, abs=1e-3)
        assert tab.loc[name, "F"] == pytest.approx(F, rel=1e-3)
    assert tab["p-value"].notna().all() and np.isfinite(tab.loc["s(fac)", "F"])
    assert m.r2_adj_ == pytest.approx(R_SQ, abs=1e-4)
    assert m.deviance_explained_ == pytest.approx(DEV_EXPL, abs=1e-4)
    text = str(m.summary())
    assert "<2e-16" in text and "NaN" not in text and FORMULA in text
    # no p-value printed as a bare 0
    table = text.split("---")[0]
    assert not any(tok == "0" for line in table.splitlines() for tok in line.split())


def test_gam_check_k_index(fit, tmp_path):
    m, d = fit
    chk = m.gam_check(d, d["y"], random_state=0, n_rep=100)
    for name, k in K_INDEX.items():
        # 1-D: the same ordering as mgcv; te: nearest neighbours among tied distances may differ
        assert chk.loc[name, "k-index"] == pytest.approx(k, abs=1e-6 if name.startswith("s(") else 0.01)
    assert chk.loc["te(x2,x3)", "p-value"] < 0.01 and chk.loc["s(x0)", "p-value"] > 0.2
    assert chk.loc["s(x0)", "k'"] == 9 and chk.loc["te(x2,x3)", "k'"] == 24
    assert np.isnan(chk.loc["s(fac)", "k-index"])
    import matplotlib

    matplotlib.use("Agg")
    chk = m.gam_check(d, d["y"], random_state=0, n_rep=10, plot=True)
    chk.attrs["figure"].savefig(tmp_path / "check.png")
    ax = m.plot_partial("s(x0)", rug=d["x0"])
    assert len(ax.lines) == 2


def test_pvalue_helpers():
    assert format_pval(0.0) == "<2e-16" and format_pval(1e-300) == "<2e-16"
    assert format_pval(0.0001234) == "0.0001234" and format_pval(3.2e-9) == "3.2e-09"
    from scipy import stats

    assert psum_chisq_sf(5.0, [1.0, 1.0]) == pytest.approx(stats.chi2.sf(5.0, 2), abs=1e-7)
    # F-type mixture: P(chi2_2 > (d/k) chi2_k) is an F tail
    assert psum_chisq_sf(0.0, [1.0, 1.0, -6.0 / 30], [1, 1, 30]) == pytest.approx(stats.f.sf(3.0, 2, 30), abs=1e-7)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_concurvity_against_mgcv():
    # R: b2 <- bam(y ~ s(x0, k=6, bs="cr") + s(x1, k=12, bs="ps") + te(x2, x3, k=c(4, 6), bs=c("cr", "ps")) + z,
    #              data=d, discrete=FALSE); concurvity(b2)      (mgcv 1.8-41)
    ref = {"s(x0)": (0.017749185231, 0.009056598683, 0.010224583256),
           "s(x1)": (0.02308260590, 0.01152853281, 0.01083843146),
           "te(x2,x3)": (0.023949966186, 0.007832445836, 0.004953177876)}
    d = pd.read_csv(DATA / "gamsim_mgcv_formula.csv")
    m = AdditiveMixedRegressor.from_formula(
        "y ~ s(x0, k=6, bs='cr') + s(x1, k=12, bs='ps') + te(x2, x3, k=c(4, 6), bs=c('cr', 'ps')) + z", d,
        discrete=False)
    c = m.concurvity(d)
    for name, (worst, obs, est) in ref.items():
        assert c.loc["worst", name] == pytest.approx(worst, rel=1e-6)
        assert c.loc["observed", name] == pytest.approx(obs, rel=1e-5)
        assert c.loc["estimate", name] == pytest.approx(est, rel=0.02)
    # "para" is the whole parametric part here (mgcv 1.8-41 takes its first column only)
    assert list(c.columns) == ["para", "s(x0)", "s(x1)", "te(x2,x3)"]
    # random-effect term (mgcv: observed 0.01477329604, estimate 0.06349680832 on the main model)
    m2, _ = AdditiveMixedRegressor.from_formula(FORMULA, d), None
    c2 = m2.concurvity(d)
    assert c2.loc["observed", "s(fac)"] == pytest.approx(0.01477329604, rel=1e-5)
    assert c2.loc["estimate", "s(fac)"] == pytest.approx(0.06349680832, rel=1e-6)
