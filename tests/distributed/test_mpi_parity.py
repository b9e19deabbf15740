"""Run on every rank under mpirun (see conftest.py): data parallel and ZeRO are bitwise equal to
one unsharded optimizer fed the rank-order average of the ranks' gradients."""
import numpy as np
import pytest

import fastoptim as fo
from _mpi_helpers import (  # noqa: I001
    SHAPES,
    CONFIGS, CONFIG_IDS, LARGE_SHAPES, assert_bitwise, assert_same_on_all_ranks, assert_state_dicts_equal,
    averaged, flat, groups_of, make_params, optimizer_class, rank_grads,
)

fd = pytest.importorskip("fastoptim.distributed")
from mpi4py import MPI  # noqa: E402

COMM = MPI.COMM_WORLD
N = COMM.Get_size()
RANK = COMM.Get_rank()
STEPS = 32


def feed(params, step, rank=RANK):
    for p, g in zip(flat(params), rank_grads(flat(params), step, rank)):
        p.grad = g


def feed_reference(params, step, n=N):
    ps = flat(params)
    for p, g in zip(ps, averaged([rank_grads(ps, step, r) for r in range(n)], n)):
        p.grad = g


def train_side_by_side(params, opt, sched, reference, ref, ref_sched, average=None):
    """STEPS steps of the distributed optimizer on this rank's gradients and of the unsharded
    reference on the averaged ones; returns the (lr, group 0) pairs seen after each step."""
    seen = []
    for step in range(STEPS):
        feed(params, step)
        if average is not None:
            average(flat(params))
        opt.step()
        sched.step()
        feed_reference(reference, step)
        ref.step()
        ref_sched.step()
        seen.append(((sched.get_last_lr(), dict(opt.param_groups[0], params=None)),
                     (ref_sched.get_last_lr(), dict(ref.param_groups[0], params=None))))
    return seen


def test_launched_on_several_ranks():
    assert N >= 2, "run these tests with mpirun -n 2 (or more)"


@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=CONFIG_IDS)
def test_distributed_optimizer_bitwise(name, kwargs):
    cls = optimizer_class(name)
    shapes = LARGE_SHAPES if name == "Adam" else SHAPES
    params, reference = make_params(shapes=shapes), make_params(shapes=shapes)
    # with 1 MiB buckets the two arrays over 1 MiB are reduced in place, the rest is packed
    opt = fd.DistributedOptimizer(cls(groups_of(params), **kwargs),
                                  bucket_cap_mb=1 if name == "Adam" else 25)
    ref = cls(groups_of(reference), **kwargs)
    sched = fo.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    ref_sched = fo.lr_scheduler.StepLR(ref, step_size=10, gamma=0.5)
    assert isinstance(opt, cls) and isinstance(opt, fo.Optimizer)
    for ours, theirs in train_side_by_side(params, opt, sched, reference, ref, ref_sched):
        assert ours == theirs
    assert opt._step_count == STEPS
    assert_bitwise(flat(params), flat(reference))
    assert_same_on_all_ranks(COMM, flat(params))
    assert_state_dicts_equal(opt.state_dict(), ref.state_dict())


@pytest.mark.parametrize("average_gradients", [False, True], ids=["allreduce", "reduce-scatter"])
@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=CONFIG_IDS)
def test_zero_bitwise(name, kwargs, average_gradients):
    cls = optimizer_class(name)
    shapes = LARGE_SHAPES if name == "Adam" else SHAPES
    params, reference = make_params(shapes=shapes), make_params(shapes=shapes)
    zero = fd.ZeroRedundancyOptimizer(groups_of(params), cls,
                                      average_gradients=average_gradients, **kwargs)
    ref = cls(groups_of(reference), **kwargs)
    sched = fo.lr_scheduler.StepLR(zero, step_size=10, gamma=0.5)
    ref_sched = fo.lr_scheduler.StepLR(ref, step_size=10, gamma=0.5)
    for ours, theirs in train_side_by_side(params, zero, sched, reference, ref, ref_sched,
                                           None if average_gradients else fd.allreduce_gradients):
        assert ours == theirs
    assert zero._step_count == STEPS
    assert [g["lr"] for g in zero.param_groups] == [g["lr"] for g in ref.param_groups]
    assert_bitwise(flat(params), flat(reference))
    assert_same_on_all_ranks(COMM, flat(params))

    # each rank holds the state of its partition only, and together they hold all of it
    mine = [p for g in zero.optim.param_groups for p in g["params"]]
    assert set(map(id, zero.optim.state)) == set(map(id, mine))
    counts = COMM.allgather(len(zero.optim.state))
    assert sum(counts) == len(flat(params)) and max(counts) < len(flat(params))

    zero.consolidate_state_dict(to=N - 1)
    if RANK == N - 1:
        assert_state_dicts_equal(zero.state_dict(), ref.state_dict())
    else:
        with pytest.raises(RuntimeError, match="consolidate_state_dict"):
            zero.state_dict()


