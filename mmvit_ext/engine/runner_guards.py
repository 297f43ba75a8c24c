"""mmengine's Runner, strict where it is silent. Installed when ``mmvit_ext`` is imported (every
config of the project imports it), so ``tools/train.py``, ``tools/test.py``, ``mim train/test``
and ``dist_*.sh`` all get it:

* **Checkpoints that do not fit are refused** (``load_from``, ``tools/test.py CKPT``, ``--resume``,
  ``mim test``): mmengine loads with ``strict=False`` and only logs, so a checkpoint of another
  model evaluates random weights and exits 0. Here missing / unexpected / mis-shaped keys are an
  error naming the file, the counts, the first keys and, for our backbones, what the file holds
  ("holds a DGT-T backbone; the config builds DilateFormer-S"). Deliberate partial loading (e.g.
  fine-tuning with another number of classes) is one switch: ``allow_partial_load = True`` in the
  config (``--cfg-options allow_partial_load=True``); the mismatch is then logged.
* **NaN / Inf weights are refused** wherever a checkpoint enters.
* **A non-finite training loss stops the run** before the optimiser step and before any hook can
  save that state, naming the iteration and the loss terms; the last good checkpoint stays the
  newest.
* **Resume finds the last good state**: ``--resume`` without a file takes ``last_checkpoint``
  if it points at an intact file, else the newest intact checkpoint of the work dir (and says
  which); it never starts from scratch while checkpoints exist. A checkpoint saved inside an
  epoch resumes inside that epoch: the batches already trained on are skipped, in the same order
  (the sampler gets the run's seed back), so no iteration is repeated or left out.
"""
import glob
import math
import os.path as osp
import re
from typing import List, Optional

import torch
from mmengine.logging import MessageHub, print_log

from ..checkpoint import (CheckpointMismatchError, check_finite, describe_mismatch,
                          mismatch_summary, which_backbones)
from ..utils.checkfile import CorruptCheckpointError, check_readable

__all__ = ['install', 'NonFiniteLossError', 'find_resumable_checkpoint', 'PARTIAL_LOAD_SWITCH']

PARTIAL_LOAD_SWITCH = 'allow_partial_load'


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


def _unwrap(model):
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def check_checkpoint_fits(model, checkpoint, filename: str, allow_partial: bool,
                          revise_keys=((r'^module\.', ''), )) -> None:
    """Raise unless the weights of ``checkpoint`` are finite and fit ``model`` key by key."""
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) \
        else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(f'{filename} holds no weights (a {type(state_dict)})')
    for pattern, repl in revise_keys:
        state_dict = {re.sub(pattern, repl, k): v for k, v in state_dict.items()}
    check_finite(state_dict, f'checkpoint {filename}')
    model = _unwrap(model)
    summary = mismatch_summary(model, state_dict)
    if not (summary['missing'] or summary['unexpected'] or summary['wrong_shape']):
        return
    total = len(model.state_dict())
    message = (f'checkpoint {filename} does not fit the model of the config: '
               f'{describe_mismatch(summary)} (the model has {total} entries).' +
               which_backbones(model, state_dict))
    if allow_partial:
        print_log(f'{message} Loading the matching weights only ({PARTIAL_LOAD_SWITCH}=True).',
                  logger='current', level=30)
        return
    raise CheckpointMismatchError(
        message + f' If loading only the matching weights is intended (e.g. fine-tuning with '
        f'another number of classes), set `{PARTIAL_LOAD_SWITCH} = True` in the config or pass '
        f'--cfg-options {PARTIAL_LOAD_SWITCH}=True.')


def _checked_load_checkpoint(self, filename, map_location='cpu', strict=False,
                             revise_keys=[(r'^module.', '')]):  # noqa: B006 (mmengine's API)
    """``Runner.load_checkpoint`` with :func:`check_checkpoint_fits` before loading."""
    from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    allow = bool((self.cfg or {}).get(PARTIAL_LOAD_SWITCH, False)) and not strict
    check_checkpoint_fits(self.model, checkpoint, filename, allow, revise_keys)
    checkpoint = _load_checkpoint_to_model(_unwrap(self.model), checkpoint, strict,
                                           revise_keys=revise_keys)
    self._has_loaded = True
    self.logger.info(f'Load checkpoint from {filename}')
    return checkpoint


