r"""``python -m fastoptim demo``: train a small NumPy network, checkpoint it, resume it exactly.

This module is the demo *and* a template for your own training loop: everything below is plain
NumPy plus four fastoptim names (:class:`~fastoptim.Parameter`, an optimizer, a scheduler from
:mod:`fastoptim.lr_scheduler`, and :func:`~fastoptim.save` / :func:`~fastoptim.load`). Copy the
parts you need.

The data
--------
A five-armed spiral in the plane: 10,000 points, 2,000 per arm, each arm winding two and a half
turns around the origin, with some angular noise so that the arms touch near the centre. The task
is to tell which arm a point belongs to. It is generated from a fixed seed by :func:`make_spiral`,
so it needs no download and is the same every time; 8,000 points are for training and 2,000 are
held out for validation. A linear model gets about 25% of them right (chance is 20%); the network
below passes 95% within the first few thousand steps and ends the default run of 30,000 steps
above 99%.

The model
---------
A multilayer perceptron ``2 -> 32 -> 32 -> 5`` with ReLU activations and a softmax cross-entropy
loss (:class:`MLP`). It is written out by hand: ``forward`` keeps the activations, ``backward``
computes every gradient with the chain rule and stores it in ``param.grad``, exactly where
``torch.optim`` would find it after ``loss.backward()``. A layer is ``y = x @ W + b`` with ``W`` of
shape ``(in, out)`` (torch's ``nn.Linear`` stores the transpose). The weights and biases are
:class:`fastoptim.Parameter` arrays, float32, which the optimizer updates in place.

The loop
--------
It is torch's loop, line for line::

    optimizer = fo.AdamW([{"params": weights, "weight_decay": 1e-2},
                          {"params": biases, "weight_decay": 0.0}], lr=1e-2)
    scheduler = fo.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[n_warmup])
    for step in range(steps):
        x, y = next_batch()
        optimizer.zero_grad()           # grads -> None
        logits, cache = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        model.backward(cache, dlogits)  # sets p.grad for every parameter
        optimizer.step()
        scheduler.step()

* Two param groups: weight decay on the weight matrices, none on the biases (decaying a bias
  only pulls the decision boundaries towards the origin).
* The learning rate warms up linearly over the first 5% of the steps
  (:class:`~fastoptim.lr_scheduler.LinearLR`), then follows a cosine down to zero
  (:class:`~fastoptim.lr_scheduler.CosineAnnealingLR`), joined by
  :class:`~fastoptim.lr_scheduler.SequentialLR`.

Checkpoints and exact resume
----------------------------
A checkpoint (:meth:`Training.checkpoint`) is one dict written with :func:`fastoptim.save`, which
replaces the file atomically: a crash or a Ctrl-C while saving leaves the previous checkpoint
intact. It holds everything the rest of the run depends on:

* the parameters, ``optimizer.state_dict()`` and ``scheduler.state_dict()``;
* the step number;
* the batch sampler: the shuffling generator's ``bit_generator.state``, the current epoch's
  permutation and the position in it. Without these, a resumed run would see different batches
  and end with different weights;
* the settings the run was started with (a resumed run must not silently change them: the cosine
  schedule depends on the number of steps, for example), and the history of logged metrics, so
  that the curve of a resumed run is the whole curve.

To resume, build the model, optimizer and scheduler exactly as for a fresh run, then load the
state into them (:meth:`Training.load_checkpoint`). Since every operation is deterministic (NumPy
gives the same bits for the same inputs, and fastoptim's kernels give the same bits for every
thread count), a run that is interrupted and resumed ends with *bit for bit* the same parameters
as a run that never stopped. Every run prints a SHA-256 digest of its final parameters, so that you can
compare runs, and ``--verify-resume`` checks it for you. (Compare digests on one machine and one
NumPy version: another CPU's ``exp`` or matrix-product kernels, or another NumPy's random streams,
may round differently.)

Ctrl-C does not interrupt a step half-way: a signal handler only sets a flag, and the loop stops
after the step it is in, saves a checkpoint and tells you how to resume. A second Ctrl-C stops at
once (the last checkpoint on disk stays valid, because saves are atomic).

Run ``python -m fastoptim demo --help`` for the options.
"""

import argparse
import hashlib
import math
import os
import shlex
import signal
import sys
import tempfile
import time
import warnings

import numpy as np

import fastoptim as fo
from fastoptim.optim import registry as _registry

__all__ = [
    "make_spiral",
    "MLP",
    "softmax_cross_entropy",
    "BatchSampler",
    "Training",
    "params_digest",
    "main",
]

PROG = "python -m fastoptim demo"
CHECKPOINT_NAME = "checkpoint.fo"
PLOT_NAME = "training.png"
CHECKPOINT_FORMAT = "fastoptim-demo"
CHECKPOINT_VERSION = 1

# The data set is part of the demo, not of the run: it has its own fixed seed, so that --seed
# changes the initialisation and the batch order but never the problem being solved.
DATA_SEED = 20240607
N_CLASSES = 5
N_POINTS = 10_000
N_TRAIN = 8_000
TURNS = 2.5
ANGLE_NOISE = 0.2
HIDDEN = 32
DTYPE = np.float32

