"""Generate tests/golden/elementwise.npz from torch 2.13 (run: python tests/golden/make_elementwise_golden.py).

For every case of tests/test_kernels_elementwise.py (the round-2 elementwise optimizers), float32 and
float64, two seeds: the params and state after ``GOLDEN`` steps of torch's single-tensor functional
path (with the IEEE square root where the update takes one, see ``ieee_sqrt`` there), from the
seeded start and gradients the test regenerates. Only torch's arrays are stored.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import test_kernels_elementwise as T  # noqa: E402


def main():
    out = {}
    for name, case in sorted(T.CASES.items()):
        for dtype in (np.float32, np.float64):
            for seed in range(2):
                run = T.golden_runs(case)[0]
                arrays = T.run_case(case, seed, dtype, torch_runs=(run,), **T.GOLDEN)[0][run]
                for j, a in enumerate(arrays):
                    out[f"{name}/{np.dtype(dtype).name}/{seed}/{j}"] = a
    np.savez_compressed(T.GOLDEN_PATH, **out)
    print(T.GOLDEN_PATH, len(out), "arrays")


if __name__ == "__main__":
    main()
