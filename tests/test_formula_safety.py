"""Formulas never execute code; every formula mistake is a clear ValueError (acceptance 3, step 4)."""

import dataclasses
import pickle
import re

import numpy as np
import pandas as pd
import pytest

from skmixed import MixedLinearRegressor, MixedLogisticRegressor, StreamingMixed
from skmixed._design.formula import FormulaSpec, parse_formula
from skmixed.datasets import load_sleepstudy

# each formula tries to create the file S (replaced by a temporary path); none may
HOSTILE = [
    "y ~ I(__import__('os').system('touch S')) + (1 | g)",
    "y ~ {__import__('os').system('touch S')} + (1 | g)",
    "y ~ x + I(open('S', 'w').write('x')) + (1 | g)",
    "y ~ I(eval(\"open('S', 'w')\")) + (1 | g)",
    "y ~ I(exec(\"open('S', 'w')\")) + (1 | g)",
    "y ~ I((lambda: open('S', 'w'))()) + (1 | g)",
    "y ~ I(x.__class__.__mro__[1].__subclasses__()) + (1 | g)",
    "y ~ I(np.os.system('touch S')) + (1 | g)",
    "y ~ I(getattr(np, 'os').system('touch S')) + (1 | g)",
    "y ~ I(globals()['__builtins__']['open']('S', 'w')) + (1 | g)",
    "y ~ I(__builtins__) + (1 | g)",
    "y ~ I([open('S', 'w') for _ in [1]]) + (1 | g)",
    "y ~ I(f\"{open('S', 'w')}\") + (1 | g)",
    "y ~ I((f := open('S', 'w'))) + (1 | g)",
    "y ~ C(g, __import__('os').system('touch S')) + (1 | g)",
    "y ~ log(open('S', 'w')) + (1 | g)",
    "y ~ I(x if open('S', 'w') else x) + (1 | g)",
    "y ~ I(compile('open(\"S\", \"w\")', 's', 'eval')) + (1 | g)",
    "y ~ I(vars()) + (1 | g)",
    "y ~ I(breakpoint()) + (1 | g)",
    "y ~ I(np.save('S', x)) + (1 | g)",
    "y ~ I(np.lib.npyio.os.system('touch S')) + (1 | g)",
    "y ~ I(x.real.__add__(1)) + (1 | g)",
    "y ~ poly(x, degree=__import__('os').system('touch S')) + (1 | g)",
    "y ~ bs(x, df=open('S', 'w')) + (1 | g)",
    "y ~ I(*[open('S', 'w')]) + (1 | g)",
    "y ~ I(**{'x': open('S', 'w')}) + (1 | g)",
    "y ~ I(type(x).__name__) + (1 | g)",
    "y ~ I(setattr(x, 'a', open('S', 'w'))) + (1 | g)",
    "y ~ I(x[open('S', 'w')]) + (1 | g)",
    "open('S', 'w') ~ x + (1 | g)",
    "y ~ x + (I(open('S', 'w')) | g)",
    "y ~ x + offset(open('S', 'w')) + (1 | g)",
    "cbind(open('S', 'w'), x) ~ x + (1 | g)",
    "y ~ __class__ + (1 | g)",
    "y ~ I(contr.__class__) + (1 | g)",
    "y ~ I({open('S', 'w')}) + (1 | g)",
    "y ~ I(x ** 9 ** 9 ** 9) + (1 | g)",
    "y ~ I('a' * 10 ** 9) + (1 | g)",
    "y ~ x + (1 | __import__('os'))",
    "y ~ I(x.__globals__) + (1 | g)",
    "y ~ scale(x).__reduce__() + (1 | g)",
    "y ~ I(np.frompyfunc(open, 2, 1)('S', 'w')) + (1 | g)",
    "y ~ I(pd.read_csv('S')) + (1 | g)",
    "y ~ I(lambda: 0) + (1 | g)",
    "y ~ I(x @ x) + (1 | g)",
    "y ~ I(not x) + (1 | g)",
    "y ~ I(x and open('S', 'w')) + (1 | g)",
    "y ~ I(await x) + (1 | g)",
    "y ~ I(print('S')) + (1 | g)",
]
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    n = 120
    return pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 12, n).astype(str),
                         "y": rng.normal(size=n), "k": rng.integers(0, 4, n), "n": np.full(n, 4)})


