"""Figures and tables of the performance page, drawn from the measured run in the docs.

``docs/_static/bench/results.csv`` is the run shown on ``docs/performance.rst`` (written by
``python -m fastoptim bench ... --csv``). The docs build calls :func:`draw`, which writes, with
fastoptim's own benchmark code (:mod:`fastoptim.tools.bench`), so that the page and the command
show the same thing:

* ``_static/bench/bench-<set>-<workload>.png``: one bar chart per workload (:func:`bench.plot`) for
  each set of optimizers of :data:`PLOT_SETS` (a chart of every optimizer would have too many bars
  to read);
* ``generated/bench-summary-<n>.rst.txt``: the summary against the fastest peer at ``n`` threads
  (:func:`bench.summary`), included by the page;
* ``generated/bench-torch-<n>.rst.txt``: every optimizer against torch's fastest CPU path for it
  (``fused=True`` where torch has it, else ``foreach=True``) and against NumPy, at ``n`` threads.

The outputs are build products (git-ignored). Run ``python docs/bench_figures.py`` to draw them
without a docs build.
"""
from pathlib import Path

from fastoptim.tools import bench

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "_static" / "bench" / "results.csv"
SUMMARY = HERE / "generated" / "bench-summary-{threads}.rst.txt"
TORCH_TABLE = HERE / "generated" / "bench-torch-{threads}.rst.txt"
# the optimizers of each chart, bench-<set>-<workload>.png (two per chart: more bars do not read)
PLOT_SETS = {"sgd-adam": ("sgd", "adam"), "amsgrad-adamw": ("amsgrad", "adamw"),
             "rmsprop-adagrad": ("rmsprop", "adagrad"), "adadelta-adamax": ("adadelta", "adamax"),
             "nadam-radam": ("nadam", "radam"), "asgd-rprop": ("asgd", "rprop"), "lion": ("lion",)}


def _plot_sets(results):
    """:data:`PLOT_SETS` with the measured optimizers of each, and ``other`` for any optimizer in
    no set: ``{name: (optimizers, workloads)}``, sets without a result left out."""
    measured = {r["optimizer"] for r in results}
    sets = {**PLOT_SETS, "other": tuple(sorted(measured - {o for m in PLOT_SETS.values() for o in m}))}
    out = {}
    for name, members in sets.items():
        workloads = sorted({r["workload"] for r in results if r["optimizer"] in members})
        if workloads:
            out[name] = (members, workloads)
    return out


def _set_path(name):
    return HERE / "_static" / "bench" / f"bench-{name}.png"


def torch_rows(results, threads):
    """Per workload and optimizer at ``threads``: fastoptim's ``opt.step()`` against torch's
    fastest CPU path for it (fused where measured, else foreach) and against ``numpy``."""
    cells = {}
    for r in results:
        if r["threads"] == threads:
            cells.setdefault((r["workload"], r["optimizer"], r["dtype"]), {})[r["peer"]] = r
    rows = []
    for (workload, optimizer, dtype), cell in sorted(
            cells.items(), key=lambda kv: (list(bench.WORKLOADS).index(kv[0][0]),
                                           list(bench.OPTIMIZERS).index(kv[0][1]), kv[0][2])):
        ours = cell.get("fastoptim-class") or cell["fastoptim"]
        torch = cell.get("torch-fused") or cell.get("torch-foreach")
        numpy = cell.get("numpy")

        def ratio(peer):
            return "-" if peer is None else f"{peer['median_s'] / ours['median_s']:.2f}x"

        rows.append([workload, optimizer, f"{ours['median_s'] * 1e3:.3g}", f"{ours['pct_of_bound']:.0f}",
                     "-" if torch is None else torch["peer"].replace("torch-", ""),
                     "-" if torch is None else f"{torch['median_s'] * 1e3:.3g}", ratio(torch), ratio(numpy)])
    return rows


def torch_table(results, threads):
    headers = ["workload", "optimizer", "fastoptim ms", "% bound", "torch path", "torch ms",
               "vs torch", "vs NumPy"]
    rows = torch_rows(results, threads)
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(headers)]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(headers, widths)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines + [rule]) + "\n"


def outputs(results):
    threads = sorted({r["threads"] for r in results})
    return ([Path(p) for name, (_, workloads) in _plot_sets(results).items()
             for p in bench.plot_paths(str(_set_path(name)), workloads).values()]
            + [Path(str(SUMMARY).format(threads=t)) for t in threads]
            + [Path(str(TORCH_TABLE).format(threads=t)) for t in threads])


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
        Path(str(TORCH_TABLE).format(threads=threads)).write_text(torch_table(results, threads))
    for name, (members, _) in _plot_sets(results).items():
        bench.plot([r for r in results if r["optimizer"] in members], str(_set_path(name)))
    return targets


if __name__ == "__main__":
    for path in draw(force=True):
        print(path)
