"""Schedulers made of schedulers: ``SequentialLR`` (one after another) and ``ChainedScheduler``
(all at once)."""

from __future__ import annotations

from bisect import bisect_right

from fastoptim.lr_scheduler._base import (
    LRScheduler, _check_integer_argument, _param_groups_val_list, _update_param_group_val,
)
from fastoptim.lr_scheduler._plateau import ReduceLROnPlateau
from fastoptim.lr_scheduler._state import (
    _StateError, _copy_state, _v_group_lrs, _v_integer, _v_integer_list,
)


def _check_composite_children(composite, optimizer, schedulers):
    """Validation shared by SequentialLR and ChainedScheduler (torch's messages and order)."""
    name = type(composite).__name__
    for scheduler_idx, scheduler in enumerate(schedulers):
        if not hasattr(scheduler, "optimizer"):
            raise TypeError(f"{name} at index {scheduler_idx} should have `optimizer` as its attribute.")
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                f"{name} does not support `ReduceLROnPlateau` scheduler as it "
                "requires additional kwargs to be specified when calling `step`, "
                f"but got one at index {scheduler_idx} in the given schedulers sequence."
            )
        if optimizer != scheduler.optimizer:
            raise ValueError(
                f"{name} expects all schedulers to belong to the same optimizer, but "
                f"got scheduler {scheduler.__class__.__name__} at index {scheduler_idx} has {scheduler.optimizer}, "
                f"which is different from {optimizer.__class__.__name__}."
            )


class _CompositeStateMixin:
    """state_dict of SequentialLR / ChainedScheduler: ``_schedulers`` holds the children's dicts."""

    # A composite that a parent SequentialLR "initial-steps" (nested composites) gains these.
    _optional_state_keys = frozenset({"_step_count", "_is_initial", "_get_lr_called_within_step"})

    def state_dict(self):
        """Return the state as a dict; ``_schedulers`` holds each child's ``state_dict()``."""
        state = {
            key: _copy_state(value)
            for key, value in self.__dict__.items()
            if key not in self._transient_attributes and key != "_schedulers"
        }
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def _check_state_consistency(self, checked):
        children = checked["_schedulers"]
        if not isinstance(children, (list, tuple)) or len(children) != len(self._schedulers):
            count = len(children) if isinstance(children, (list, tuple)) else type(children).__name__
            raise ValueError(
                f"{_StateError.prefix(self, '_schedulers')} must be a list of {len(self._schedulers)} "
                f"child state dicts (one per scheduler), but got {count}."
            )
        checked_children = []
        for index, (scheduler, child_state) in enumerate(zip(self._schedulers, children)):
            try:
                checked_children.append(scheduler._checked_state(child_state))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{type(self).__name__}.load_state_dict: _schedulers[{index}]: {exc}") from exc
        checked["_schedulers"] = checked_children

    def _apply_state(self, checked):
        children = checked.pop("_schedulers")
        self.__dict__.update(checked)
        for scheduler, child_state in zip(self._schedulers, children):
            scheduler._apply_state(child_state)