def _checkpoint_order(path: str):
    """Newest first: by the iteration / epoch number in the name, then by modification time."""
    numbers = [int(n) for n in re.findall(r'(\d+)', osp.basename(path))]
    return (max(numbers) if numbers else -1, osp.getmtime(path))


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """``last_checkpoint``'s file when it is intact, else the newest intact ``*.pth`` of
    ``work_dir``; None when there is no checkpoint at all. Raises when checkpoints exist but none
    can be read."""
    recorded = None
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            recorded = f.read().strip() or None
    candidates = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=_checkpoint_order,
                        reverse=True)
    if recorded and osp.isfile(recorded):
        candidates = [recorded] + [c for c in candidates
                                   if osp.abspath(c) != osp.abspath(recorded)]
    broken: List[str] = []
    for path in candidates:
        try:
            check_readable(path)
        except (CorruptCheckpointError, OSError) as e:
            broken.append(f'{path}: {e}')
            continue
        if recorded is None:
            print_log(f'{pointer} is missing: resuming from the newest intact checkpoint {path}',
                      logger='current', level=30)
        elif osp.abspath(path) != osp.abspath(recorded):
            why = 'is missing' if not osp.isfile(recorded) else 'cannot be read'
            print_log(f'last_checkpoint points at {recorded}, which {why}: resuming from the '
                      f'newest intact checkpoint {path} instead', logger='current', level=30)
        return path
    if broken or recorded:
        raise CorruptCheckpointError(
            f'--resume: no checkpoint in {work_dir} can be read' +
            (f' (last_checkpoint names {recorded}, which does not exist)'
             if recorded and not broken else '') + (': ' + '; '.join(broken) if broken else '') +
            '. Resume from a given file with --resume FILE, or train from scratch without '
            '--resume.')
    return None


def _load_or_resume(self) -> None:
    """``Runner.load_or_resume`` that resumes from the newest intact checkpoint."""
    if self._has_loaded:
        return None
    resume_from = None
    if self._resume and self._load_from is None:
        resume_from = find_resumable_checkpoint(self.work_dir)
        if resume_from is None:
            self.logger.info(f'--resume: no checkpoint in {self.work_dir} yet, training starts '
                             'from scratch')
        else:
            self.logger.info(f'Auto resumed from the latest checkpoint {resume_from}.')
    elif self._resume and self._load_from is not None:
        resume_from = self._load_from
    if resume_from is not None:
        self.resume(resume_from)
        self._has_loaded = True
    elif self._load_from is not None:
        self.load_checkpoint(self._load_from)
        self._has_loaded = True


def _resume_with_sampler_seed(original):

    def resume(self, filename, *args, **kwargs):
        original(self, filename, *args, **kwargs)
        # the sampler was built before resume restored the seed: give it the run's seed, so
        # that the resumed epoch visits the images in the interrupted run's order
        seed = self._randomness_cfg.get('seed')
        loader = getattr(self.train_loop, 'dataloader', None)
        # the index sampler, also when a batch sampler (e.g. AspectRatioBatchSampler) wraps it
        for sampler in (getattr(loader, 'sampler', None),
                        getattr(getattr(loader, 'batch_sampler', None), 'sampler', None)):
            if seed is not None and hasattr(sampler, 'seed'):
                sampler.seed = seed

    return resume


def _run_epoch_resumable(self) -> None:
    """``EpochBasedTrainLoop.run_epoch`` that, after resuming from a checkpoint saved inside an
    epoch, skips the batches the interrupted run already trained on."""
    self.runner.call_hook('before_train_epoch')
    self.runner.model.train()
    done = self._iter - self._epoch * len(self.dataloader)
    if 0 < done < len(self.dataloader):
        self.runner.logger.info(f'resuming inside epoch {self._epoch + 1}: skipping its first '
                                f'{done} batches (already trained on)')
    else:
        done = 0
    batches = iter(self.dataloader)
    for idx in range(len(self.dataloader)):
        data_batch = next(batches)
        if idx < done:
            continue
        self.run_iter(idx, data_batch)
    self.runner.call_hook('after_train_epoch')
    self._epoch += 1


def _parse_losses_finite(original):

    def parse_losses(self, losses):
        loss, log_vars = original(self, losses)
        if torch.is_tensor(loss) and not bool(torch.isfinite(loss)):
            values = {k: float(v.detach()) for k, v in log_vars.items()
                      if k != 'loss' and torch.is_tensor(v)}
            terms = {k: v for k, v in values.items() if not math.isfinite(v)}
            hub = MessageHub.get_current_instance()
            iteration = hub.get_info('iter')
            where = f'iteration {iteration + 1}' if iteration is not None else 'this iteration'
            raise NonFiniteLossError(
                f'training stopped at {where}: the loss is {float(loss.detach())}; non-finite '
                f'terms: {terms or "none by itself (their sum overflowed)"}. No checkpoint of this '
                'state is written; the newest checkpoint in the work dir is the last good one. '
                'Lower the learning rate, add gradient clipping (optim_wrapper.clip_grad), or '
                'check the data for degenerate boxes.')
        return loss, log_vars

    parse_losses._mmvit_guard = True
    return parse_losses


_installed = False


def install() -> None:
    """Patch mmengine's Runner, epoch loop and BaseModel (idempotent)."""
    global _installed
    if _installed:
        return
    from mmengine.model import BaseModel
    from mmengine.runner import EpochBasedTrainLoop, Runner
    Runner.load_checkpoint = _checked_load_checkpoint
    Runner.load_or_resume = _load_or_resume
    Runner.resume = _resume_with_sampler_seed(Runner.resume)
    EpochBasedTrainLoop.run_epoch = _run_epoch_resumable
    BaseModel.parse_losses = _parse_losses_finite(BaseModel.parse_losses)
    from ..datasets import coco_checks
    coco_checks.install()
    _installed = True
