"""torch's ZeroRedundancyOptimizer partition (no MPI needed, so it is testable anywhere)."""


def partition_parameters(param_groups, world_size):
    """Split the parameter groups over ``world_size`` ranks exactly as torch 2.13's
    ``ZeroRedundancyOptimizer._partition_parameters`` does.

    Within each group, in group order, the parameters sorted by size (largest first; Python's
    stable sort keeps ties in their order) each go to the rank with the fewest elements so far,
    the lowest such rank; the running sizes carry over from one group to the next. Returns, per
    rank, a list with one group dict per group (a shallow copy whose ``"params"``, and
    ``"param_names"`` when present, hold that rank's share, possibly empty).
    """
    per_rank = [[] for _ in range(world_size)]
    sizes = [0] * world_size
    for group in param_groups:
        assigned = [[] for _ in range(world_size)]
        for param in sorted(group["params"], key=lambda p: p.size, reverse=True):
            rank = min(range(world_size), key=sizes.__getitem__)  # the first minimum, as torch
            assigned[rank].append(param)
            sizes[rank] += param.size
        names = None
        if "param_names" in group:
            names = {id(p): name for p, name in zip(group["params"], group["param_names"])}
        for rank in range(world_size):
            local = dict(group)
            local["params"] = assigned[rank]
            if names is not None:
                local["param_names"] = [names[id(p)] for p in assigned[rank]]
            per_rank[rank].append(local)
    return per_rank
