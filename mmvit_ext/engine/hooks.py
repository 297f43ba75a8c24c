"""Hooks: per-iteration wall time and peak memory of a training run (the training benchmark)."""
import json
import os
import os.path as osp
import resource
import time
from typing import List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['StepTimerHook']


@HOOKS.register_module()
class StepTimerHook(Hook):
    """Times every training iteration (data loading included, CUDA synchronised) and records the
    peak memory after ``warmup`` iterations; writes ``out_file`` (JSON) when training ends.

    Registered in mmengine's root registry, so any scope's config can list it in
    ``custom_hooks``.
    """
    priority = 'VERY_LOW'

    def __init__(self, out_file: str, warmup: int = 2):
        self.out_file, self.warmup = out_file, warmup
        self.times: List[float] = []
        self._start: Optional[float] = None

    @staticmethod
    def _sync():
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if len(self.times) == self.warmup and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._sync()
        self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._sync()
        self.times.append(time.perf_counter() - self._start)

    def after_train(self, runner):
        timed = sorted(self.times[self.warmup:]) or sorted(self.times)
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        peak = (torch.cuda.max_memory_allocated() if cuda else
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        result = dict(iter_times=self.times, median_s=timed[len(timed) // 2],
                      peak_mb=peak / 2**20, peak_kind='cuda allocated' if cuda else 'max RSS',
                      device=torch.cuda.get_device_name() if cuda else 'cpu')
        os.makedirs(osp.dirname(osp.abspath(self.out_file)), exist_ok=True)
        with open(self.out_file, 'w') as f:
            json.dump(result, f)
