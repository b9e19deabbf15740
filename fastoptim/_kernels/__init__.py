"""The optimizer kernels' sources: the spec table (``spec.py``), the generator and template that
turn it into the element loops (``generate.py``, ``kernels.pyx.tp``), and the validation and work
plan shared by every kernel, compiled once (``_plan.pyx``)."""