# The evaluation goes through the data in chunks of a training batch, so that every matrix product
# in the demo is as small as the training step's (at most 128 x 32 x 32 multiply-adds). OpenBLAS
# hands large products to its thread pool: on the 2-core machine this demo was tuned on, shared
# with other jobs, a 2400 x 32 x 32 product took 4x longer that way than on one thread, while
# products up to 128 x 64 x 64 stayed on the calling thread. Small products also keep the
# results independent of the BLAS thread count.
EVAL_CHUNK = 128

# The optimizers the demo offers (``--optimizer``, lowercase names) and their settings: the
# registry entries that have ``demo`` settings (learning rate, weight decay of the weight
# matrices, further hyperparameters), the default one first.
_DEMO = {info.name.lower(): info for info in _registry.OPTIMIZERS.values() if info.demo}
OPTIMIZERS = tuple(sorted(_DEMO, key=lambda name: not _DEMO[name].demo.get("default")))
DEFAULT_OPTIMIZER = OPTIMIZERS[0]
DEFAULT_HPARAMS = {name: (info.demo["lr"], info.demo["weight_decay"])
                   for name, info in _DEMO.items()}


def _extra_settings(name):
    """The demo's further hyperparameters of optimizer ``name``, as text (", momentum 0.9")."""
    return "".join(f", {key} {value}" for key, value in _DEMO[name].demo.get("kwargs", {}).items())
DEFAULT_STEPS = 30_000
DEFAULT_BATCH = 128
DEFAULT_SEED = 0
DEFAULT_CHECKPOINT_EVERY = 2000
PROGRESS_LINES = 30  # the default --log-every is steps / PROGRESS_LINES
WARMUP_FRACTION = 0.05
WARMUP_START_FACTOR = 0.01

# The settings that decide a run's numbers; a checkpoint stores them, and --resume refuses to
# change them.
RUN_SETTINGS = ("optimizer", "lr", "weight_decay", "steps", "batch_size", "seed")


class DemoError(Exception):
    """An error to report as one line (no traceback), with the process exit status to use."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def make_spiral(n_points=N_POINTS, n_classes=N_CLASSES, turns=TURNS, noise=ANGLE_NOISE,
                seed=DATA_SEED, dtype=DTYPE):
    """Generate the spiral classification problem.

    Parameters
    ----------
    n_points : int
        Total number of points, split evenly between the classes.
    n_classes : int
        Number of spiral arms (classes).
    turns : float
        How many turns each arm makes from the centre to radius 1.
    noise : float
        Standard deviation of the angular noise, in radians.
    seed : int
        Seed of the generator; the same seed gives the same bits on every machine.
    dtype : numpy.dtype
        Dtype of the coordinates.

    Returns
    -------
    x : numpy.ndarray
        ``(n_points, 2)`` coordinates, in random order.
    y : numpy.ndarray
        ``(n_points,)`` class labels (int64), ``0 <= y < n_classes``.
    """
    rng = np.random.default_rng(seed)
    per_class = n_points // n_classes
    # sqrt of a uniform variable spreads the points evenly over the disc instead of crowding the
    # centre; the small lower bound keeps them off the origin, where all arms meet.
    radius = np.sqrt(rng.uniform(0.01, 1.0, size=(n_classes, per_class)))
    arm = np.arange(n_classes)[:, None] * (2 * np.pi / n_classes)
    angle = arm + radius * (2 * np.pi * turns) + rng.normal(0.0, noise, size=radius.shape)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).reshape(-1, 2)
    y = np.repeat(np.arange(n_classes), per_class)
    order = rng.permutation(len(y))
    return np.ascontiguousarray(x[order], dtype=dtype), y[order]


def make_dataset():
    """The demo's data: ``(train_x, train_y, val_x, val_y)`` from :func:`make_spiral`."""
    x, y = make_spiral()
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


