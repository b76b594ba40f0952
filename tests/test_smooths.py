"""Smooth bases against mgcv 1.8-41.

R (numbers pasted below):
    x <- c(0.05,0.1,0.13,0.2,0.22,0.35,0.4,0.41,0.5,0.55,0.6,0.72,0.8,0.81,0.9,0.95,0.97,0.99)
    sm <- smoothCon(s(x, bs=bs, k=6), data=data.frame(x=x), absorb.cons=FALSE, scale.penalty=FALSE)[[1]]
    sm$X[3,]; sm$S[[1]][2,]; PredictMat(sm, data.frame(x=c(0.33, 1.2, -0.1)))
    sm2 <- smoothCon(s(x, bs=bs, k=6), data=d, absorb.cons=TRUE, scale.penalty=TRUE)[[1]]
    sm2$X[3,]; diag(sm2$S[[1]]); sm2$S.scale
"""

import numpy as np
import pytest

from skmixed._design.smooths import make_smooth

X = np.array([0.05, 0.1, 0.13, 0.2, 0.22, 0.35, 0.4, 0.41, 0.5, 0.55, 0.6, 0.72, 0.8, 0.81, 0.9, 0.95, 0.97, 0.99])

MGCV = {
    "cr": dict(
        knots=[0.05, 0.208, 0.408, 0.624, 0.864, 0.99],
        xrow3=[0.4041380757447746, 0.6848221968233299, -0.110214461909933, 0.02648286336776584,
               -0.007687779975819162, 0.002459105949882181],
        srow2=[-721.125900530378658, 1630.93654522180077, -1306.368891372231701, 494.114251797899897,
               -143.437724160989148, 45.881719043899011],
        pred=[-0.0883817231232012, 0.467483473727568, 0.715012077534566, -0.117266465050051,
              0.0340415901908925, -0.0108889532797737, -0.00552047031396061, 0.0254946360039329,
              -0.0863758441499812, 0.279095207233017, -2.19544180803133, 2.98274827925832,
              2.17511622777893, -1.39942176312860, 0.277896112144431, -0.0667742203774348,
              0.0193840638449771, -0.00620042026228777],
        cxrow3=[0.42255674328585036, -0.4013252402479397, -0.23195194648912726, -0.30160123045856768,
                -0.17791017339888726],
        csdiag=[1.14100112631106443, 0.68179330883775102, 0.82836952137800568, 0.82888236313127417,
                0.35058423247019710],
        sscale=1871.5949797899243,
    ),
    "ps": dict(
        knots=[-0.89282, -0.57886, -0.2649, 0.04906, 0.36302, 0.67698, 0.99094, 1.3049, 1.61886, 1.93282],
        xrow3=[0.0681405103787432, 0.608771155847577, 0.320232615316151, 0.00285571845752869, 0, 0],
        srow2=[-2, 5, -4, 1, 0, 0],
        pred=[0.000193890707407678, 0.224201952686776, 0.656187055960716, 0.119417100645100, 0, 0,
              0, 0, 0, -0.166273835308107, 0.666666666666667, 0.499607168641440,
              0.404053594937784, 0.666666666666667, -0.0707202616044507, 0, 0, 0],
        cxrow3=[0.430085517883195156, 0.044049878137156717, -0.263702294551205307, -0.204104580573880312,
                -0.026634074149614467],
        csdiag=[0.409258243450168258, 0.307174690575417686, 0.407983634934932171, 0.302473632557221539,
                0.064316309049220588],
        sscale=15.999999999999993,
    ),
}


@pytest.mark.parametrize("bs", ["cr", "ps"])
def test_basis_matches_mgcv(bs):
    ref = MGCV[bs]
    sm = make_smooth(bs, X, 6)
    np.testing.assert_allclose(sm.knots, ref["knots"], rtol=1e-12, atol=1e-12)
    B = sm.basis(X)
    np.testing.assert_allclose(B[2], ref["xrow3"], atol=1e-12)
    np.testing.assert_allclose(sm.penalty[1], ref["srow2"], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(sm.basis(np.array([0.33, 1.2, -0.1])).ravel(), ref["pred"], atol=1e-12)
    c = sm.centred(B)
    np.testing.assert_allclose(B[2] @ c.Z, ref["cxrow3"], atol=1e-12)
    np.testing.assert_allclose(np.diag(c.S), ref["csdiag"], rtol=1e-10)
    np.testing.assert_allclose(c.S_scale, ref["sscale"], rtol=1e-10)
    assert c.rank == 4
    # centred basis has (weighted) column means zero
    np.testing.assert_allclose((B @ c.Z).mean(axis=0), 0, atol=1e-12)


@pytest.mark.parametrize("bs", ["cr", "ps"])
def test_smooth_errors(bs):
    with pytest.raises(ValueError, match="constant"):
        make_smooth(bs, np.ones(20), 5)
    with pytest.raises(ValueError, match="unique"):
        make_smooth(bs, np.repeat([1.0, 2.0, 3.0, 4.0], 5), 6)
    with pytest.raises(ValueError, match="NaN"):
        make_smooth(bs, np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0]), 4)
    with pytest.raises(ValueError, match="unknown basis"):
        make_smooth("tp", X, 5)
