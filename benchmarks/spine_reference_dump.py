"""Dump the estimates of every estimator on the stored reference sets to JSON, and compare two dumps.

Used for issue #13 ("one spine"): a structural refactor may move code but must not change a single
estimate. Run once before a change and once after, then compare::

    python benchmarks/spine_reference_dump.py dump before.json
    python benchmarks/spine_reference_dump.py dump after.json
    python benchmarks/spine_reference_dump.py compare before.json after.json   # max relative difference

The relative difference of two numbers a, b is |a - b| / max(|a|, |b|, 1e-300), zero when both are equal;
the comparison prints the largest one per case and overall.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE.parent / "tests" / "data"
ATTRS = ("fixed_effects_", "fixed_effects_se_", "theta_", "sigma_", "loglik_", "aic_", "bic_", "deviance_",
         "reml_criterion_", "scale_", "edf_", "sp_", "re_sd_", "cov_re_", "converged_", "is_singular_")


def _flat(value):
    if isinstance(value, (bool, np.bool_)):
        return [float(value)]
    if isinstance(value, (int, float, np.integer, np.floating)):
        return [float(value)]
    if isinstance(value, (pd.Series, pd.DataFrame)):
        return [float(v) for v in np.asarray(value.to_numpy(), dtype=float).ravel()]
    if isinstance(value, np.ndarray):
        return [float(v) for v in np.asarray(value, dtype=float).ravel()]
    if isinstance(value, dict):
        out = []
        for k in sorted(value, key=str):
            out += _flat(value[k])
        return out
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out += _flat(v)
        return out
    return None


def _record(est, X=None, groups=None, **predict_kw):
    rec = {}
    for a in ATTRS:
        try:
            v = getattr(est, a)
        except Exception:
            continue
        f = _flat(v)
        if f is not None:
            rec[a] = f
    re_ = getattr(est, "random_effects_", None)
    if isinstance(re_, dict):
        rec["random_effects_"] = _flat(re_)
    if X is not None:
        rec["predict"] = _flat(np.asarray(est.predict(X, groups=groups, **predict_kw), dtype=float))
    return rec


def cases():
    from skmixed import (AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor,
                         MixedPoissonRegressor, SplitSampleMixed, StreamingMixed, datasets)

    lin = {
        "sleepstudy_reml": (datasets.load_sleepstudy, "Reaction ~ Days + (Days | Subject)", True),
        "sleepstudy_ml": (datasets.load_sleepstudy, "Reaction ~ Days + (Days | Subject)", False),
        "sleepstudy_uncorr": (datasets.load_sleepstudy, "Reaction ~ Days + (Days || Subject)", True),
        "dyestuff_reml": (datasets.load_dyestuff, "Yield ~ 1 + (1 | Batch)", True),
        "dyestuff2_reml": (datasets.load_dyestuff2, "Yield ~ 1 + (1 | Batch)", True),
        "penicillin_reml": (datasets.load_penicillin, "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
        "pastes_reml": (datasets.load_pastes, "strength ~ 1 + (1 | batch/cask)", True),
    }
    for name, (loader, f, reml) in lin.items():
        df = loader()
        m = MixedLinearRegressor.from_formula(f, df, reml=reml)
        yield "lmm_" + name, _record(m, df)
    df = datasets.load_sleepstudy()
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    yield "lmm_sleepstudy_array", _record(m, df[["Days"]], df["Subject"])
    cw = pd.read_csv(DATA / "crossed_weighted.csv")
    cl = pd.read_csv(DATA / "crossed_large.csv")
    for key, f, reml in [("crossed3", "y ~ x + (1 | a) + (1 | b) + (1 | c)", True),
                         ("slopes", "y ~ x + (1 | a) + (1 + x | b)", True)]:
        yield "lmm_crossed_large_" + key, _record(MixedLinearRegressor.from_formula(f, cl, reml=reml), cl)
    m = MixedLinearRegressor.from_formula("y ~ x + (1 | a) + (1 | b) + (0 + x | c)", cw,
                                          sample_weight=cw["w"].to_numpy(float), reml=False)
    yield "lmm_crossed_weighted_ml", _record(m, cw)
    pw = pd.read_csv(DATA / "sleepstudy_weights.csv")
    m = MixedLinearRegressor(random_slopes=["Days"], weights="precision").fit(
        pw[["Days"]], pw["Reaction"], groups=pw["Subject"], sample_weight=pw["w"].to_numpy(float))
    yield "lmm_precision_weights", _record(m, pw[["Days"]], pw["Subject"])

    cb = datasets.load_cbpp_bernoulli()
    f = "y ~ period + (1 | herd)"
    yield "glmm_cbpp_laplace", _record(MixedLogisticRegressor.from_formula(f, cb), cb)
    yield "glmm_cbpp_agq25", _record(MixedLogisticRegressor.from_formula(f, cb, nagq=25), cb)
    yield "glmm_cbpp_nagq0", _record(MixedLogisticRegressor.from_formula(f, cb, nagq=0), cb)
    mc = datasets.load_metacognition()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield "glmm_metacognition", _record(
            MixedLogisticRegressor.from_formula("correct ~ contrast + (1 + contrast | id)", mc), mc)
    c = datasets.load_cbpp()
    Xc = pd.get_dummies(c["period"], prefix="period", drop_first=True).astype(float)
    m = MixedLogisticRegressor().fit(Xc, c["incidence"] / c["size"], groups=c["herd"], sample_weight=c["size"])
    yield "glmm_cbpp_trials", _record(m, Xc, c["herd"])
    ep = pd.read_csv(DATA / "epil.csv")
    Xe = pd.DataFrame({"trtprogabide": (ep["trt"] == "progabide").astype(float), "lage": ep["lage"],
                       "V4": ep["V4"]})
    for nagq in (1, 9):
        m = MixedPoissonRegressor(nagq=nagq).fit(Xe, ep["y"], groups=ep["subject"],
                                                 offset=np.log(ep["rate_base"]))
        yield f"pois_epil_nagq{nagq}", _record(m)
    gt = pd.read_csv(DATA / "grouseticks.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MixedPoissonRegressor.from_formula("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", gt)
    yield "pois_grouseticks", _record(m, gt)

    gs = datasets.load_gamsim_re()
    sm = ["x0", "x1", "x2", "x3"]
    for name, params, ycol in [("plain", dict(discrete=False), "y"), ("discrete", dict(discrete=True), "y"),
                               ("binomial", dict(discrete=True, family="binomial"), "yb")]:
        m = AdditiveMixedRegressor(smooth=sm, **params).fit(gs[sm], gs[ycol], groups=gs["fac"])
        yield f"gam_{name}", _record(m, gs[sm], gs["fac"])
    m = AdditiveMixedRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    yield "gam_sleepstudy_slopes", _record(m, df[["Days"]], df["Subject"])

    big = datasets.make_big_grouped_data(20_000, 80, seed=11)
    for strat in ("groups", "within"):
        ss = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=4, random_state=0, strategy=strat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ss.fit(big[["x", "b"]], big["y"], groups=big["g"])
        yield f"split_lmm_{strat}", _record(ss, big[["x", "b"]], big["g"])
        yield f"split_lmm_{strat}_first", _record(ss.estimators_[0], big[["x", "b"]], big["g"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = SplitSampleMixed(MixedLogisticRegressor(), n_subsamples=4, random_state=0).fit(
            big[["x", "b"]], big["y_bin"], groups=big["g"])
    yield "split_glmm", _record(ss, big[["x", "b"]], big["g"])
    st = StreamingMixed()
    for i in range(0, len(big), 5000):
        ch = big.iloc[i:i + 5000]
        st.partial_fit(ch[["x", "b"]], ch["y"], groups=ch["g"])
    yield "stream_lmm", _record(st, big[["x", "b"]], big["g"])


def dump(path):
    out = {}
    for name, rec in cases():
        out[name] = rec
        print(name, len(rec), file=sys.stderr)
    Path(path).write_text(json.dumps(out))


def compare(a_path, b_path):
    a = json.loads(Path(a_path).read_text())
    b = json.loads(Path(b_path).read_text())
    worst = 0.0
    if set(a) != set(b):
        print("cases differ:", sorted(set(a) ^ set(b)))
    for case in sorted(set(a) & set(b)):
        cmax = 0.0
        for key in sorted(set(a[case]) | set(b[case])):
            if key not in a[case] or key not in b[case]:
                print(f"  {case}.{key}: only in one dump")
                cmax = np.inf
                continue
            x, y = np.asarray(a[case][key], float), np.asarray(b[case][key], float)
            if x.shape != y.shape:
                print(f"  {case}.{key}: shapes {x.shape} vs {y.shape}")
                cmax = np.inf
                continue
            both_nan = np.isnan(x) & np.isnan(y)
            d = np.abs(x - y) / np.maximum(np.maximum(np.abs(x), np.abs(y)), 1e-300)
            d = np.where(both_nan | (x == y), 0.0, d)
            if d.size and d.max() > 0:
                print(f"  {case}.{key}: max rel diff {d.max():.3g}")
            cmax = max(cmax, float(d.max()) if d.size else 0.0)
        print(f"{case}: {cmax:.3g}")
        worst = max(worst, cmax)
    print(f"OVERALL max relative difference: {worst:.3g}")
    return worst


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3]) <= 1e-10 else 1)
