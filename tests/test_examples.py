"""Every example runs (small sizes) as a smoke test: each must finish and print its results."""

import importlib.util
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SMALL = {
    "metacognition.py": [],
    "big_data_study.py": ["--rows", "20000", "--groups", "100", "--out", "{tmp}"],
    "sleepstudy.py": ["--out", "{tmp}"],
    "sklearn_pipeline.py": ["--rows", "4000", "--groups", "40"],
    "parquet_20m.py": ["--rows", "20000", "--chunk-rows", "5000", "--out", "{tmp}/seed000.parquet"],
    "additive_partial_effects.py": ["--out", "{tmp}"],
    "streaming_drift.py": ["--rows", "8000", "--groups", "50", "--alpha", "1000"],
}


def _run(name, argv):
    spec = importlib.util.spec_from_file_location(name[:-3], EXAMPLES / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(argv)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_runs(name, tmp_path, capsys):
    _run(name, [a.format(tmp=tmp_path) for a in SMALL[name]])
    out = capsys.readouterr().out
    assert "Fixed effects" in out or "best" in out or "|" in out


def test_every_example_is_smoke_tested():
    assert {p.name for p in EXAMPLES.glob("*.py")} <= set(SMALL)
