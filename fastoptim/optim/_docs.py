r"""Docstring fragments that several optimizer classes share, written once.

A class docstring names a fragment as ``{{name}}`` on a line of its own, indented as the fragment's
first line must be; :class:`fastoptim.optim.base.Optimizer` fills them in when the class is
created (``{torch_name}`` becomes the class's torch name).
"""

_FRAGMENTS = {
    "intro": """\
The same algorithm, arguments, defaults and results as ``torch.optim.{torch_name}`` of torch 2.13,
    for :class:`fastoptim.Parameter` arrays. Each ``step()`` makes one call into the compiled
    kernels per parameter group, over every parameter of the group that has a gradient.""",
    "grad": r"""&g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),
                \qquad g_t \leftarrow -g_t \ \text{if maximize} \\""",
    "params": """params : iterable
        Parameters, ``(name, Parameter)`` pairs, or dicts defining parameter groups.""",
    "maximize": """maximize : bool, default False
        Maximize the objective instead of minimizing it.""",
    "foreach": """foreach : bool or None, default None
        Accepted for drop-in compatibility with torch; every fastoptim step runs as one fused
        kernel per group, whatever its value.""",
    "capturable": """capturable, differentiable : bool, default False
        Must be False: they are CUDA-graph and autograd features (``True`` raises ValueError).""",
    "foreach_fused": """foreach, fused : bool or None, default None
        Accepted for drop-in compatibility with torch; every fastoptim step runs as one fused
        kernel per group, whatever their value. As in torch, both ``True`` raises RuntimeError.""",
}


def fill_docstring(doc, torch_name):
    """``doc`` with every ``{{fragment}}`` replaced."""
    if not doc:
        return doc
    for name, text in _FRAGMENTS.items():
        doc = doc.replace("{{%s}}" % name, text.replace("{torch_name}", torch_name))
    return doc
