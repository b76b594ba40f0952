"""The bootstrap's per-level simulation of sufficient statistics (skmixed/inference/_grouped_sim.py).

1. Exactness, deterministically: rows are simulated, the standard normals and chi-squares the grouped
   simulator would have drawn are recovered from them (``eps_j = Lambda_j^(-1/2) Q_j' H~_j' e~_j``,
   ``chi2_j = ||e~_j||^2 - ||eps_j||^2``), and the statistics it builds from them equal the rows' own
   cross-products to rounding (1e-10 relative) -- with a random slope, a random intercept the fixed part
   lacks, precision weights, a level-constant covariate (singular level Grams) and levels of one or two
   rows (no residual degrees of freedom left).
2. In distribution: bootstrap standard errors and percentile intervals from both simulations agree within
   sampling error (400 replicates each; SDs to 20 %, about 4 standard errors of their ratio).
"""

import numpy as np
import pytest

from skmixed import MixedLinearRegressor
from skmixed.datasets import load_penicillin, load_sleepstudy, make_big_grouped_data
from skmixed.inference._bootstrap import _LMMReplicator, training_rows
from skmixed.inference._grouped_sim import GroupedSimulator


def _rows_and_consistent_draws(m, B, seed):
    rep = _LMMReplicator(m)
    sim = GroupedSimulator(m, rep)
    rows = training_rows(m)
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((sim.q, sim.J, B)) * 2
    et = rng.standard_normal((rows.X.shape[0], B))
    blk = m._lmm_state.problem.layout.blocks[0]
    codes = np.asarray(rows.codes[blk.factor])
    Z = blk.z_rows(rows.X)
    Y = ((rows.X @ m.fixed_effects_.to_numpy())[:, None] + np.einsum("na,ans->ns", Z, b[:, codes, :])
         + (m.sigma_ / np.sqrt(rep.w))[:, None] * et)
    H = rows.X - rep.x_shift
    if sim.pp > sim.p:
        H = np.c_[H, np.ones(len(Y))]
    Ht = H * np.sqrt(rep.w)[:, None]
    lam, Q = np.linalg.eigh(sim.G)
    eps = np.zeros((sim.J, B, sim.pp))
    chi2 = np.zeros((sim.J, B))
    for j in range(sim.J):
        r = codes == j
        k = sim.keep[j]
        e = (Q[j].T @ (Ht[r].T @ et[r])) / np.sqrt(np.where(k, lam[j], 1.0))[:, None]
        e[~k] = 0.0
        eps[j] = e.T
        chi2[j] = (et[r] ** 2).sum(axis=0) - (e**2).sum(axis=0)
    return rep.y_parts(Y), sim.parts(b, eps, chi2)


def _small_levels():
    sl = load_sleepstudy()
    keep = ~((sl["Subject"] == sl["Subject"].iloc[0]) & (sl["Days"] > 0))  # a one-row level
    keep &= ~((sl["Subject"] == sl["Subject"].iloc[15]) & (sl["Days"] > 1))  # a two-row level
    return sl[keep]


def _precision():
    sl = load_sleepstudy()
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(sl))
    return MixedLinearRegressor(weights="precision").fit(sl[["Days"]], sl["Reaction"], groups=sl["Subject"],
                                                         sample_weight=w)


def _big():
    df = make_big_grouped_data(20_000, 200, seed=0)
    return MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])


CASES = {
    "random_slope": lambda: MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)",
                                                              load_sleepstudy()),
    "no_fixed_intercept": lambda: MixedLinearRegressor.from_formula("Reaction ~ 0 + Days + (1 | Subject)",
                                                                    load_sleepstudy()),
    "tiny_levels": lambda: MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)",
                                                             _small_levels()),
    "precision_weights": _precision,
    "level_constant_covariate": _big,
}


@pytest.mark.parametrize("case", list(CASES))
def test_grouped_statistics_equal_the_rows_cross_products(case):
    ref, got = _rows_and_consistent_draws(CASES[case](), B=3, seed=7)
    for name, g, r in zip(["zy", "xy", "yy", "ysh"], got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10 * max(np.abs(r).max(), 1.0), err_msg=name)


def test_grouped_and_row_bootstraps_agree_in_distribution():
    m = _big()
    bg = m.bootstrap(400, random_state=3, simulation="groups")
    br = m.bootstrap(400, random_state=4, simulation="rows")
    assert len(bg.replicates) == len(br.replicates) == 400
    sd_g, sd_r = bg.replicates.std(), br.replicates.std()
    np.testing.assert_allclose(sd_g / sd_r, 1.0, atol=0.2)
    se_mean = np.sqrt(sd_g**2 / 400 + sd_r**2 / 400)
    assert np.all(np.abs(bg.replicates.mean() - br.replicates.mean()) < 4 * se_mean)
    ci_g, ci_r = bg.confint(0.9), br.confint(0.9)
    assert np.all(np.abs(ci_g - ci_r).to_numpy() < 0.5 * sd_r.to_numpy()[:, None])


def test_simulation_choice():
    sl = load_sleepstudy()
    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", sl)
    with pytest.raises(ValueError, match="simulation must be"):
        m.bootstrap(2, simulation="magic")
    with pytest.raises(ValueError, match="user statistic"):
        m.bootstrap(2, simulation="groups", statistic=lambda e: e.sigma_)
    pe = MixedLinearRegressor.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)", load_penicillin())
    with pytest.raises(ValueError, match="more than one grouping factor"):
        pe.bootstrap(2, simulation="groups")
    # small data: "auto" simulates rows (the same numbers as simulation="rows")
    a = m.bootstrap(3, random_state=2)
    r = m.bootstrap(3, random_state=2, simulation="rows")
    np.testing.assert_array_equal(a.replicates.to_numpy(), r.replicates.to_numpy())
    g = m.bootstrap(3, random_state=2, simulation="groups")
    assert g.replicates.shape == (3, 6) and np.isfinite(g.replicates.to_numpy()).all()