class BatchSampler:
    """Mini-batches in a fresh random order every epoch, with a resumable state.

    Each epoch is a permutation of the training indices cut into batches of ``batch_size``; the
    incomplete last batch is dropped (it would be the only one of another size), as with
    ``torch.utils.data.DataLoader(..., shuffle=True, drop_last=True)``.

    Parameters
    ----------
    n : int
        Number of training examples.
    batch_size : int
        Examples per batch, ``1 <= batch_size <= n``.
    rng : numpy.random.Generator
        The generator that draws the permutations. Its state is part of :meth:`state_dict`.
    """

    def __init__(self, n, batch_size, rng):
        self.n = n
        self.batch_size = batch_size
        self.rng = rng
        self.perm = np.empty(0, dtype=np.int64)
        self.pos = 0

    def next(self):
        """Indices of the next batch."""
        if self.pos + self.batch_size > len(self.perm):
            self.perm = self.rng.permutation(self.n)
            self.pos = 0
        batch = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return batch

    def state_dict(self):
        """Everything that decides the batches to come (copies, safe to keep)."""
        return {
            "bit_generator": self.rng.bit_generator.state,
            "perm": self.perm.copy(),
            "pos": self.pos,
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`; raises ``ValueError`` if it does not fit this sampler."""
        bg_state = state["bit_generator"]
        expected = type(self.rng.bit_generator).__name__
        if not isinstance(bg_state, dict) or bg_state.get("bit_generator") != expected:
            raise ValueError(f"the sampler's generator state is not a {expected} state")
        perm = np.asarray(state["perm"])
        pos = state["pos"]
        if perm.ndim != 1 or perm.dtype.kind not in "iu" or len(perm) not in (0, self.n):
            raise ValueError(f"the sampler's permutation does not index {self.n} examples")
        if len(perm) and not np.array_equal(np.sort(perm), np.arange(self.n)):
            raise ValueError("the sampler's permutation is not a permutation")
        if not isinstance(pos, int) or not 0 <= pos <= len(perm):
            raise ValueError(f"the sampler's position {pos!r} is out of range")
        self.rng.bit_generator.state = bg_state
        self.perm = perm.astype(np.int64)
        self.pos = pos


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

def softmax_cross_entropy(logits, y):
    """Mean softmax cross-entropy and its gradient with respect to the logits.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(batch, classes)`` scores.
    y : numpy.ndarray
        ``(batch,)`` integer labels.

    Returns
    -------
    loss : float
        ``mean(-log softmax(logits)[i, y[i]])``.
    dlogits : numpy.ndarray
        ``d loss / d logits``, ``(softmax(logits) - onehot(y)) / batch``, in the logits' dtype.
    """
    rows = np.arange(len(y))
    # Subtracting the row maximum keeps exp() from overflowing and does not change the softmax.
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
    dlogits = exp / total
    dlogits[rows, y] -= 1
    dlogits /= len(y)
    return loss, dlogits


class MLP:
    """A multilayer perceptron with ReLU activations and :class:`fastoptim.Parameter` parameters.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first: ``(2, 32, 32, 5)`` is two hidden layers of 32.
    rng : numpy.random.Generator
        Draws the initial weights (He initialisation, suited to ReLU); biases start at zero.
    dtype : numpy.dtype
        float32 or float64.

    Attributes
    ----------
    params : dict
        ``{"fc1.weight": W1, "fc1.bias": b1, ...}`` in layer order; ``W`` is ``(in, out)``.
    """

    def __init__(self, sizes, rng, dtype=DTYPE):
        self.sizes = tuple(sizes)
        self.params = {}
        for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            w = rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)
            self.params[f"fc{i}.weight"] = fo.Parameter(w.astype(dtype))
            self.params[f"fc{i}.bias"] = fo.Parameter(np.zeros(n_out, dtype=dtype))

    @property
    def layers(self):
        """``[(W, b), ...]`` in order."""
        values = list(self.params.values())
        return list(zip(values[0::2], values[1::2]))

    def weights(self):
        """The weight matrices (the param group with weight decay)."""
        return [w for w, _ in self.layers]

    def biases(self):
        """The bias vectors (the param group without weight decay)."""
        return [b for _, b in self.layers]

    def forward(self, x):
        """Logits for ``x`` and the activations that :meth:`backward` needs.

        Returns
        -------
        logits : numpy.ndarray
            ``(batch, classes)``.
        cache : list of numpy.ndarray
            The input of every layer (``x``, then each ReLU output).
        """
        cache = [x]
        layers = self.layers
        h = x
        for i, (w, b) in enumerate(layers):
            # np.asarray: arithmetic on a Parameter already gives a plain ndarray, this only
            # makes it obvious that activations are not Parameters.
            h = np.asarray(h @ w + b)
            if i < len(layers) - 1:
                h = np.maximum(h, 0)
                cache.append(h)
        return h, cache

    def backward(self, cache, dlogits):
        """Backpropagate ``dlogits`` and store every gradient in ``param.grad``.

        Parameters
        ----------
        cache : list of numpy.ndarray
            From :meth:`forward`.
        dlogits : numpy.ndarray
            ``d loss / d logits``.
        """
        grad = dlogits
        layers = self.layers
        for i in reversed(range(len(cache))):
            w, b = layers[i]
            inputs = cache[i]
            w.grad = inputs.T @ grad
            b.grad = grad.sum(axis=0)
            if i > 0:
                # ReLU passes the gradient where its output was positive; inputs = relu(z).
                grad = (grad @ w.T) * (inputs > 0)

    def predict_logits(self, x):
        """Logits for any number of rows, in chunks of ``EVAL_CHUNK`` (see the note there)."""
        return np.concatenate([self.forward(x[i:i + EVAL_CHUNK])[0]
                               for i in range(0, len(x), EVAL_CHUNK)])


def params_digest(params):
    """SHA-256 of the parameters' names, dtypes, shapes and bytes, in order.

    Two runs print the same digest exactly when their final parameters are bit for bit equal.

    Parameters
    ----------
    params : dict
        ``{name: array}``.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    for name, p in params.items():
        h.update(f"{name}|{p.dtype.str}|{p.shape}|".encode())
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()


def _state_digest(training):
    """SHA-256 of the parameters *and* the optimizer's state (moments, step counts, lrs)."""
    h = hashlib.sha256(params_digest(training.model.params).encode())
    sd = training.optimizer.state_dict()
    for index in sorted(sd["state"]):
        for key, value in sorted(sd["state"][index].items()):
            h.update(f"{index}|{key}|".encode())
            h.update(np.ascontiguousarray(value).tobytes() if isinstance(value, np.ndarray)
                     else repr(value).encode())
    h.update(repr([{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]])
             .encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def make_optimizer(name, model, lr, weight_decay):
    """The optimizer, with two param groups: decayed weights, undecayed biases."""
    groups = [
        {"params": model.weights(), "weight_decay": weight_decay},
        {"params": model.biases(), "weight_decay": 0.0},
    ]
    if name in _DEMO:
        return _DEMO[name].cls(groups, lr=lr, **_DEMO[name].demo.get("kwargs", {}))
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def warmup_steps(steps):
    """Number of linear warm-up steps for a run of ``steps`` (5%, possibly 0)."""
    return int(steps * WARMUP_FRACTION)


def make_scheduler(optimizer, steps):
    """Linear warm-up over the first 5% of ``steps``, then a cosine down to 0 at ``steps``."""
    warmup = warmup_steps(steps)
    cosine = fo.lr_scheduler.CosineAnnealingLR
    if warmup == 0:
        return cosine(optimizer, T_max=steps)
    return fo.lr_scheduler.SequentialLR(
        optimizer,
        [fo.lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, total_iters=warmup),
         cosine(optimizer, T_max=steps - warmup)],
        milestones=[warmup],
    )


class Training:
    """One training run: data, model, optimizer, scheduler, sampler, step and metric history.

    Parameters
    ----------
    config : dict
        The run settings (:data:`RUN_SETTINGS`): ``optimizer``, ``lr``, ``weight_decay``,
        ``steps``, ``batch_size``, ``seed``.
    dataset : tuple
        ``(train_x, train_y, val_x, val_y)`` from :func:`make_dataset`.
    """

    def __init__(self, config, dataset):
        self.config = dict(config)
        self.train_x, self.train_y, self.val_x, self.val_y = dataset
        # Two independent streams from one seed: changing how the weights are drawn never
        # changes the batch order, and the other way round.
        init_seed, shuffle_seed = np.random.SeedSequence(config["seed"]).spawn(2)
        sizes = (self.train_x.shape[1], HIDDEN, HIDDEN, N_CLASSES)
        self.model = MLP(sizes, np.random.default_rng(init_seed))
        self.optimizer = make_optimizer(config["optimizer"], self.model, config["lr"],
                                        config["weight_decay"])
        self.scheduler = make_scheduler(self.optimizer, config["steps"])
        self.sampler = BatchSampler(len(self.train_x), config["batch_size"],
                                    np.random.default_rng(shuffle_seed))
        self.step = 0
        # How often the loop prints (and records) metrics and saves checkpoints. They do not change
        # the numbers, so --resume may override them, but they are kept in the checkpoint so that
        # a resumed run records its history at the same steps as an uninterrupted one.
        self.intervals = {"log_every": max(1, config["steps"] // PROGRESS_LINES),
                          "checkpoint_every": DEFAULT_CHECKPOINT_EVERY}
        self.history = {"step": [], "train_loss": [], "val_loss": [], "train_acc": [],
                        "val_acc": [], "lr": []}

    @property
    def steps(self):
        return self.config["steps"]

    def lr(self):
        """Learning rate of the next step (the weights' group; both groups share it)."""
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self):
        """One optimizer step on the next batch; returns the batch loss."""
        batch = self.sampler.next()
        x, y = self.train_x[batch], self.train_y[batch]
        self.optimizer.zero_grad()
        logits, cache = self.model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        self.model.backward(cache, dlogits)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss

    def _loss_acc(self, x, y):
        logits = self.model.predict_logits(x)
        loss, _ = softmax_cross_entropy(logits, y)
        return loss, float(np.mean(logits.argmax(axis=1) == y))

    def evaluate(self):
        """Loss and accuracy on the whole training and validation sets; appended to the history.

        Evaluation reads the parameters and nothing else, so it never changes the run's numbers.
        """
        train_loss, train_acc = self._loss_acc(self.train_x, self.train_y)
        val_loss, val_acc = self._loss_acc(self.val_x, self.val_y)
        metrics = {"step": self.step, "train_loss": train_loss, "val_loss": val_loss,
                   "train_acc": train_acc, "val_acc": val_acc, "lr": self.lr()}
        for key, value in metrics.items():
            self.history[key].append(value)
        return metrics

    def checkpoint(self):
        """Everything needed to continue this run exactly: one dict for :func:`fastoptim.save`."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": dict(self.config),
            "step": self.step,
            "model": {name: np.array(p) for name, p in self.model.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "history": {key: list(values) for key, values in self.history.items()},
            "intervals": dict(self.intervals),
        }

    def load_checkpoint(self, ckpt):
        """Continue from :meth:`checkpoint`'s dict. This object must be built with the same config.

        Raises
        ------
        ValueError
            If the checkpoint does not fit this run (a parameter of another shape, a missing key,
            an optimizer state that the optimizer refuses, ...). Nothing is half-loaded that the
            caller would go on using: on an error, discard this object.
        """
        try:
            step = ckpt["step"]
            if not isinstance(step, int) or not 0 <= step <= self.steps:
                raise ValueError(f"step {step!r} is not between 0 and {self.steps}")
            model = ckpt["model"]
            if set(model) != set(self.model.params):
                raise ValueError(f"the model's parameters are {sorted(model)}, "
                                 f"expected {sorted(self.model.params)}")
            for name, p in self.model.params.items():
                value = model[name]
                if not isinstance(value, np.ndarray) or value.shape != p.shape \
                        or value.dtype != p.dtype:
                    raise ValueError(f"parameter {name} is not a {p.dtype} array "
                                     f"of shape {p.shape}")
            history = ckpt["history"]
            if set(history) != set(self.history) or \
                    len({len(v) for v in history.values()}) != 1:
                raise ValueError("the metric history is malformed")
            intervals = ckpt["intervals"]
            if set(intervals) != set(self.intervals) or any(
                    not isinstance(v, int) or v < (1 if k == "log_every" else 0)
                    for k, v in intervals.items()):
                raise ValueError(f"the intervals {intervals!r} are malformed")
            # The optimizer and the scheduler validate their own state dicts, all or nothing.
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if self.scheduler.last_epoch != step:
                raise ValueError(f"the scheduler has made {self.scheduler.last_epoch} steps, "
                                 f"but the checkpoint is at step {step}")
            self.sampler.load_state_dict(ckpt["sampler"])
            for name, p in self.model.params.items():
                p[...] = model[name]
            self.history = {key: list(values) for key, values in history.items()}
            self.intervals = dict(intervals)
            self.step = step
        except KeyError as exc:
            raise ValueError(f"missing key {exc}") from None
        except TypeError as exc:
            raise ValueError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse


def _float_at_least(minimum, strict):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value
    return parse


def build_parser():
    """The ``python -m fastoptim demo`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a small NumPy network on a built-in spiral data set with a fastoptim "
                    "optimizer and scheduler, saving checkpoints that resume bit for bit. "
                    "Ctrl-C stops after the current step with a checkpoint; --resume continues.",
    )
    settings = parser.add_argument_group(
        "run settings (a resumed run keeps the ones it started with)")
    settings.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                          help=", ".join(f"{name} ({_extra_settings(name)[2:] or 'default'})"
                                         if name == DEFAULT_OPTIMIZER or _extra_settings(name)
                                         else name for name in OPTIMIZERS))
    settings.add_argument("--lr", type=_float_at_least(0.0, strict=True), default=None,
                          help="peak learning rate (default: " + ", ".join(
                              f"{DEFAULT_HPARAMS[name][0]:g} {name}" for name in OPTIMIZERS) + ")")
    settings.add_argument("--weight-decay", type=_float_at_least(0.0, strict=False),
                          default=None, help="weight decay of the weight matrices; biases get "
                                             "none (default: " + ", ".join(
                              f"{DEFAULT_HPARAMS[name][1]:g} {name}" for name in OPTIMIZERS) + ")")
    settings.add_argument("--steps", type=_int_at_least(1), default=None,
                          help=f"optimizer steps in the whole run (default {DEFAULT_STEPS})")
    settings.add_argument("--batch-size", type=_int_at_least(1), default=None,
                          help=f"examples per step, at most {N_TRAIN} (default {DEFAULT_BATCH})")
    settings.add_argument("--seed", type=_int_at_least(0), default=None,
                          help="seed of the initial weights and the batch order (default 0); "
                          "the data set is always the same")
    parser.add_argument("--out", default="fastoptim-demo", metavar="DIR",
                        help=f"directory for {CHECKPOINT_NAME} and {PLOT_NAME} "
                             "(default ./fastoptim-demo)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run whose checkpoint is in --out")
    parser.add_argument("--checkpoint-every", type=_int_at_least(0), default=None, metavar="N",
                        help=f"save a checkpoint every N steps (default {DEFAULT_CHECKPOINT_EVERY};"
                             " 0: only at the end and on Ctrl-C; a resumed run keeps its own "
                             "unless given)")
    parser.add_argument("--log-every", type=_int_at_least(1), default=None, metavar="N",
                        help=f"print and record the metrics every N steps (default: steps/"
                             f"{PROGRESS_LINES}; a resumed run keeps its own unless given)")
    parser.add_argument("--threads", type=_int_at_least(1), default=None,
                        help="threads of fastoptim's kernels (fo.set_num_threads; the results "
                             "are the same for every count)")
    parser.add_argument("--stop-after", type=_int_at_least(1), default=None,
                        metavar="N", help="stop after step N with a checkpoint, as Ctrl-C would "
                                          "(to try --resume)")
    parser.add_argument("--verify-resume", action="store_true",
                        help="after the run, train again in this process, interrupted half-way "
                             "and resumed from a checkpoint file (or, for a resumed run, without "
                             "interruption), and check that both end with the same bits")
    parser.add_argument("--no-plot", action="store_true",
                        help=f"do not write {PLOT_NAME} (it is written only when matplotlib "
                             "is installed)")
    return parser