def test_partition_is_torchs_greedy():
    params = make_params()
    zero = fd.ZeroRedundancyOptimizer(groups_of(params), fo.SGD, lr=0.1)
    sizes = [0] * N
    expected = {}
    for group in groups_of(params):
        for p in sorted(group["params"], key=lambda p: p.size, reverse=True):
            owner = sizes.index(min(sizes))
            expected[id(p)] = owner
            sizes[owner] += p.size
    mine = {id(p) for g in zero.optim.param_groups for p in g["params"]}
    assert mine == {k for k, owner in expected.items() if owner == RANK}


def test_one_cycle_scheduler_on_both_wrappers():
    results = []
    for wrap in ("dp", "zero"):
        params, reference = make_params(), make_params()
        if wrap == "dp":
            opt = fd.DistributedOptimizer(fo.Adam(groups_of(params), lr=1e-3))
        else:
            opt = fd.ZeroRedundancyOptimizer(groups_of(params), fo.Adam, lr=1e-3,
                                             average_gradients=True)
        ref = fo.Adam(groups_of(reference), lr=1e-3)
        sched = fo.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=40)
        ref_sched = fo.lr_scheduler.OneCycleLR(ref, max_lr=0.01, total_steps=40)
        seen = train_side_by_side(params, opt, sched, reference, ref, ref_sched)
        assert [ours for ours, _ in seen] == [theirs for _, theirs in seen]
        assert len({ours[1]["betas"] for ours, _ in seen}) > 1       # betas did cycle
        assert_bitwise(flat(params), flat(reference))
        results.append(wrap)
    assert results == ["dp", "zero"]


def test_allreduce_gradients_sum_readonly_and_strided():
    params = make_params(shapes=LARGE_SHAPES)
    ps = flat(params)
    feed(params, 0)
    ps[0].grad.flags.writeable = False                 # replaced by a new array
    base = np.zeros((ps[1].size, 2), ps[1].dtype)
    base[:, 0] = ps[1].grad
    ps[1].grad = base[:, 0]                            # strided view: updated in place
    big = ps[3].grad                                   # over 1 MiB: reduced in place
    strided = np.zeros((ps[-1].size, 2), ps[-1].dtype)
    strided[:, 0] = ps[-1].grad.reshape(-1)
    ps[-1].grad = strided[:, 0].reshape(ps[-1].shape)  # over 1 MiB and strided: via a copy
    fd.allreduce_gradients(ps, average=False, bucket_cap_mb=1)
    all_grads = [rank_grads(ps, 0, r) for r in range(N)]
    expected = []
    for per_param in zip(*all_grads):
        acc = per_param[0]
        for g in per_param[1:]:
            acc = acc + g
        expected.append(acc)
    assert_bitwise([p.grad for p in ps], expected)
    assert np.shares_memory(ps[1].grad, base) and ps[3].grad is big
    assert np.shares_memory(ps[-1].grad, strided)
    assert ps[0].grad.flags.writeable


def test_allreduce_buffers_are_reused():
    from fastoptim.distributed import data_parallel

    params = make_params(shapes=LARGE_SHAPES)
    opt = fd.DistributedOptimizer(fo.SGD(groups_of(params), lr=0.1), bucket_cap_mb=1)
    feed(params, 0)
    opt.step()
    averager = opt._fo_distributed.averager
    (plan,) = averager._plans.values()
    buffers = [u.buffer for u in plan.units if not u.direct]
    assert buffers and len(plan.units) == 4  # per dtype: one bucket + one array over 1 MiB
    feed(params, 1)
    opt.step()
    (again,) = averager._plans.values()
    assert again is plan and all(a is b for a, b in zip(buffers, [u.buffer for u in again.units
                                                                    if not u.direct]))
    assert data_parallel  # the free function keeps one averager per communicator and cap


def test_mismatched_gradients_raise_on_every_rank():
    params = make_params()
    ps = flat(params)
    feed(params, 0)
    if RANK == 0:
        ps[2].grad = None
    with pytest.raises(ValueError, match="differ between the ranks"):
        fd.allreduce_gradients(ps)
    # the communicator is still usable
    assert COMM.allreduce(1) == N


def test_broadcast_parameters_and_optimizer_state():
    params = make_params(seed=RANK)           # different on every rank
    opt = fo.Adam(groups_of(params), lr=1e-3 * (RANK + 1))
    fd.broadcast_parameters(flat(params), root=0)
    assert_bitwise(flat(params), flat(make_params(seed=0)))
    feed(params, 0, rank=RANK)                # different gradients, so different state
    opt.step()
    fd.broadcast_optimizer_state(opt, root=0)
    assert opt.param_groups[0]["lr"] == 1e-3
    sd = opt.state_dict()
    digests = COMM.allgather([np.asarray(v["exp_avg"]).tobytes() for v in sd["state"].values()])
    assert all(d == digests[0] for d in digests)
    named = {"w": flat(params)[0], "b": flat(params)[1]}
    fd.broadcast_parameters(named, root=N - 1)
    with pytest.raises(TypeError, match="ZeroRedundancyOptimizer"):
        fd.broadcast_optimizer_state(fd.ZeroRedundancyOptimizer(flat(params), fo.SGD, lr=0.1))
    shape = (3,) if RANK == 0 else (4,)
    with pytest.raises(ValueError, match="differ between the ranks"):
        fd.broadcast_parameters([np.zeros(shape)])


