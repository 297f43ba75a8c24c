"""Optimizer wrappers that stop training before a non-finite step. Selected with
``optim_wrapper.type`` (the project's configs do); mmengine's wrappers are untouched.

``FiniteOptimWrapper`` checks the loss before ``backward`` and the gradients before ``step``
(after gradient accumulation, before clipping); either non-finite ends training with a
``NonFiniteStateError`` naming the iteration and the loss terms, before any hook can save that
state. ``FiniteAmpOptimWrapper`` keeps the grad scaler's semantics: under fp16 an overflowing step
is skipped by the scaler and lowers the scale, which is not an error; long runs of skipped steps
are reported, and a loss that is NaN/Inf before scaling still stops training.
"""
import math
from typing import Dict, Optional

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from .errors import NonFiniteStateError

__all__ = ['FiniteOptimWrapper', 'FiniteAmpOptimWrapper', 'plain_param_groups']


def plain_param_groups(optim_wrapper) -> None:
    """Make every optimizer's param groups plain dicts, in place.

    mmengine's constructor builds them from the config, so they are ``ConfigDict``s; under
    ``compile=True`` mmengine compiles ``train_step``, optimizer step included, and dynamo
    (torch 2.13) fails on a param group of a dict subclass ("'UserDefinedDictVariable' object
    has no attribute 'items'"). Same keys and values; the list object stays the same.
    """
    wrappers = optim_wrapper.values() if hasattr(optim_wrapper, 'values') else [optim_wrapper]
    for wrapper in wrappers:
        groups = wrapper.optimizer.param_groups
        groups[:] = [g if type(g) is dict else dict(g) for g in groups]


def _iteration_words() -> str:
    iteration = MessageHub.get_current_instance().get_info('iter')
    return f'iteration {iteration + 1}' if iteration is not None else 'this iteration'


class _FiniteChecks:
    """What both wrappers share: the loss terms of the last forward, and the checks."""

    _loss_terms: Optional[Dict[str, torch.Tensor]] = None

    def watch_losses(self, model: torch.nn.Module) -> None:
        """Remember the loss terms of each ``forward(mode='loss')`` (for the stop message).

        A forward hook on the model (torch's public mechanism): the terms are kept detached,
        without a device sync; they are read only when the loss is not finite.
        """
        if getattr(self, '_watching', None) is model:
            return
        self._watching = model

        def record(module, args, output):
            if isinstance(output, dict) and any('loss' in k for k in output):
                self._loss_terms = {k: v for k, v in output.items()}

        model.register_forward_hook(record)

    def _terms(self) -> str:
        values = {}
        for k, v in (self._loss_terms or {}).items():
            parts = v if isinstance(v, (list, tuple)) else [v]
            try:
                total = sum(float(p.detach().sum()) for p in parts if torch.is_tensor(p))
            except (RuntimeError, TypeError):
                continue
            if 'loss' in k and not math.isfinite(total):
                values[k] = total
        return str(values) if values else 'none by itself (their sum overflowed)'

    # The checks run eagerly under mmengine's compile=True (which compiles train_step, the
    # optimizer step included): they branch on values, a graph break in any case.
    @torch.compiler.disable
    def _check_loss(self, loss: torch.Tensor) -> None:
        if torch.is_tensor(loss) and not bool(torch.isfinite(loss.detach()).all()):
            raise NonFiniteStateError(
                f'training stopped at {_iteration_words()}: the loss is '
                f'{float(loss.detach().sum())}; non-finite terms: {self._terms()}. This state '
                'was not saved. Lower the learning rate, add gradient clipping '
                '(optim_wrapper.clip_grad), or check the data for degenerate boxes.')

    @torch.compiler.disable
    def _nonfinite_grads(self):
        grads = [p.grad for group in self.optimizer.param_groups for p in group['params']
                 if p.grad is not None]
        if not grads:
            return []
        # one device sync per step; the per-parameter look only when something is wrong
        finite = torch.stack([torch.isfinite(g).all() for g in grads])
        if bool(finite.all()):
            return []
        return [tuple(g.shape) for g, ok in zip(grads, finite.tolist()) if not ok]


@OPTIM_WRAPPERS.register_module()
class FiniteOptimWrapper(_FiniteChecks, OptimWrapper):
    """``OptimWrapper`` that refuses a non-finite loss or gradient (see the module docstring)."""

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        self._check_loss(loss)
        super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        bad = self._nonfinite_grads()
        if bad:
            raise NonFiniteStateError(
                f'training stopped at {_iteration_words()}: the loss is finite but the '
                f'gradients of {len(bad)} parameters hold NaN/Inf (shapes {bad[:3]}); the step '
                'was not taken and this state was not saved. Lower the learning rate, add '
                'gradient clipping (optim_wrapper.clip_grad), or look for an operation without '
                'a finite gradient (sqrt or log at 0).')
        super().step(**kwargs)


@OPTIM_WRAPPERS.register_module()
class FiniteAmpOptimWrapper(_FiniteChecks, AmpOptimWrapper):
    """``AmpOptimWrapper`` that reports runs of steps the grad scaler skipped."""

    #: consecutive skipped steps after which (and at each multiple of which) a warning is logged
    report_skipped_after = 25

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._skipped = 0

    def backward(self, loss: torch.Tensor, **kwargs):
        self._check_loss(loss)  # before scaling: NaN/Inf here is not an fp16 overflow
        super().backward(loss, **kwargs)

    def step(self, **kwargs):
        scale = self.loss_scaler.get_scale() if self.loss_scaler.is_enabled() else None
        super().step(**kwargs)
        if scale is None:
            return
        if self.loss_scaler.get_scale() < scale:  # the scaler found Inf/NaN and skipped
            self._skipped += 1
            if self._skipped % self.report_skipped_after == 0:
                print_log(f'{_iteration_words()}: the grad scaler skipped the last '
                          f'{self._skipped} steps in a row (gradients overflow fp16; the scale '
                          f'is now {self.loss_scaler.get_scale():g}). Training is not making '
                          'progress: lower the learning rate or train in fp32.',
                          logger='current', level=30)
        else:
            self._skipped = 0
