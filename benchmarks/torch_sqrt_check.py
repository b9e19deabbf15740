"""Does fastoptim's square root equal torch's on this CPU? (docs/numerics.rst)

torch's ``Tensor.sqrt`` on x86-64 is MKL's vector routine, not the correctly rounded root, and
fastoptim's element loops take a reproduction of it where that routine is known (an Intel CPU with
AVX-512; ``fastoptim/_kernels/_fmath.pxi``). This script compares the two over every non-negative
float32 (2**31 bit patterns: zeros, subnormals, normals, infinity, NaNs) and a sample of float64
bit patterns, and prints how many differ from torch's and how many of torch's differ from the IEEE
root::

    python benchmarks/torch_sqrt_check.py [--float64-samples N]
"""
import argparse
import time

import numpy as np
import torch

from fastoptim import _dispatch
from fastoptim._dispatch import kernels


def compare(x, counts):
    out = np.empty_like(x)
    kernels._sqrt_into(out, x)
    want = torch.from_numpy(x).sqrt().numpy()
    nan = np.isnan(want)
    same = np.where(nan, np.isnan(out), out.view(f"u{x.itemsize}") == want.view(f"u{x.itemsize}"))
    counts["values"] += x.size
    counts["differ from torch"] += int(x.size - np.count_nonzero(same))
    with np.errstate(invalid="ignore"):     # signalling NaNs among the bit patterns
        counts["torch off IEEE"] += int(np.count_nonzero((want != np.sqrt(x)) & ~nan))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float64-samples", type=int, default=200_000_000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"kernel variant {_dispatch.VARIANT}; torch's square root taken: {_dispatch.TORCH_SQRT}")
    chunk = 1 << 26
    start = time.perf_counter()
    counts = dict.fromkeys(("values", "differ from torch", "torch off IEEE"), 0)
    for lo in range(0, 1 << 31, chunk):
        compare(np.arange(lo, lo + chunk, dtype=np.uint32).view(np.float32), counts)
    print("float32, every non-negative value:", counts, f"({time.perf_counter() - start:.0f} s)")
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(counts, 0)
    for lo in range(0, args.float64_samples, chunk):
        n = min(chunk, args.float64_samples - lo)
        compare(rng.integers(0, 0x7FF0000000000001, n, dtype=np.uint64).view(np.float64), counts)
    print(f"float64, {args.float64_samples:,} random non-negative bit patterns:", counts)


if __name__ == "__main__":
    main()
