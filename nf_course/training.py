"""Fitting a :class:`~nf_course.core.Flow` by forward KL (maximum likelihood on data) or by
reverse KL (to an unnormalized log-density): :func:`fit`, its :class:`History`, and
:func:`mean_nll`.

Chapter: ``book/03_fitting_flows.md`` (every later chapter trains with :func:`fit`); tests:
``tests/test_training.py``, ``tests/test_fits.py``; benchmarks: ``benchmarks/kl_2d.py``,
``benchmarks/planar_energies.py``, ``benchmarks/digits_bpd.py`` and the other training runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm import tqdm

from nf_course.core import Flow

__all__ = ["History", "fit", "mean_nll", "progress_enabled"]

Sampler = Callable[..., Tensor]
"""``sampler(n, generator=generator) -> (n, *shape)``: an infinite source of data."""


@dataclass
class History:
    """What happened during :func:`fit`.

    Attributes:
        objective: ``"forward_kl"`` (the losses are NLLs in nats) or ``"reverse_kl"`` (the losses
            estimate ``KL(p_θ ‖ π) - log Z`` in nats).
        steps: the optimizer steps ``1, 2, …``.
        losses: the training loss of each step (computed before that step's update).
        lrs: the learning rate used by each step.
        val_steps: the steps after which the validation NLL was computed.
        val_losses: the validation NLL (nats per sample) at those steps.
        best_step: the step of the lowest validation NLL (``None`` without validation).
        best_val: that lowest validation NLL (``None`` without validation).
        stopped_early: whether early stopping (``patience``) or the callback ended training.
        wall_time: seconds spent in :func:`fit`; ignored when two histories are compared.
        cpu_time: CPU seconds of this process (:func:`time.process_time`) spent training, from
            the first step to the end; ignored when two histories are compared.
    """

    objective: str
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    best_step: int | None = None
    best_val: float | None = None
    stopped_early: bool = False
    wall_time: float = field(default=0.0, compare=False)
    cpu_time: float = field(default=0.0, compare=False)

    @property
    def final_loss(self) -> float:
        """The training loss of the last step (``nan`` before any step)."""
        return self.losses[-1] if self.losses else float("nan")

    def as_dict(self) -> dict[str, object]:
        """The history as plain Python values (lists, floats), ready for ``json.dump``."""
        return dataclasses.asdict(self)


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether to show a progress bar: ``progress`` itself, or, for ``None``, an automatic choice.

    The automatic choice is off under continuous integration (the environment variable ``CI``
    is set to a non-empty value) and in non-interactive runs (stderr is not a terminal, as in a
    book build, a batch job or a Jupyter kernel: pass ``progress=True`` there to see the bar).
    """
    if progress is not None:
        return progress
    is_tty = getattr(sys.stderr, "isatty", lambda: False)()
    return not os.environ.get("CI") and is_tty


def fit(
    flow: Flow,
    *,
    data: Tensor | Sampler | None = None,
    log_target: Callable[[Tensor], Tensor] | None = None,
    steps: int | None = None,
    cpu_seconds: float | None = None,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    weight_decay: float = 0.0,
    lr_schedule: str = "cosine",
    clip_grad_norm: float | None = None,
    validation: Tensor | None = None,
    eval_every: int = 100,
    patience: int | None = None,
    progress: bool | None = None,
    callback: Callable[[int, History], bool | None] | None = None,
) -> History:
    """Train ``flow`` in place with AdamW and return its :class:`History`.

    The loss is the forward KL up to a constant (the mean negative log-likelihood of a data
    minibatch) when ``data`` is given, and the reverse KL up to ``log Z`` (a Monte Carlo
    estimate from reparametrized samples of the flow) when ``log_target`` is.

    Length: ``steps`` optimizer steps, or ``cpu_seconds`` of CPU time, or whichever ends first
    when both are given. A CPU-time budget is what compares flows (or libraries) fairly: the
    cosine schedule then follows the fraction of the budget spent, so the learning rate decays
    to zero exactly when the budget runs out, however the cost of a step changes during
    training (an adaptive ODE solver's steps grow as the field stiffens). The clock is
    :func:`time.process_time` (all threads of this process, validation included), so other
    programs on the machine do not shorten a run; such runs are not bitwise reproducible, since
    the number of steps depends on the machine's speed.

    Randomness: the minibatches and the base noise come from a ``torch.Generator`` of the run,
    seeded with ``seed``. Layers that draw randomness themselves (dropout, the Russian-roulette
    and Hutchinson log-det estimators) can only use torch's global RNG, since torch gives them
    no generator argument: ``fit`` seeds that one too, inside :func:`torch.random.fork_rng`, so
    such flows are reproducible as well and the caller's global RNG state is the same after the
    call as before it. Two runs with the same seed and arguments give bitwise identical
    histories on CPU.

    Args:
        flow: the flow to train.
        data: forward KL. Either a tensor ``(N, *shape)``, from which minibatches are drawn
            uniformly with replacement, or a sampler called as
            ``data(batch_size, generator=generator)`` that returns ``(batch_size, *shape)``.
        log_target: reverse KL. The unnormalized log-density ``(n, *shape) -> (n,)``.
            Give exactly one of ``data`` and ``log_target``.
        steps: number of optimizer steps (at most that many when ``cpu_seconds`` is given).
        cpu_seconds: train until this much CPU time has been spent in ``fit``; the step that
            would start after it is not taken (see Length above).
        batch_size: samples per step (data minibatch, or draws from the flow).
        lr: the initial learning rate.
        seed: seeds every random draw of the run (see Randomness above).
        weight_decay: AdamW's decoupled weight decay (``0`` gives plain Adam).
        lr_schedule: ``"cosine"`` (decay to zero over ``steps``, or over ``cpu_seconds`` when
            given) or ``"constant"``.
        clip_grad_norm: clip the gradient's global norm to this value; ``None`` to not clip.
        validation: held-out samples ``(M, *shape)``; their mean NLL is computed (without
            gradients, in eval mode) every ``eval_every`` steps and after the last one (the
            last step of ``steps``, or the last one the CPU budget allowed).
        eval_every: steps between two validations.
        patience: early stopping: stop after this many validations without improvement, and
            leave ``flow`` with the parameters of its best validation (even when training ran
            to the end). Needs ``validation``.
        progress: show a tqdm bar with the current loss; ``None`` decides automatically
            (:func:`progress_enabled`).
        callback: called as ``callback(step, history)`` after each step; returning ``True``
            stops training.

    Returns:
        the :class:`History` of the run.

    Raises:
        ValueError: a wrong combination or value of the arguments.
        FloatingPointError: the loss is not finite; the message names the step.
    """
    _check_arguments(
        data,
        log_target,
        steps,
        cpu_seconds,
        batch_size,
        lr_schedule,
        validation,
        eval_every,
        patience,
    )
    generator = torch.Generator(_device(flow)).manual_seed(seed)
    loss_fn = _loss_function(flow, data, log_target, batch_size, generator)
    optimizer = torch.optim.AdamW(flow.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = None if cpu_seconds is not None else _schedule(optimizer, lr_schedule, steps)
    history = History(objective="forward_kl" if log_target is None else "reverse_kl")
    best_state = None
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(
        itertools.islice(itertools.count(1), steps),
        total=steps,
        desc="fit",
        disable=not progress_enabled(progress),
    )
    with torch.random.fork_rng(), bar:
        torch.manual_seed(seed)
        flow.train()
        for step in bar:
            if cpu_seconds is not None:
                spent = (time.process_time() - cpu_start) / cpu_seconds
                if spent >= 1:
                    break
                if lr_schedule == "cosine":
                    optimizer.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * spent))
            history.lrs.append(optimizer.param_groups[0]["lr"])
            history.losses.append(_train_step(flow, optimizer, loss_fn, step, clip_grad_norm))
            history.steps.append(step)
            if schedule is not None:
                schedule.step()
            bar.set_postfix(loss=f"{history.final_loss:.4f}", refresh=False)
            if validation is not None and (step % eval_every == 0 or step == steps):
                if _record_validation(history, step, mean_nll(flow, validation)):
                    best_state = _copy_state(flow)
            if _patience_exhausted(history, patience) or (callback and callback(step, history)):
                history.stopped_early = True
                break
        # The CPU budget ended training after a step that was not validated: validate it.
        last = history.steps[-1] if history.steps else None
        budget_ended = last is not None and last != steps and not history.stopped_early
        if validation is not None and budget_ended and history.val_steps[-1:] != [last]:
            if _record_validation(history, last, mean_nll(flow, validation)):
                best_state = _copy_state(flow)
    if patience is not None and best_state is not None:
        flow.load_state_dict(best_state)
    history.wall_time = time.perf_counter() - start
    history.cpu_time = time.process_time() - cpu_start
    return history


