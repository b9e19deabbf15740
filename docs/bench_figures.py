"""Figures and tables of the performance page, drawn from the measured run in the docs.

``docs/_static/bench/results.csv`` is the run shown on ``docs/performance.rst`` (written by
``python -m fastoptim bench ... --csv``). The docs build calls :func:`draw`, which writes, with
fastoptim's own benchmark code (:mod:`fastoptim.tools.bench`), so that the page and the command
show the same thing:

* ``_static/bench/bench-<workload>.png``: one bar chart per workload (:func:`bench.plot`);
* ``generated/bench-summary-<n>.rst.txt``: the summary against the fastest peer at ``n`` threads
  (:func:`bench.summary`), included by the page.

The outputs are build products (git-ignored). Run ``python docs/bench_figures.py`` to draw them
without a docs build.
"""
from pathlib import Path

from fastoptim.tools import bench

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "_static" / "bench" / "results.csv"
PLOTS = HERE / "_static" / "bench" / "bench.png"         # -> bench-<workload>.png
SUMMARY = HERE / "generated" / "bench-summary-{threads}.rst.txt"


def outputs(results):
    workloads = sorted({r["workload"] for r in results})
    threads = sorted({r["threads"] for r in results})
    return ([Path(p) for p in bench.plot_paths(str(PLOTS), workloads).values()]
            + [Path(str(SUMMARY).format(threads=t)) for t in threads])


def draw(force=False):
    """Write the plots and summary tables unless they are newer than the results and the code."""
    results = bench.read_csv(RESULTS)
    newest_input = max(p.stat().st_mtime for p in (RESULTS, Path(__file__), Path(bench.__file__)))
    targets = outputs(results)
    if not force and all(p.exists() and p.stat().st_mtime >= newest_input for p in targets):
        return targets
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    for threads in sorted({r["threads"] for r in results}):
        rows = [row for row in bench.summary(results) if row["threads"] == threads]
        columns = [c for c in bench.SUMMARY_HEADERS if c not in ("dtype", "threads")]
        Path(str(SUMMARY).format(threads=threads)).write_text(
            bench.format_summary(rows, "rst", columns) + "\n")
    bench.plot(results, str(PLOTS))
    return targets


if __name__ == "__main__":
    for path in draw(force=True):
        print(path)