class SequentialLR(_CompositeStateMixin, LRScheduler):
    r"""Run schedulers one after another, switching at the given milestones.

    .. math::
        \eta_t = \eta^{(k)}_{t - m_k}, \qquad m_k \le t < m_{k+1}

    where :math:`\eta^{(k)}` is the schedule of ``schedulers[k]`` and :math:`m_0 = 0 < m_1 < \dots`
    are the milestones. At a milestone the next scheduler restarts from its step 0 (via its
    closed form where it has one), starting from the lr the previous one left.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
        Must be the optimizer of every scheduler.
    schedulers : list of LRScheduler
        At least one; no :class:`ReduceLROnPlateau`. May contain other SequentialLR or
        :class:`ChainedScheduler` objects.
    milestones : list of int
        ``len(schedulers) - 1`` increasing step indices.
    last_epoch : int, default -1

    Raises
    ------
    ValueError, TypeError
        torch's messages for an empty list, a child without ``optimizer``, a ReduceLROnPlateau
        child, a child of another optimizer, or a wrong number of milestones.

    Notes
    -----
    Construction resets every group's lr to ``initial_lr``, undoes the initial step of every
    child (recursively) and performs the initial step of the first active one, as torch does.
    ``step()`` takes no ``epoch`` argument and never warns about the step order.

    Examples
    --------
    Linear warmup for 2 steps, then exponential decay:

    >>> import numpy as np
    >>> import fastoptim as fo
    >>> from fastoptim import lr_scheduler as ls
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> warmup = ls.LinearLR(opt, start_factor=0.5, total_iters=2)
    >>> decay = ls.ExponentialLR(opt, gamma=0.5)
    >>> sched = ls.SequentialLR(opt, schedulers=[warmup, decay], milestones=[2])
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(4):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.05, 0.07500000000000001, 0.1, 0.05, 0.025]
    """

    _state_validators = {"_milestones": _v_integer_list, "last_epoch": _v_integer, "_last_lr": _v_group_lrs}

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        if len(schedulers) < 1:
            raise ValueError(f"{self.__class__.__name__} expects at least one scheduler, but got no scheduler.")
        _check_composite_children(self, optimizer, schedulers)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more "
                f"than the number of milestone points, but got number of schedulers {len(schedulers)} and the "
                f"number of milestones to be equal to {len(milestones)}"
            )
        last_epoch = _check_integer_argument("last_epoch", last_epoch)
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer

        # Start from the initial lrs: every child's constructor already stepped once.
        for group in self.optimizer.param_groups:
            _update_param_group_val(group, "lr", group["initial_lr"])

        # Undo the steps the children's constructors performed...
        self.recursive_undo()

        # ...and perform the initial step of the scheduler that runs at step 0 only.
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()

        self._last_lr = schedulers[idx].get_last_lr()

    def _check_state_consistency(self, checked):
        if len(checked["_milestones"]) != len(self._schedulers) - 1:
            raise ValueError(
                f"{_StateError.prefix(self, '_milestones')} has {len(checked['_milestones'])} "
                f"milestones, but this SequentialLR has {len(self._schedulers)} schedulers and needs "
                f"{len(self._schedulers) - 1}."
            )
        super()._check_state_consistency(checked)

    def recursive_undo(self, sched=None):
        """Decrement ``last_epoch`` of every (nested) child, undoing their constructors' steps."""
        scheds = self if sched is None else sched
        if hasattr(scheds, "_schedulers"):
            for s in scheds._schedulers:
                self.recursive_undo(s)
        elif hasattr(scheds, "last_epoch"):
            scheds.last_epoch -= 1

    def step(self):
        """Advance by one step: restart the next scheduler at a milestone, else step the active one."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


class ChainedScheduler(_CompositeStateMixin, LRScheduler):
    r"""Step several schedulers together: their (chainable) updates compose.

    .. math::
        \eta_t = f_K \circ \dots \circ f_1(\eta_{t-1})

    where :math:`f_k` is the chainable update of ``schedulers[k]``; with multiplicative schedulers
    the factors multiply, e.g. a :class:`ConstantLR` warmup on top of an :class:`ExponentialLR`.

    Parameters
    ----------
    schedulers : sequence of LRScheduler
        At least one; no :class:`ReduceLROnPlateau`; all of the same optimizer.
    optimizer : fastoptim.Optimizer, optional
        Defaults to ``schedulers[0].optimizer``.

    Raises
    ------
    ValueError, TypeError
        torch's messages for an empty sequence, a child without ``optimizer``, a
        ReduceLROnPlateau child or a child of another optimizer.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> from fastoptim import lr_scheduler as ls
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = ls.ChainedScheduler([ls.ConstantLR(opt, factor=0.5, total_iters=2),
    ...                              ls.ExponentialLR(opt, gamma=0.5)])
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.05, 0.025, 0.025, 0.0125]
    """

    _state_validators = {"_last_lr": _v_group_lrs}

    def __init__(self, schedulers, optimizer=None):
        if len(schedulers) < 1:
            raise ValueError(
                f"{self.__class__.__name__} expects at least one scheduler to be chained, but got no scheduler."
            )
        if optimizer is None:
            # torch reads schedulers[0].optimizer unguarded (an AttributeError); a missing
            # attribute is reported by the index check below instead.
            optimizer = getattr(schedulers[0], "optimizer", None)
        _check_composite_children(self, optimizer, schedulers)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = _param_groups_val_list(self._schedulers[-1].optimizer, "lr")

    def step(self):
        """Step every scheduler in order."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = _param_groups_val_list(self._schedulers[-1].optimizer, "lr")