def test_zero_load_state_dict_all_or_nothing():
    params = make_params()
    zero = fd.ZeroRedundancyOptimizer(groups_of(params), fo.Adam, lr=1e-2)
    for step in range(3):
        feed(params, step)
        fd.allreduce_gradients(flat(params))
        zero.step()
    zero.consolidate_state_dict(to=0)
    full = COMM.bcast(zero.state_dict() if RANK == 0 else None, root=0)
    before = zero.optim.state_dict()
    bad = {"state": dict(full["state"]), "param_groups": full["param_groups"]}
    # break the state of the largest parameter, which belongs to rank 0, on rank 0 only
    index = max(bad["state"], key=lambda i: bad["state"][i]["exp_avg"].size)
    if RANK == 0:
        bad["state"][index] = dict(bad["state"][index], exp_avg=np.zeros(3, np.float32))
    with pytest.raises((ValueError, RuntimeError)):
        zero.load_state_dict(bad)
    assert_state_dicts_equal(zero.optim.state_dict(), before)
    zero.load_state_dict(full)
    assert_state_dicts_equal(zero.optim.state_dict(), before)


def test_zero_step_failure_raises_on_every_rank():
    params = make_params()
    zero = fd.ZeroRedundancyOptimizer(groups_of(params), fo.SGD, lr=0.1)
    feed(params, 0)
    mine = [p for g in zero.optim.param_groups for p in g["params"]]
    if RANK == 0:
        mine[0].grad.shape = (-1,)      # changed in place after assignment: refused at step()
    with pytest.raises((ValueError, RuntimeError)):
        zero.step()
    assert COMM.allreduce(1) == N


def test_wrappers_refuse_pickling():
    import pickle

    params = make_params()
    with pytest.raises(TypeError, match="state_dict"):
        pickle.dumps(fd.DistributedOptimizer(fo.SGD(flat(params), lr=0.1)))
    with pytest.raises(TypeError, match="state_dict"):
        pickle.dumps(fd.ZeroRedundancyOptimizer(flat(params), fo.SGD, lr=0.1))
    with pytest.raises(ValueError, match="LBFGS"):
        fd.ZeroRedundancyOptimizer(flat(params), type("LBFGS", (fo.SGD,), {}), lr=0.1)


@pytest.mark.parametrize("average_gradients", [False, True], ids=["allreduce", "reduce-scatter"])
def test_checkpoint_resume_on_another_world_size(tmp_path_factory, average_gradients):
    """Train on N-1 ranks, rank 0 saves the consolidated state with fo.save, then all N ranks
    load it and continue: bitwise equal to one optimizer that never stopped."""
    directory = COMM.bcast(str(tmp_path_factory.mktemp("ckpt")) if RANK == 0 else None, root=0)
    path = f"{directory}/run.fo"
    first, second = 10, 22
    reference = make_params()
    ref = fo.AdamW(groups_of(reference), lr=1e-2)
    for step in range(first):
        feed_reference(reference, step, n=N - 1)
        ref.step()
    for step in range(first, first + second):
        feed_reference(reference, step, n=N)
        ref.step()

    sub = COMM.Split(color=0 if RANK < N - 1 else 1, key=RANK)
    try:
        if RANK < N - 1:
            params = make_params()
            zero = fd.ZeroRedundancyOptimizer(groups_of(params), fo.AdamW, comm=sub, lr=1e-2,
                                              average_gradients=average_gradients)
            for step in range(first):
                feed(params, step)
                if not average_gradients:
                    fd.allreduce_gradients(flat(params), comm=sub)
                zero.step()
            zero.consolidate_state_dict(to=0)
            if RANK == 0:
                fo.save({"params": [p.copy() for p in flat(params)],
                         "optimizer": zero.state_dict(), "step": first}, path)
    finally:
        sub.Free()
    COMM.Barrier()

    checkpoint = fo.load(path)
    assert checkpoint["step"] == first
    saved = iter(checkpoint["params"])
    params = [[fo.Parameter(next(saved)) for _ in group] for group in make_params()]
    zero = fd.ZeroRedundancyOptimizer(groups_of(params), fo.AdamW, lr=1e-2,
                                      average_gradients=average_gradients)
    zero.load_state_dict(checkpoint["optimizer"])
    for step in range(first, first + second):
        feed(params, step)
        if not average_gradients:
            fd.allreduce_gradients(flat(params))
        zero.step()
    assert_bitwise(flat(params), flat(reference))
    zero.consolidate_state_dict(to=0)
    if RANK == 0:
        assert_state_dicts_equal(zero.state_dict(), ref.state_dict())