def _resolve_config(args, ckpt):
    """The run settings: from the command line and defaults, or from the checkpoint on --resume."""
    given = {key: getattr(args, key) for key in RUN_SETTINGS if getattr(args, key) is not None}
    if ckpt is not None:
        config = ckpt["config"]
        for key, value in given.items():
            if value != config[key]:
                flag = "--" + key.replace("_", "-")
                raise DemoError(f"{flag} {value} does not match the checkpoint in {args.out} "
                                f"({flag} {config[key]}): a resumed run keeps the settings it "
                                f"started with; leave out {flag}, or start a new run with another "
                                f"--out", status=2)
        return config
    name = given.get("optimizer", DEFAULT_OPTIMIZER)
    lr, weight_decay = DEFAULT_HPARAMS[name]
    config = {
        "optimizer": name,
        "lr": given.get("lr", lr),
        "weight_decay": given.get("weight_decay", weight_decay),
        "steps": given.get("steps", DEFAULT_STEPS),
        "batch_size": given.get("batch_size", DEFAULT_BATCH),
        "seed": given.get("seed", DEFAULT_SEED),
    }
    if config["batch_size"] > N_TRAIN:
        raise DemoError(f"--batch-size must be at most the {N_TRAIN} training examples, "
                        f"got {config['batch_size']}", status=2)
    return config


