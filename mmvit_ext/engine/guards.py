"""What the project's training components check, as plain functions and the errors they raise.

The components that use them (``GuardedRunner``, the guarded train loops, ``FiniteOptimWrapper``,
``SafeCheckpointHook``) are selected by the project's configs; nothing here changes mmengine.
"""
import contextlib
import datetime
import errno
import glob
import os
import os.path as osp
import re
import shutil
import socket
from typing import Dict, List, Mapping, Optional

import torch
from mmengine.logging import print_log

from ..checkpoint import (CheckpointMismatchError, _short, check_finite, describe_mismatch,
                          mismatch_summary, which_backbones)
from ..utils.checkfile import CorruptCheckpointError, check_readable

__all__ = ['NonFiniteStateError', 'NonFiniteLossError', 'ResumeError', 'CheckpointSaveError',
           'WorkDirLockedError', 'PARTIAL_LOAD_SWITCH', 'check_checkpoint_fits',
           'find_resumable_checkpoint', 'newest_checkpoint', 'on_disk_summary',
           'nonfinite_optimizer_state', 'work_dir_lock', 'atomic_replace', 'BACKBONE_PREFIX']

PARTIAL_LOAD_SWITCH = 'allow_partial_load'
BACKBONE_PREFIX = 'backbone.'


class NonFiniteStateError(FloatingPointError):
    """The loss, the gradients, the weights or the optimizer state became NaN or Inf."""


NonFiniteLossError = NonFiniteStateError  # the name earlier releases raised


class ResumeError(RuntimeError):
    """A resume that cannot continue exactly where the run stopped."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (the previous ones are intact)."""


class WorkDirLockedError(RuntimeError):
    """Another training run uses the work dir."""


def _unwrap(model):
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


# ----------------------------------------------------------------------------- checkpoint fit
def check_checkpoint_fits(model, checkpoint, filename: str, mode: str = 'strict',
                          revise_keys=((r'^module\.', ''), )) -> Dict:
    """Raise unless the weights of ``checkpoint`` are finite and fit ``model``.

    ``mode``: ``'strict'`` (test, resume): every key and shape must match; ``'finetune'``
    (``load_from`` in training): the backbone must match exactly, the rest may differ (another
    ``num_classes``) and is reported; ``'partial'`` (``allow_partial_load=True``): anything
    goes, reported. Returns the state dict to load (keys of another shape dropped).
    """
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) \
        else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(f'{filename} holds no weights (a {type(state_dict)})')
    for pattern, repl in revise_keys:
        state_dict = {re.sub(pattern, repl, k): v for k, v in state_dict.items()}
    check_finite(state_dict, f'checkpoint {filename}')
    model = _unwrap(model)
    summary = mismatch_summary(model, state_dict)
    wrong_keys = {w.split(':')[0] for w in summary['wrong_shape']}
    fitting = {k: v for k, v in state_dict.items() if k not in wrong_keys}
    if not (summary['missing'] or summary['unexpected'] or summary['wrong_shape']):
        return fitting
    total = len(model.state_dict())
    message = (f'checkpoint {filename} does not fit the model of the config: '
               f'{describe_mismatch(summary)} (the model has {total} entries).' +
               which_backbones(model, state_dict))
    if mode == 'finetune':
        in_backbone = [k for k in (summary['missing'] + summary['unexpected'] + list(wrong_keys))
                       if k.startswith(BACKBONE_PREFIX)]
        has_backbone = any(k.startswith(BACKBONE_PREFIX) for k in model.state_dict())
        if not in_backbone or not has_backbone:
            print_log(
                f'load_from {filename}: loading it for fine-tuning; the parts outside the '
                f'backbone differ from the config: {describe_mismatch(summary)}. Keys of another '
                'shape are skipped and missing ones keep their initialisation (e.g. a head '
                'with another num_classes).', logger='current', level=30)
            return fitting
        message += (f' The backbone itself does not fit ({len(in_backbone)} of its keys: '
                    f'{_short(in_backbone, 5)}), so this is not a fine-tuning of the same '
                    'backbone.')
    if mode == 'partial':
        print_log(f'{message} Loading the matching weights only ({PARTIAL_LOAD_SWITCH}=True).',
                  logger='current', level=30)
        return fitting
    hint = (' A resumed run must continue the same model: resume from a checkpoint of this '
            'config, or start a new run with load_from.' if mode == 'resume' else
            f' If loading only the matching weights is intended, set `{PARTIAL_LOAD_SWITCH} = '
            f'True` in the config or pass --cfg-options {PARTIAL_LOAD_SWITCH}=True.')
    raise CheckpointMismatchError(message + hint)