def mean_nll(flow: Flow, x: Tensor, chunk_size: int = 4096) -> float:
    """The mean negative log-likelihood of ``x (M, *shape)`` in nats, without gradients.

    Evaluated in chunks of ``chunk_size`` samples, with the flow in eval mode (its mode is
    restored afterwards).
    """
    was_training, device = flow.training, _device(flow)
    flow.eval()
    try:
        with torch.no_grad():
            chunks = x.split(chunk_size)
            total = sum(flow.log_prob(chunk.to(device)).sum().item() for chunk in chunks)
    finally:
        flow.train(was_training)
    return -total / x.shape[0]


def _check_arguments(
    data: object,
    log_target: object,
    steps: int | None,
    cpu_seconds: float | None,
    batch_size: int,
    lr_schedule: str,
    validation: Tensor | None,
    eval_every: int,
    patience: int | None,
) -> None:
    """Raise ``ValueError`` (or ``TypeError``) naming the first bad argument of :func:`fit`."""
    if (data is None) == (log_target is None):
        raise ValueError(
            "fit: give exactly one of data= (forward KL, maximum likelihood on samples) and "
            "log_target= (reverse KL against an unnormalized log-density)"
        )
    if data is not None and not (isinstance(data, Tensor) or callable(data)):
        raise TypeError(f"fit: data must be a tensor or a sampler, got {type(data).__name__}")
    if isinstance(data, Tensor) and data.shape[0] == 0:
        raise ValueError("fit: data is empty")
    if log_target is not None and not callable(log_target):
        raise TypeError(f"fit: log_target must be callable, got {type(log_target).__name__}")
    if steps is None and cpu_seconds is None:
        raise ValueError("fit: give steps= (optimizer steps) or cpu_seconds= (a CPU-time budget)")
    if cpu_seconds is not None and not cpu_seconds > 0:
        raise ValueError(f"fit: cpu_seconds must be positive, got {cpu_seconds}")
    for name, value in [("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)]:
        if value is not None and value < 1:
            raise ValueError(f"fit: {name} must be a positive integer, got {value}")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"fit: lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
    if patience is not None and (validation is None or patience < 1):
        raise ValueError(
            "fit: early stopping needs validation= samples and a positive patience, got "
            f"patience={patience} and validation={'None' if validation is None else 'a tensor'}"
        )


def _device(flow: Flow) -> torch.device:
    """The device of the flow's parameters (or buffers); CPU when it has neither."""
    tensor = next(itertools.chain(flow.parameters(), flow.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _loss_function(
    flow: Flow,
    data: Tensor | Sampler | None,
    log_target: Callable[[Tensor], Tensor] | None,
    batch_size: int,
    generator: torch.Generator,
) -> Callable[[], Tensor]:
    """The loss of one step, ``() -> ()``, drawing its randomness from ``generator``."""
    if log_target is not None:
        return lambda: flow.reverse_kl(log_target, batch_size, generator=generator)
    device = _device(flow)
    if isinstance(data, Tensor):

        def minibatch() -> Tensor:
            index = torch.randint(data.shape[0], (batch_size,), generator=generator, device=device)
            return data[index.to(data.device)]

    else:

        def minibatch() -> Tensor:
            return data(batch_size, generator=generator)

    return lambda: flow.forward_kl(minibatch().to(device))


def _schedule(
    optimizer: torch.optim.Optimizer, lr_schedule: str, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay of the learning rate to zero over ``steps``, or a constant rate."""
    if lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)


def _train_step(
    flow: Flow,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[], Tensor],
    step: int,
    clip_grad_norm: float | None,
) -> float:
    """One optimizer step; returns the loss before the update."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn()
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"fit: the loss is {loss.item()} at step {step}; lower the learning rate "
            f"(lr={optimizer.param_groups[0]['lr']:.3g} now) or clip the gradients "
            "(e.g. clip_grad_norm=1.0), and check the data and log_target for infinities"
        )
    loss.backward()
    if clip_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(flow.parameters(), clip_grad_norm)
    optimizer.step()
    return loss.item()


def _record_validation(history: History, step: int, value: float) -> bool:
    """Append a validation NLL to ``history``; return whether it is the best so far."""
    history.val_steps.append(step)
    history.val_losses.append(value)
    if not value < (math.inf if history.best_val is None else history.best_val):
        return False
    history.best_step, history.best_val = step, value
    return True


def _patience_exhausted(history: History, patience: int | None) -> bool:
    """Whether the last ``patience`` validations all failed to improve on the best one."""
    if patience is None:
        return False
    best_step = 0 if history.best_step is None else history.best_step
    return sum(step > best_step for step in history.val_steps) >= patience


def _copy_state(flow: Flow) -> dict[str, Tensor]:
    """A detached copy of the flow's ``state_dict`` (to restore the best parameters)."""
    return {name: tensor.detach().clone() for name, tensor in flow.state_dict().items()}