def _check_config(config):
    """Validate settings read from a checkpoint (they could come from anywhere)."""
    if not isinstance(config, dict) or set(config) != set(RUN_SETTINGS):
        raise ValueError(f"its settings are not the demo's {', '.join(RUN_SETTINGS)}")
    if config["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config['optimizer']!r}")
    for key in ("steps", "batch_size", "seed"):
        if not isinstance(config[key], int) or config[key] < (0 if key == "seed" else 1):
            raise ValueError(f"setting {key}={config[key]!r} is not valid")
    if config["batch_size"] > N_TRAIN:
        raise ValueError(f"batch_size {config['batch_size']} is more than {N_TRAIN}")
    for key in ("lr", "weight_decay"):
        if not isinstance(config[key], float) or not math.isfinite(config[key]) \
                or config[key] < 0:
            raise ValueError(f"setting {key}={config[key]!r} is not valid")


def _prepare_out(out):
    """Create ``out`` if needed and make sure a file can be written there, before training."""
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise DemoError(f"cannot write to --out {out}: {exc.strerror or exc}", status=2) from None


def _load_checkpoint(path):
    try:
        ckpt = fo.load(path)
    except fo.CheckpointError as exc:
        raise DemoError(f"cannot resume: {exc}") from None
    except OSError as exc:
        raise DemoError(f"cannot resume: cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DemoError(f"cannot resume: {path} is a fastoptim checkpoint, but not one "
                        "written by the demo")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise DemoError(f"cannot resume: {path} is a demo checkpoint of version "
                        f"{ckpt.get('version')!r}; this fastoptim reads version "
                        f"{CHECKPOINT_VERSION}")
    try:
        _check_config(ckpt.get("config"))
    except ValueError as exc:
        raise DemoError(f"cannot resume from {path}: {exc}") from None
    return ckpt


