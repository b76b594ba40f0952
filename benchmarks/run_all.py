"""Run every ``benchmarks/bench_*.py`` and collect their Markdown tables into ``benchmarks/README.md``.

Each benchmark prints Markdown tables (skmixed vs statsmodels, GPBoost when installed and lme4 /
mgcv when ``Rscript`` exists, measured in the same run). This script runs them one after the
other in child processes, in a quick mode (small sizes: a smoke test of the whole suite, a few
minutes) or the full mode (the sizes the README reports), and writes their output under a
description of the machine (CPU, cores, memory, library versions, R versions, date, load).

Run::

    python benchmarks/run_all.py            # full mode, writes benchmarks/README.md
    python benchmarks/run_all.py --quick    # small sizes, writes benchmarks/README.quick.md
    python benchmarks/run_all.py --only linear logistic
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib.metadata
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import have_rscript  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# Arguments per benchmark and mode. Full-mode departures from a script's defaults say why.
QUICK = {
    "crossed": ["--rows", "6000", "--levels-a", "300", "--levels-b", "200", "--skip-instEval"],
    "linear": ["--rows", "100000", "--groups", "500", "--crossed-rows", "10000"],
    "logistic": ["--sm-rows", "2000", "--rows", "20000", "--full-rows", "0", "--groups", "200"],
    "additive": ["--rows", "20000", "--groups", "200", "--no-big"],
    "streaming": ["--reps", "2", "--rows", "10000", "--groups", "200", "--train", "1000"],
    "split_sample": ["--rows", "100000", "--groups", "400", "--reps", "10", "--repeat", "1"],
    "out_of_core": ["--rows", "1000000", "--check-rows", "200000", "--chunk-rows", "250000"],
}
FULL = {
    "crossed": [],
    "linear": [],
    # statsmodels' variational-Bayes GLMM needs ~10 min at its default 20,000 rows: 5,000 here
    "logistic": ["--sm-rows", "5000"],
    "additive": [],
    # 20 replications of the SEMA paper's stream instead of 50 (the means are stable by then)
    "streaming": ["--reps", "20"],
    # 100 coverage replications instead of 200 (Monte-Carlo band +/-4.4 points instead of 3.1)
    # and lme4 skipped: lmer at 2M rows is in bench_linear, glmer at 2M rows takes minutes
    "split_sample": ["--reps", "100", "--repeat", "3", "--no-r"],
    "out_of_core": [],
}
NOTES = {
    "logistic": "statsmodels' BinomialBayesMixedGLM at 5,000 rows (its default 20,000 takes ~10 min).",
    "streaming": "20 replications (script default 50).",
    "split_sample": ("coverage simulation with 100 replications (script default 200); lme4 skipped "
                     "(lmer at 2M rows: bench_linear; glmer at 2M rows takes minutes)."),
}


def _version(pkg):
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_description() -> str:
    """Markdown bullet list describing the machine and the software versions.

    Returns
    -------
    str
        CPU model (``/proc/cpuinfo``), cores, memory, OS, Python and library versions, R with
        lme4 and mgcv (when ``Rscript`` exists), UTC date and the 1/5/15-minute load average.

    Examples
    --------
    >>> "cores" in machine_description()
    True
    """
    cpu = platform.processor() or platform.machine()
    mem = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
        with open("/proc/meminfo") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal"))
        mem = f"{kb / 1024 ** 2:.1f} GB"
    except (OSError, StopIteration):
        pass
    libs = ", ".join(f"{p} {_version(p)}" for p in
                     ("skmixed", "numpy", "scipy", "numba", "pandas", "scikit-learn", "statsmodels", "gpboost"))
    r = "Rscript not installed"
    if have_rscript():
        out = subprocess.run(["Rscript", "--vanilla", "-e",
                              'cat(R.version.string, "; lme4", format(packageVersion("lme4")),'
                              ' "; mgcv", format(packageVersion("mgcv")))'],
                             capture_output=True, text=True).stdout.strip()
        r = out or "Rscript present, lme4/mgcv not found"
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([f"- CPU: {cpu}, {os.cpu_count()} cores; memory {mem}; {platform.system()} {platform.release()}",
                      f"- Python {platform.python_version()}; {libs}",
                      f"- R: {r}",
                      f"- date: {now}; load average at start (1/5/15 min): {load}"])


def run_one(name, argv, timeout):
    """Run ``bench_<name>.py`` with ``argv``; return (stdout, wall seconds, error text)."""
    cmd = [sys.executable, os.path.join(HERE, f"bench_{name}.py"), *argv]
    # benchmark this checkout's skmixed, not whichever copy is installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(HERE),
                                                                     os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return out, time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
    err = "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return proc.stdout, time.perf_counter() - t0, err


def clean(text):
    r"""Drop library chatter (GPBoost's ``[GPBoost] [Info]`` lines) and the blank lines it leaves
    inside a Markdown table, so the tables render.

    Parameters
    ----------
    text : str

    Returns
    -------
    str

    Examples
    --------
    >>> clean("| a |\n\n[GPBoost] [Info] threads\n| b |")
    '| a |\n| b |'
    >>> clean("| a |\n\n| h |\n|---|")
    '| a |\n\n| h |\n|---|'
    """
    lines = [ln for ln in text.splitlines() if not ln.startswith("[GPBoost]")]
    keep = []
    for i, ln in enumerate(lines):
        # a blank line between rows of one table (not before the next table's header row)
        between_rows = (not ln.strip() and keep and keep[-1].startswith("|")
                        and i + 1 < len(lines) and lines[i + 1].startswith("|")
                        and not (i + 2 < len(lines) and lines[i + 2].startswith("|---")))
        if not between_rows:
            keep.append(ln)
    return "\n".join(keep)


def _write(path, quick, header, sections, n_total, seconds):
    """Write the Markdown report of the benchmarks run so far."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    mode = "quick (small sizes)" if quick else "full"
    done = "" if len(sections) == n_total else f" (partial: {len(sections)} of {n_total} benchmarks)"
    doc = f"""# Benchmark results

Generated by `python benchmarks/run_all.py{' --quick' if quick else ''}` ({mode} mode){done}. Every
contender runs in its own process on the same data in the same run; times are wall-clock seconds of
the fit alone, "peak MB" the child process's peak resident memory (data included), ratios are
peer / skmixed. The machine is shared: read the load average with the numbers.

{header}
- total run time {seconds:.0f} s; load average at the end: {load}

""" + "\n".join(sections)
    with open(path, "w") as fh:
        fh.write(doc)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test of the suite)")
    ap.add_argument("--only", nargs="*", help="benchmark names, e.g. linear logistic")
    ap.add_argument("--timeout", type=float, default=1500, help="seconds per benchmark")
    ap.add_argument("--out", help="Markdown file (default README.md, README.quick.md with --quick)")
    args = ap.parse_args(argv)
    names = sorted(os.path.basename(p)[6:-3] for p in glob.glob(os.path.join(HERE, "bench_*.py")))
    if args.only:
        names = [n for n in names if n in args.only]
    table = QUICK if args.quick else FULL
    out_path = args.out or os.path.join(HERE, "README.quick.md" if args.quick else "README.md")

    header = machine_description()
    sections, t_all = [], time.perf_counter()
    for name in names:
        bench_args = table.get(name, [])
        print(f"running bench_{name}.py {' '.join(bench_args)}", flush=True)
        out, wall, err = run_one(name, bench_args, args.timeout)
        print(f"  {wall:.0f} s{'  ERROR: ' + err if err else ''}", flush=True)
        note = "" if args.quick else NOTES.get(name, "")
        lines = [f"## bench_{name}.py", "",
                 f"`python benchmarks/bench_{name}.py {' '.join(bench_args)}`".replace(" `", "`"),
                 f"({wall:.0f} s in all{'; ' + note if note else ''})", ""]
        if err:
            lines += [f"**Did not finish:** {err}", ""]
        lines += [clean(out).strip(), ""]
        sections.append("\n".join(lines))
        # rewrite after every benchmark, so an interrupted run still leaves its tables
        _write(out_path, args.quick, header, sections, len(names), time.perf_counter() - t_all)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
