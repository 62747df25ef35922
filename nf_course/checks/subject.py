"""The checked code, called safely: every call of the student's ``forward``/``inverse`` goes through
:class:`Subject`, which copies the input, watches for in-place edits, enforces a time limit, turns
exceptions into :class:`CallFailed` and enforces the ``(output, log_det)`` contract."""

from __future__ import annotations

import math
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

_PACKAGE = str(Path(__file__).resolve().parent)


class CallFailed(Exception):
    """The checked code raised, hung, or broke the ``(output, log_det)`` contract."""

    def __init__(self, method: str, message: str) -> None:
        super().__init__(message)
        self.method = method


class CallTimedOut(CallFailed):
    """The checked code did not return within the time limit."""


class TimeLimitExceeded(BaseException):
    """Raised by the alarm inside code that runs too long (a BaseException, so that a
    student's ``except Exception`` does not swallow it)."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` in the body after ``seconds`` (Unix main thread only;
    elsewhere no limit). An enclosing alarm (pytest-timeout, nbgrader) is restored with its
    remaining time."""
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeLimitExceeded

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            remaining = max(previous_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, previous_interval)


def where(exc: BaseException) -> str:
    """`` (at file:line: code)`` for the innermost frame outside torch and this package."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "/torch/" not in frame.filename and not frame.filename.startswith(_PACKAGE)
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}: {frame.line})"


def active_overrides() -> str:
    """A description of any torch function or dispatch mode active now, or ``""``.

    Such a mode intercepts every torch operation, the checker's own comparisons included."""
    modes = torch._C._len_torch_function_stack() + torch._C._len_torch_dispatch_stack()
    return f"{modes} torch function/dispatch mode(s) are active" if modes else ""


class Subject:
    """The module under test and how to call it.

    Attributes:
        module: the object with ``forward`` and ``inverse``.
        name: its class name, for messages.
        timeout: seconds per call (``None``: no limit).
        mutations: ``{method: largest in-place change of its input}`` seen so far.
    """

    def __init__(self, module: object, name: str, timeout: float | None) -> None:
        self.module = module
        self.name = name
        self.timeout = timeout
        self.mutations: dict[str, float] = {}

    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The trainable parameters, by name (none for a plain object)."""
        if not isinstance(self.module, nn.Module):
            return []
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    @contextmanager
    def shifted(self, directions: list[Tensor], step: float) -> Iterator[None]:
        """Add ``step · direction`` to each trainable parameter in place for the body; restore
        the parameters and buffers afterwards (no copy of the module is needed)."""
        module = self.module
        parameters = [p for _, p in self.parameters()]
        buffers = list(module.buffers()) if isinstance(module, nn.Module) else []
        saved = [t.detach().clone() for t in parameters + buffers]
        try:
            with torch.no_grad():
                for parameter, direction in zip(parameters, directions, strict=True):
                    parameter.add_(step * direction.to(parameter.device))
            yield
        finally:
            with torch.no_grad():
                for tensor, value in zip(parameters + buffers, saved, strict=True):
                    tensor.copy_(value)

    def call(self, method: str, value: Tensor, *, grad: bool = False) -> tuple[Tensor, Tensor]:
        """Run ``module.<method>(value)`` and return ``(output, log_det)``.

        With ``grad`` the input stays attached to the caller's graph (a non-leaf copy, so that an
        in-place edit is seen here rather than refused by autograd) and the outputs keep theirs;
        otherwise both are detached.
        """
        function = getattr(self.module, method, None)
        if not callable(function):
            raise CallFailed(method, f"{self.name} has no method {method}(…)")
        argument = value.clone() if grad else value.detach().clone()
        snapshot = argument.detach().clone()
        try:
            # Gradients stay enabled: some maps need autograd inside forward (exact CNF traces).
            with time_limit(self.timeout), torch.enable_grad():
                result = function(argument)
        except TimeLimitExceeded:
            raise CallTimedOut(
                method,
                f"{self.name}.{method} did not return within {self.timeout:g} s "
                "(an infinite loop, or a loop that never converges?)",
            ) from None
        except (Exception, SystemExit, GeneratorExit) as exc:
            raise CallFailed(
                method, f"{self.name}.{method} raised {type(exc).__name__}: {exc}{where(exc)}"
            ) from exc
        if argument.shape != snapshot.shape:
            self.mutations[method] = math.inf
        elif not torch.equal(argument.detach(), snapshot):
            self.mutations[method] = (argument.detach() - snapshot).abs().max().item()
        overrides = active_overrides()
        if overrides:
            raise CallFailed(method, f"after {self.name}.{method}, {overrides}")
        output, log_det = self._unpack(method, result, value.shape[0])
        return (output, log_det) if grad else (output.detach(), log_det.detach())

    def _unpack(self, method: str, result: object, batch: int) -> tuple[Tensor, Tensor]:
        expected = "(x, log_det)" if method == "inverse" else "(z, log_det)"
        if isinstance(result, Tensor) or not isinstance(result, tuple | list) or len(result) != 2:
            kind = type(result).__name__
            if isinstance(result, tuple | list):
                kind += f" of length {len(result)}"
            raise CallFailed(
                method, f"{self.name}.{method} must return a pair {expected}, got a {kind}"
            )
        unpacked = []
        for label, item in zip(("output", "log_det"), result, strict=True):
            if not isinstance(item, Tensor):
                raise CallFailed(
                    method,
                    f"{self.name}.{method}: the {label} must be a torch.Tensor, got "
                    f"{type(item).__name__} (keep it a tensor: no .item(), float() or NumPy)",
                )
            if type(item) is nn.Parameter:
                item = item.as_subclass(Tensor)
            elif type(item) is not Tensor:
                # A subclass may redefine arithmetic and comparisons (__torch_function__).
                raise CallFailed(
                    method,
                    f"{self.name}.{method}: the {label} is a {type(item).__name__}, a subclass of "
                    "torch.Tensor; return a plain torch.Tensor",
                )
            unpacked.append(item)
        output, log_det = unpacked
        if not output.is_floating_point():
            raise CallFailed(method, f"{self.name}.{method} returned an output of {output.dtype}")
        if output.dim() == 0 or output.shape[0] != batch:
            raise CallFailed(
                method,
                f"{self.name}.{method} returned an output of shape {tuple(output.shape)}; "
                f"the batch has {batch} samples, so its first dimension must be {batch}",
            )
        return output, log_det