def _save(training, path):
    try:
        fo.save(training.checkpoint(), path)
    except OSError as exc:
        raise DemoError(f"cannot save the checkpoint: {exc}") from None


class _StopFlag:
    """Turns the first Ctrl-C into a request to stop after the current step.

    Raising ``KeyboardInterrupt`` wherever the signal lands could stop ``optimizer.step()`` between
    two param groups, leaving a state that no uninterrupted run ever had; a flag that the loop
    checks between steps cannot. The handler does nothing else (printing from a signal handler
    can collide with a ``print`` in progress). A second Ctrl-C raises ``KeyboardInterrupt`` as
    usual, for a loop that is stuck.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: signals cannot be handled here
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _progress_line(m, steps, rate, saved):
    width = len(str(steps))
    line = (f"step {m['step']:>{width}}/{steps}"
            f"  loss {m['train_loss']:.4f} (val {m['val_loss']:.4f})"
            f"  acc {100 * m['train_acc']:5.1f}% (val {100 * m['val_acc']:5.1f}%)"
            f"  lr {m['lr']:.2e}")
    if rate is not None:
        line += f"  {rate:5.0f} steps/s"
    if saved:
        line += "  [checkpoint saved]"
    return line


def _train(training, ckpt_path, stop_flag, stop_at):
    """The loop with progress, checkpoints and stopping.

    Returns
    -------
    reason : str
        ``"done"``, ``"stop-after"`` or ``"interrupt"``.
    rate : float
        Steps per second in this session, evaluation and checkpoints included.
    elapsed : float
        Seconds spent in the loop.
    """
    steps = training.steps
    log_every = training.intervals["log_every"]
    checkpoint_every = training.intervals["checkpoint_every"]
    if training.step == 0:
        print(_progress_line(training.evaluate(), steps, None, False), flush=True)
    t_start = t_last = time.perf_counter()
    step_last = first_step = training.step
    while training.step < steps:
        training.train_step()
        step = training.step
        stop = ("done" if step == steps else "stop-after" if step == stop_at
                else "interrupt" if stop_flag.requested else None)
        log = step % log_every == 0 or step == steps
        # Evaluate before saving: the metrics of this step belong in the checkpoint's history,
        # or a run resumed from it would lack them.
        metrics = training.evaluate() if log else None
        save = stop is not None or (checkpoint_every and step % checkpoint_every == 0)
        if save:
            _save(training, ckpt_path)
        if log:
            now = time.perf_counter()
            rate = (step - step_last) / max(now - t_last, 1e-9)
            print(_progress_line(metrics, steps, rate, save and stop is None), flush=True)
            t_last, step_last = now, step
        elif save and stop is None:
            print(f"  checkpoint saved at step {step}", flush=True)
        if stop is not None:
            elapsed = time.perf_counter() - t_start
            return stop, (step - first_step) / max(elapsed, 1e-9), elapsed
    return "done", 0.0, 0.0  # a resumed run that had already finished


def _resume_hint(out):
    return f"{PROG} --resume --out {shlex.quote(out)}"


def write_plot(history, path, title):
    """Write the loss, accuracy and learning-rate curves to ``path`` (PNG). Needs matplotlib.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    """
    # The Figure API without pyplot: no GUI backend is chosen and no global state is touched.
    from matplotlib.figure import Figure

    steps = history["step"]
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(steps, history["train_loss"], label="train")
    ax_loss.plot(steps, history["val_loss"], label="validation")
    ax_loss.set_yscale("log")
    ax_loss.set_title("cross-entropy loss")
    ax_acc.plot(steps, [100 * a for a in history["train_acc"]], label="train")
    ax_acc.plot(steps, [100 * a for a in history["val_acc"]], label="validation")
    ax_acc.set_ylim(0, 100)
    ax_acc.set_title("accuracy (%)")
    ax_lr.plot(steps, history["lr"], color="tab:green")
    ax_lr.set_title("learning rate")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    # Write next to the target and rename, so that a half-written PNG never replaces a good one.
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _plot(training, args, ckpt_path):
    if args.no_plot:
        print("plot: skipped (--no-plot)")
        return
    path = os.path.join(args.out, PLOT_NAME)
    c = training.config
    title = (f"fastoptim demo: {c['optimizer']} lr {c['lr']:g}, {c['steps']} steps, "
             f"seed {c['seed']}")
    try:
        write_plot(training.history, path, title)
    except ImportError:
        print(f"plot: skipped (matplotlib is not installed; pip install matplotlib to get {path})")
    except Exception as exc:  # noqa: BLE001 - the plot is an extra: the run and its checkpoint
        # are already saved, so a plotting failure is reported, not fatal.
        print(f"plot: failed ({type(exc).__name__}: {exc}); the checkpoint {ckpt_path} is fine")
    else:
        print(f"plot: {path}")


def _verify_resume(config, dataset, final_state, resumed_from, out):
    """Train again in-process and compare the final state bits with the run's. Returns status."""
    steps = config["steps"]
    if resumed_from is None:
        split = steps // 2
        print(f"resume check: training again, stopping at step {split}, saving with fo.save, "
              "loading with fo.load into a fresh model and optimizer, and resuming ...",
              flush=True)
        first = Training(config, dataset)
        while first.step < split:
            first.train_step()
        path = os.path.join(out, f"resume-check-{os.getpid()}.fo")
        try:
            _save(first, path)
            del first
            second = Training(config, dataset)
            second.load_checkpoint(fo.load(path))
        finally:
            if os.path.exists(path):
                os.unlink(path)
        what = f"a run stopped at step {split} and resumed from its checkpoint file"
    else:
        print("resume check: training again from step 0 without interruption ...", flush=True)
        second = Training(config, dataset)
        what = "an uninterrupted run"
    while second.step < steps:
        second.train_step()
    digest = params_digest(second.model.params)
    if _state_digest(second) == final_state:
        print(f"resume check: identical (sha256 {digest}): {what} ends with the same parameters "
              f"and optimizer state, bit for bit")
        return 0
    print(f"resume check: DIFFERENT: {what} ends with parameters sha256 {digest}", file=sys.stderr)
    return 1


