"""The Sphinx site builds without a single warning (``sphinx-build -W``), as CI requires."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    html = tmp_path / "html"
    # the reference lists the linear model, and its page carries the numpydoc sections
    page = (html / "generated" / "skmixed.MixedLinearRegressor.html").read_text(encoding="utf-8")
    assert "from_formula" in page and "Examples" in page
    assert (html / "user_guide" / "from_r.html").exists()