def test_there_are_at_least_30_hostile_formulas():
    assert len(HOSTILE) >= 30 and len(set(HOSTILE)) == len(HOSTILE)


@pytest.mark.parametrize("k", range(len(HOSTILE)))
def test_hostile_formula_is_refused_and_runs_nothing(k, frame, tmp_path):
    sentinel = tmp_path / "PWNED"
    formula = HOSTILE[k].replace("S", str(sentinel).replace("\\", "/"))
    for est in (MixedLinearRegressor(formula=formula), StreamingMixed(formula=formula)):
        with pytest.raises(ValueError) as err:
            est.fit(frame)
        msg = str(err.value)
        assert not ANSI.search(msg)
        assert "formula" in msg or "grouping factor" in msg or "response" in msg
        assert not sentinel.exists()
    with pytest.raises(ValueError):
        MixedLinearRegressor.from_formula(formula, frame)
    assert not sentinel.exists()


def test_a_tampered_spec_is_refused_at_predict_and_in_partial_fit(frame, tmp_path):
    # a spec read back from a file is checked again before every evaluation
    sentinel = tmp_path / "PWNED"
    m = MixedLinearRegressor(formula="y ~ x + (1 | g)").fit(frame)
    spec = m.formula_spec()
    evil = dataclasses.replace(spec, parsed=dataclasses.replace(
        spec.parsed, fixed=f"x + I(open('{sentinel.as_posix()}', 'w'))"))
    m._formula = evil  # what an edited pickle would carry
    with pytest.raises(ValueError, match="not allowed"):
        m.predict(frame)
    s = StreamingMixed(formula="y ~ x + (1 | g)").fit(frame)
    s._formula = pickle.loads(pickle.dumps(evil))
    with pytest.raises(ValueError, match="not allowed"):
        s.partial_fit(frame)
    assert not sentinel.exists()


def test_builtins_are_shadowed_in_formulaic_evaluation(frame):
    # second wall: even a name the whitelist lets through cannot reach a builtin; a column named like
    # a builtin is the column
    df = frame.assign(len=frame["x"] * 2)
    m = MixedLinearRegressor(formula="y ~ I(len / 2) + (1 | g)").fit(df)
    np.testing.assert_allclose(m.formula_spec().rows(df)[0].iloc[:, 0], frame["x"])


# ----------------------------------------------------------------- what is allowed
def test_allowed_transforms(frame):
    df = frame.assign(z=np.abs(frame["x"]) + 1, k=np.where(frame["x"] > 0, "a", "b"))
    spec, X, _ = FormulaSpec.build("y ~ I(x^2) + I(x**3) + log(z) + exp(x) + sqrt(z) + np.log1p(z) + scale(x) "
                                   "+ center(z) + C(k) + I((x > 0) * 1.5) + abs(x) + (1 | g)", df)
    assert list(X.columns) == ["I(x ** 2)", "I(x ** 3)", "log(z)", "exp(x)", "sqrt(z)", "np.log1p(z)",
                               "scale(x)", "center(z)", "kb", "I((x > 0) * 1.5)", "abs(x)"]
    np.testing.assert_allclose(X["I(x ** 2)"], df["x"] ** 2)
    np.testing.assert_allclose(X["sqrt(z)"], np.sqrt(df["z"]))
    np.testing.assert_allclose(X["np.log1p(z)"], np.log1p(df["z"]))
    np.testing.assert_allclose(X["center(z)"], df["z"] - df["z"].mean())
    np.testing.assert_allclose(X["I((x > 0) * 1.5)"], 1.5 * (df["x"] > 0))
    m = MixedLinearRegressor(formula="y ~ I(x^2) + log(z) + C(k) + (1 | g)").fit(df)
    assert list(m.fixed_effects_.index) == ["(Intercept)", "I(x ** 2)", "log(z)", "kb"]
    m2 = MixedLinearRegressor(formula="y ~ poly(x, 2) + bs(x, df=4) + cr(z, df=3) + (1 | g)").fit(df)
    assert m2.fixed_effects_.size >= 1 + 2 + 3
    assert np.isfinite(m2.predict(df)).all()


