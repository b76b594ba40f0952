"""The Sphinx site builds without a single warning (``sphinx-build -W``), as CI requires,
and its example gallery is executed: at least 8 examples run, drawing at least 10 figures."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    for mod in ("sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme", "matplotlib"):
        pytest.importorskip(mod)
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    html = tmp_path / "html"
    # the reference lists the linear model, and its page carries the numpydoc sections
    page = (html / "generated" / "skmixed.MixedLinearRegressor.html").read_text(encoding="utf-8")
    assert "from_formula" in page and "Examples" in page
    for p in ("user_guide/from_r", "user_guide/from_statsmodels", "installation", "getting_started", "changelog"):
        assert (html / f"{p}.html").exists(), p
    install_text = re.sub(r"<[^>]+>", "", (html / "installation.html").read_text(encoding="utf-8"))
    assert "python -m skmixed warmup" in install_text  # the code block, highlighting markup removed

    # the gallery: every example page was executed (sphinx-gallery stamps its running time)
    # and its figures were written
    pages = [p for p in (html / "auto_examples").glob("plot_*.html")
             if "Total running time of the script" in p.read_text(encoding="utf-8")]
    figures = [p for p in (html / "_images").glob("sphx_glr_plot_*.png") if re.search(r"_\d{3}\.png$", p.name)]
    assert len(pages) >= 8, sorted(p.name for p in pages)
    assert len(figures) >= 10, sorted(p.name for p in figures)
    # every example page shows its own figures and printed output
    for p in pages:
        text = p.read_text(encoding="utf-8")
        assert "sphx_glr_" + p.stem in text and "sphx-glr-script-out" in text, p.name