def nonfinite_optimizer_state(state: Mapping) -> List[str]:
    """'param 3: exp_avg' for every NaN/Inf tensor of an optimizer (or wrapper) state dict."""
    bad: List[str] = []

    def visit(node, where):
        if torch.is_tensor(node):
            if node.is_floating_point() and node.numel() and not bool(torch.isfinite(node).all()):
                bad.append(where)
        elif isinstance(node, Mapping):
            for k, v in node.items():
                visit(v, f'{where}.{k}' if where else str(k))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                visit(v, f'{where}[{i}]')

    visit(state, '')
    return bad


# ----------------------------------------------------------------------------- on disk
def _checkpoint_order(path: str):
    """Newest first: by the iteration / epoch number in the name, then by modification time."""
    numbers = [int(n) for n in re.findall(r'(\d+)', osp.basename(path))]
    return (max(numbers) if numbers else -1, osp.getmtime(path))


def _checkpoints(work_dir: str) -> List[str]:
    paths = [p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.isfile(p)]
    return sorted(paths, key=_checkpoint_order, reverse=True)


def newest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint a ``--resume`` would take, without logging; None when there is none."""
    try:
        return find_resumable_checkpoint(work_dir, quiet=True)
    except (CorruptCheckpointError, OSError):
        return None


def on_disk_summary(work_dir: str) -> str:
    """What a user can resume from, in words."""
    newest = newest_checkpoint(work_dir)
    if newest is None:
        return f'No checkpoint of this run is in {work_dir} yet.'
    return (f'The newest intact checkpoint in {work_dir} is {osp.basename(newest)}, from before '
            'this state (resume with --resume).')


def find_resumable_checkpoint(work_dir: str, quiet: bool = False) -> Optional[str]:
    """``last_checkpoint``'s file when it is intact, else the newest intact ``*.pth`` of
    ``work_dir``; None when there is no checkpoint at all. Raises when checkpoints exist but none
    can be read."""
    recorded = None
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            recorded = f.read().strip() or None
    candidates = _checkpoints(work_dir)
    if recorded and osp.isfile(recorded):
        candidates = [recorded] + [c for c in candidates
                                   if osp.abspath(c) != osp.abspath(recorded)]
    broken: List[str] = []
    for path in candidates:
        if osp.islink(path):
            broken.append(f'{path}: a symbolic link, not a checkpoint this run wrote')
            continue
        try:
            check_readable(path)
        except (CorruptCheckpointError, OSError) as e:
            broken.append(f'{path}: {e}')
            continue
        if quiet:
            return path
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


# ----------------------------------------------------------------------------- writing
def atomic_replace(tmp: str, final: str) -> None:
    """fsync ``tmp``, then rename it over ``final`` (a symlink there is replaced, not followed)."""
    with open(tmp, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    with contextlib.suppress(OSError):  # the directory entry too (not every filesystem can)
        fd = os.open(osp.dirname(osp.abspath(final)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def disk_full_error(path: str, error: OSError) -> CheckpointSaveError:
    free = shutil.disk_usage(osp.dirname(osp.abspath(path)) or '.').free
    return CheckpointSaveError(
        error.errno,
        f'could not write checkpoint {path}: no space left on the device ({free / 2**20:.1f} MiB '
        'free). Nothing was replaced: the earlier checkpoints are intact. Free some space (or '
        'lower default_hooks.checkpoint.max_keep_ckpts) and resume with --resume.')


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def work_dir_lock(work_dir: str):
    """Hold ``work_dir/.train.lock`` for the block; refuse when another process holds it.

    ``flock`` locks belong to the open file: the kernel releases them when the process ends, even
    by a crash or a kill, so the lock file left behind never blocks a later run.
    """
    import fcntl
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, '.train.lock')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode('utf-8', 'replace').strip() or 'unknown'
            raise WorkDirLockedError(
                f'work dir {work_dir} is in use by another training run ({holder}); two runs '
                'there would overwrite each other\'s checkpoints. Wait for it to finish, or give '
                'this run its own --work-dir.') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f'pid {os.getpid()} on {socket.gethostname()}, since '
                       f'{datetime.datetime.now():%Y-%m-%d %H:%M:%S}').encode(), 0)
        yield
    finally:
        os.close(fd)