# ----------------------------------------------------------------- friendly errors (step 4)
@pytest.mark.parametrize("formula,msg", [
    ("y ~ x + 1 | g", "must be in parentheses"),
    ("y ~ x + (1 | g", "never closed"),
    ("y ~ x + (1 | g))", "unbalanced"),
    ("y ~ x + (| g)", "nothing before the bar"),
    ("y ~ x + (1 | )", "no grouping factor"),
    ("y ~ x ~ g", "one '~'"),
    ("y x", "needs '~'"),
    ("y ~ ", "no terms"),
    ("y ~ x + + (1 | g)", "empty term"),
    ("y ~ xx + (1 | g)", "'xx' is not a column"),
    ("y ~ I(xx ** 2) + (1 | g)", "'xx' is not a column"),
    ("y ~ x + (1 | h)", "grouping column"),
    ("yy ~ x + (1 | g)", "response 'yy' not in data"),
    ("y ~ x + (1 | g) - 1", "added on its own"),
    ("y ~ log + (1 | g)", "transform"),
    ("cbind(k, n - k) ~ x + (1 | g)", "binomial"),
    ("y ~ x + (1 | g) + (x | )", "no grouping factor"),
])
def test_formula_mistakes_are_value_errors_with_a_caret(formula, msg, frame):
    with pytest.raises(ValueError, match=re.escape(msg)) as err:
        MixedLinearRegressor(formula=formula).fit(frame)
    text = str(err.value)
    assert not ANSI.search(text)
    lines = text.splitlines()
    if any(line.strip() == "^" for line in lines):
        k = [i for i, line in enumerate(lines) if line.strip() == "^"][0]
        assert lines[k - 1].strip() == formula.strip()


def test_formulaic_syntax_errors_lose_their_colour(frame):
    with pytest.raises(ValueError) as err:
        MixedLinearRegressor(formula="y ~ x + C(g)[ + (1 | g)").fit(frame)
    assert not ANSI.search(str(err.value))


def test_lme4_syntax(frame):
    df = frame.assign(h=np.repeat(np.arange(4), 30).astype(str))
    a = MixedLinearRegressor(formula="y ~ x + ((1 | g))").fit(df)
    b = MixedLinearRegressor(formula="y ~ x + (1 | g)").fit(df)
    np.testing.assert_array_equal(a.fixed_effects_, b.fixed_effects_)
    nested = MixedLinearRegressor(formula="y ~ x + (1 | h/g)").fit(df)
    assert sorted(nested.cov_re_) == ["g:h", "h"]
    unc = MixedLinearRegressor(formula="y ~ x + (x || g)").fit(df)
    assert list(unc.theta_.index) == ["g.(Intercept)", "g.x"]
    p = parse_formula("y ~ x + (0 + x | g) + (1 | a/b)")
    assert [(t.expr, t.factor) for t in p.terms] == [("0 + x", "g"), ("1", "a"), ("1", "b:a")]


def test_cbind_response_is_the_proportion_with_trials_as_weights():
    rng = np.random.default_rng(1)
    n = 200
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 20, n)})
    df["n"] = rng.integers(1, 8, n)
    p = 1 / (1 + np.exp(-(0.3 + 0.8 * df["x"] + rng.normal(0, 0.7, 20)[df["g"]])))
    df["k"] = rng.binomial(df["n"], p)
    m = MixedLogisticRegressor(formula="cbind(k, n - k) ~ x + (1 | g)").fit(df)
    ref = MixedLogisticRegressor().fit(df[["x"]], df["k"] / df["n"], groups=df["g"], sample_weight=df["n"])
    np.testing.assert_array_equal(m.fixed_effects_, ref.fixed_effects_)
    assert m.loglik_ == ref.loglik_
    assert m.predict_proba(df).shape == (n, 2)
    # the same estimates as the Bernoulli rows weighted by counts
    succ, fail = df.assign(y=1, w=df["k"]), df.assign(y=0, w=df["n"] - df["k"])
    long = pd.concat([succ, fail])
    long = long[long["w"] > 0]
    bern = MixedLogisticRegressor().fit(long[["x"]], long["y"], groups=long["g"], sample_weight=long["w"])
    np.testing.assert_allclose(m.fixed_effects_, bern.fixed_effects_, rtol=1e-5)
