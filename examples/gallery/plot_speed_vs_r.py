"""
Speed against R
===============

Fit times of skmixed and of the R functions it reproduces, on the same data in the
same benchmark run, with the same estimates to the printed digits. The numbers are
stored from ``python benchmarks/run_all.py`` (see ``benchmarks/README.md`` of the
repository; 2-core Intel Xeon, shared machine) rather than re-measured while this
page is built.
"""

import matplotlib.pyplot as plt
import numpy as np

# (workload, skmixed seconds, R seconds, R function), from benchmarks/README.md
RESULTS = [
    ("LMM, 2M rows, 2,000 groups", 0.1606, 12.76, "lmer"),
    ("LMM, crossed 3 factors, 73k rows", 1.196, 22.55, "lmer"),
    ("logistic GLMM, 200k rows", 0.2756, 20.66, "glmer"),
    ("logistic GLMM, crossed, 73k rows", 61.52, 285.0, "glmer"),
    ("additive, gaussian, 200k rows", 0.094, 47.33, "bam"),
    ("additive, binomial, 200k rows", 0.369, 62.58, "bam"),
]

names = [r[0] for r in RESULTS]
sk = np.array([r[1] for r in RESULTS])
rr = np.array([r[2] for r in RESULTS])
pos = np.arange(len(RESULTS))

fig, ax = plt.subplots(figsize=(8, 3.8))
ax.barh(pos + 0.2, rr, height=0.4, color="0.6", label="R (lme4 / mgcv)")
ax.barh(pos - 0.2, sk, height=0.4, color="C0", label="skmixed")
for k, r in enumerate(RESULTS):
    ax.text(rr[k] * 1.1, pos[k] + 0.2, f"{r[3]}: {rr[k] / sk[k]:.0f}x slower", va="center", fontsize=8)
ax.set_xscale("log")
ax.set_yticks(pos, names)
ax.invert_yaxis()
ax.set_xlabel("fit time (s, log scale)")
ax.set_xlim(0.05, 3000)
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()

for name, s, r, f in RESULTS:
    print(f"{name:<36} skmixed {s:8.3f} s   {f:<6} {r:8.2f} s   ratio {r / s:6.1f}")