def _set_threads(n):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fo.set_num_threads(n)
    for w in caught:
        print(f"note: {w.message}")


def run(args):
    """Run the demo for parsed ``args``; returns the exit status."""
    ckpt_path = os.path.join(args.out, CHECKPOINT_NAME)
    ckpt = None
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise DemoError(f"--resume: no checkpoint to resume from in {args.out} "
                            f"({ckpt_path} does not exist); run without --resume to start",
                            status=2)
        ckpt = _load_checkpoint(ckpt_path)
    config = _resolve_config(args, ckpt)
    if args.stop_after is not None and args.stop_after >= config["steps"]:
        raise DemoError(f"--stop-after {args.stop_after} must be less than the run's "
                        f"{config['steps']} steps", status=2)
    if args.verify_resume and args.stop_after is not None:
        raise DemoError("--verify-resume checks a run that reaches its last step; "
                        "leave out --stop-after", status=2)
    _prepare_out(args.out)
    if args.threads is not None:
        _set_threads(args.threads)

    dataset = make_dataset()
    training = Training(config, dataset)
    resumed_from = None
    if ckpt is not None:
        try:
            training.load_checkpoint(ckpt)
        except ValueError as exc:
            raise DemoError(f"cannot resume from {ckpt_path}: {exc}") from None
        resumed_from = training.step
        del ckpt
        if args.stop_after is not None and args.stop_after <= resumed_from:
            raise DemoError(f"--stop-after {args.stop_after} is not after the checkpoint's step "
                            f"{resumed_from}", status=2)
    for key in ("log_every", "checkpoint_every"):
        if getattr(args, key) is not None:
            training.intervals[key] = getattr(args, key)
    checkpoint_every = training.intervals["checkpoint_every"]

    c = config
    n_params = sum(p.size for p in training.model.params.values())
    sizes = "-".join(str(s) for s in training.model.sizes)
    print(f"fastoptim {fo.__version__} demo: {N_CLASSES}-arm spiral, {len(dataset[0])} training "
          f"and {len(dataset[2])} validation points")
    print(f"model: MLP {sizes} (ReLU), {n_params} float32 parameters; seed {c['seed']}, "
          f"batch {c['batch_size']}")
    opt_name = type(training.optimizer).__name__
    extra = _extra_settings(c["optimizer"])
    warmup = warmup_steps(c["steps"])
    schedule = (f"linear warm-up for {warmup} steps, then cosine" if warmup else "cosine")
    print(f"optimizer: {opt_name} lr {c['lr']:g}{extra}, weight decay {c['weight_decay']:g} on "
          f"weights, 0 on biases; {schedule} to 0 at step {c['steps']}")
    print(f"threads: {fo.get_num_threads()} (fastoptim kernels); checkpoints: "
          + (f"every {checkpoint_every} steps, " if checkpoint_every else "")
          + f"at the end and on Ctrl-C, to {ckpt_path}")
    if resumed_from is not None:
        print(f"resumed from {ckpt_path} at step {resumed_from}/{c['steps']}")
    elif os.path.exists(ckpt_path):
        print(f"note: starting a new run; this replaces the checkpoint in {args.out} "
              f"(use --resume to continue it instead)")
    sys.stdout.flush()

    with _StopFlag() as stop_flag:
        try:
            reason, rate, elapsed = _train(training, ckpt_path, stop_flag, args.stop_after)
        except KeyboardInterrupt:
            print(f"\nstopped at once by a second Ctrl-C, without a final checkpoint; the last "
                  f"complete checkpoint is {ckpt_path} (saves are atomic). Resume with:\n"
                  f"  {_resume_hint(args.out)}", flush=True)
            return 130

    digest = params_digest(training.model.params)
    if reason != "done":
        why = "Ctrl-C" if reason == "interrupt" else "--stop-after"
        print(f"stopped at step {training.step}/{c['steps']} ({why}); checkpoint saved to "
              f"{ckpt_path}")
        print(f"params sha256 at step {training.step}: {digest}")
        print(f"resume with:\n  {_resume_hint(args.out)}", flush=True)
        return 130 if reason == "interrupt" else 0

    last = {key: values[-1] for key, values in training.history.items()}
    if resumed_from == c["steps"]:
        print(f"the run in {args.out} had already finished at step {c['steps']}")
    else:
        done = c["steps"] - (resumed_from or 0)
        print(f"done: {done} steps in {elapsed:.1f} s ({rate:.0f} steps/s)")
    print(f"final accuracy: validation {100 * last['val_acc']:.2f}%, train "
          f"{100 * last['train_acc']:.2f}% (loss: validation {last['val_loss']:.4f}, "
          f"train {last['train_loss']:.4f})")
    print(f"final params sha256: {digest}")
    print(f"checkpoint: {ckpt_path}")
    _plot(training, args, ckpt_path)
    sys.stdout.flush()
    if args.verify_resume:
        return _verify_resume(config, dataset, _state_digest(training), resumed_from, args.out)
    return 0


def main(argv=None):
    """Entry point of ``python -m fastoptim demo``; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The options (without ``demo``); ``sys.argv[1:]`` when ``None``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except DemoError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        # Ctrl-C outside the training loop (while setting up, plotting or checking): nothing to
        # save that is not saved already.
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
