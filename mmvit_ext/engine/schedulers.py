"""Learning-rate schedules of the papers' official code that mmengine's do not express."""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class TimmCosineLR(LRSchedulerMixin, _ParamScheduler):
    """timm's ``CosineLRScheduler`` as the DeiT-style training scripts use it (one cycle, warm-up
    inside the cosine, no warm-up prefix), stepped once per epoch:

    - epoch t < ``warmup_epochs``: ``warmup_init + t * (base - warmup_init) / warmup_epochs``;
    - epoch t >= ``warmup_epochs``: ``eta_min + (base - eta_min) * (1 + cos(pi * t / t_initial)) / 2``,
      the cosine's phase counted from epoch 0, so the warm-up replaces its first epochs;
    - from ``t_initial`` on: ``eta_min``.

    mmengine's ``LinearLR`` + ``CosineAnnealingLR(begin=warmup)`` restart the cosine after the
    warm-up, a slightly higher curve over the whole run."""

    def __init__(self, optimizer, t_initial: int, eta_min: float = 0., warmup_epochs: int = 0,
                 warmup_init: float = 0., begin: int = 0, end: int = INF, last_step: int = -1,
                 by_epoch: bool = True, verbose: bool = False):
        if t_initial <= 0 or not 0 <= warmup_epochs < t_initial:
            raise ValueError(f'TimmCosineLR needs t_initial > 0 and 0 <= warmup_epochs < '
                             f't_initial, got t_initial={t_initial}, '
                             f'warmup_epochs={warmup_epochs}')
        self.t_initial, self.eta_min = t_initial, eta_min
        self.warmup_epochs, self.warmup_init = warmup_epochs, warmup_init
        super().__init__(optimizer, begin=begin, end=end, last_step=last_step,
                         by_epoch=by_epoch, verbose=verbose)

    def _lr(self, base: float, t: int) -> float:
        if t < self.warmup_epochs:
            return self.warmup_init + t * (base - self.warmup_init) / self.warmup_epochs
        if t >= self.t_initial:
            return self.eta_min
        return self.eta_min + 0.5 * (base - self.eta_min) * \
            (1 + math.cos(math.pi * t / self.t_initial))

    def _get_value(self):
        return [self._lr(base, self.last_step) for base in self.base_values]
