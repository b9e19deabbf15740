"""Generate tests/golden/kernels.npz from torch 2.13 (run: python tests/golden/make_kernel_golden.py).

For every kernel configuration of the optimizer table (fastoptim/optim/registry.py: SGD and
Adam/AdamW, float32 and float64) it records, for a few steps, the gradient fed to torch and torch's parameter and state after the step.
tests/test_golden.py replays each step with fastoptim from torch's state before the step, so the
parity with torch is checked on machines without torch.
"""
import os

import numpy as np
import torch

from fastoptim.optim.registry import OPTIMIZERS

SGD_CONFIGS = OPTIMIZERS["SGD"].kernel_configs
ADAM_CONFIGS = OPTIMIZERS["Adam"].kernel_configs

STEPS = 4
SIZE = 129  # one full vector body of every ISA plus a tail


def main():
    torch.set_num_threads(1)
    out = {"torch_version": np.array(torch.__version__)}
    rng = np.random.default_rng(2024)
    for dtype in (np.float32, np.float64):
        for k, cfg in enumerate(SGD_CONFIGS):
            key = f"sgd{k}_{np.dtype(dtype).name}"
            p = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(SIZE).astype(dtype)))
            opt = torch.optim.SGD([p], lr=cfg["lr"], momentum=cfg["momentum"], dampening=cfg["dampening"],
                                  weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"],
                                  maximize=cfg["maximize"])
            out[f"{key}/param0"] = p.detach().numpy().copy()
            for s in range(STEPS):
                g = rng.standard_normal(SIZE).astype(dtype)
                p.grad = torch.from_numpy(g.copy())
                opt.step()
                out[f"{key}/grad{s}"] = g
                out[f"{key}/param{s + 1}"] = p.detach().numpy().copy()
                if cfg["momentum"]:
                    out[f"{key}/buf{s + 1}"] = opt.state[p]["momentum_buffer"].numpy().copy()
        for k, cfg in enumerate(ADAM_CONFIGS):
            key = f"adam{k}_{np.dtype(dtype).name}"
            p = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(SIZE).astype(dtype)))
            opt = torch.optim.Adam([p], lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                                   weight_decay=cfg["weight_decay"], amsgrad=cfg["amsgrad"],
                                   maximize=cfg["maximize"],
                                   decoupled_weight_decay=cfg["decoupled_weight_decay"])
            out[f"{key}/param0"] = p.detach().numpy().copy()
            for s in range(STEPS):
                g = rng.standard_normal(SIZE).astype(dtype)
                p.grad = torch.from_numpy(g.copy())
                opt.step()
                st = opt.state[p]
                out[f"{key}/grad{s}"] = g
                out[f"{key}/param{s + 1}"] = p.detach().numpy().copy()
                out[f"{key}/exp_avg{s + 1}"] = st["exp_avg"].numpy().copy()
                out[f"{key}/exp_avg_sq{s + 1}"] = st["exp_avg_sq"].numpy().copy()
                if cfg["amsgrad"]:
                    out[f"{key}/max_exp_avg_sq{s + 1}"] = st["max_exp_avg_sq"].numpy().copy()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {len(out)} arrays, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
