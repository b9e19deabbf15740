"""The optimizer configurations that drive the optimizer tests, read from the one optimizer table,
:data:`fastoptim.optim.registry.OPTIMIZERS` (torch's ``OptimizerInfo``/``optim_inputs_func``):
every CPU configuration torch 2.13 tests each optimizer with, plus the combinations torch's table
leaves out. Tests that are about every optimizer iterate ``ALL_CONFIGS``/``DEFAULT_CONFIGS``.
"""
from fastoptim.optim.registry import CLIQUEY_VARIANTS, OPTIMIZERS, OptimConfig, all_configs  # noqa: F401

SGD_CONFIGS = list(OPTIMIZERS["SGD"].configs)
ADAM_CONFIGS = list(OPTIMIZERS["Adam"].configs)
ADAMW_CONFIGS = list(OPTIMIZERS["AdamW"].configs)

ALL_CONFIGS = all_configs()

# The default configuration of each optimizer, for tests about the API rather than the numbers.
DEFAULT_CONFIGS = [info.default for info in OPTIMIZERS.values()]
