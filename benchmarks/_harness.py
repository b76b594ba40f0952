"""Shared benchmark plumbing: every contender runs in its own child process.

A child prints one line ``RESULT {json}`` holding at least ``fit_s`` (the fit
alone, timed inside the child), ``peak_mb`` (its own peak resident memory, VmHWM
from /proc: the whole process, data included) and any estimates; the parent
builds a Markdown table. Separate processes keep peak memory
honest and let Python and R contenders be measured the same way on the same data.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time

__all__ = ["have_rscript", "have_gpboost", "run_python", "run_r", "run_contenders", "markdown_table", "machine_line"]


def have_rscript() -> bool:
    return shutil.which("Rscript") is not None


def have_gpboost() -> bool:
    try:
        import gpboost  # noqa: F401
    except ImportError:
        return False
    return True


def _run(cmd, timeout):
    """Run cmd; return (result dict or None, wall seconds, error text)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:]), wall, ""
    err = (proc.stderr or proc.stdout).strip().splitlines()
    return None, wall, err[-1] if err else f"exit {proc.returncode}"


PY_PEAK = """
def peak_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024.0
"""


def run_python(code: str, timeout: float = 1800):
    """Run Python code in a child; it must print ``RESULT {json}`` (``peak_mb()`` is defined)."""
    return _run([sys.executable, "-c", PY_PEAK + textwrap.dedent(code)], timeout)


def run_r(code: str, timeout: float = 1800):
    """Run R code with Rscript; it must print ``RESULT {json}`` (use the helper ``result()``)."""
    prelude = textwrap.dedent('''
        result <- function(...) {
          x <- list(...)
          items <- vapply(names(x), function(k) {
            v <- x[[k]]
            if (is.character(v)) sprintf('"%s": "%s"', k, v) else sprintf('"%s": %.12g', k, as.numeric(v))
          }, "")
          cat("RESULT {", paste(items, collapse = ", "), "}\\n", sep = "")
        }
        peak_mb <- function() {
          s <- readLines("/proc/self/status")
          as.numeric(strsplit(trimws(sub("VmHWM:", "", s[grepl("^VmHWM", s)])), " +")[[1]][1]) / 1024
        }
    ''')
    return _run(["Rscript", "--vanilla", "-e", prelude + textwrap.dedent(code)], timeout)


def run_contenders(data_code: str, contenders: list, csv: str, progress: bool = False) -> list:
    """Run ``(name, kind, code)`` contenders on the same data; one result row each.

    ``kind`` is ``"py"`` (``data_code + code`` in a Python child), ``"r"`` (``code``
    formatted with ``csv`` in an Rscript child; a note when Rscript is missing) or
    ``"note"`` (``code`` is the note). Adds ``time ratio`` = fit_s / the first row's.
    """
    rows = []
    for name, kind, code in contenders:
        if kind == "note" or (kind == "r" and not have_rscript()):
            rows.append({"tool": name, "note": code if kind == "note" else "Rscript not installed"})
            continue
        if kind == "r":
            res, _, err = run_r(code.format(csv=csv))
        else:
            res, _, err = run_python(data_code + code)
        row = {"tool": name}
        if res is None:
            row["note"] = err
        else:
            row.update(res)
        rows.append(row)
        if progress:
            print(f"  {name}: {row.get('fit_s', row.get('note'))}", file=sys.stderr, flush=True)
    base = rows[0].get("fit_s")
    for r in rows:
        if base and "fit_s" in r:
            r["time ratio"] = r["fit_s"] / base
    return rows


def markdown_table(rows: list, columns: list) -> str:
    def fmt(v):
        if isinstance(v, float):
            if v != v:
                return "–"
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def machine_line() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {platform.system()}")
