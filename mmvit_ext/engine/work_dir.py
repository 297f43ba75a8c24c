"""A training run's work dir: which checkpoint a resume takes, the lock that keeps a second run
out, and what a full disk means for the checkpoints there."""
import contextlib
import datetime
import errno
import glob
import os
import os.path as osp
import re
import shutil
import socket
from typing import List, Optional, Tuple

from mmengine.logging import print_log

from ..checkpoints import (CorruptCheckpointError, check_readable, nonfinite_optimizer_state,
                           nonfinite_tensors, safe_torch_load)
from .errors import CheckpointSaveError, WorkDirLockedError

__all__ = ['find_resumable_checkpoint', 'newest_checkpoint', 'on_disk_summary', 'work_dir_lock',
           'disk_full_error', 'is_disk_full', 'checkpoint_progress', 'intact_checkpoint',
           'training_run_holding', 'remove_stale_temp_files']


def checkpoint_progress(path: str) -> Optional[Tuple[int, int]]:
    """``(iter, epoch)`` that a checkpoint's ``meta`` records (mmengine writes both), read
    without reading its tensors; None when it records none or cannot be read."""
    try:
        meta = safe_torch_load(path, map_location='cpu', mmap=True).get('meta') or {}
        return int(meta['iter']), int(meta.get('epoch', 0))
    except Exception:  # noqa: BLE001  (any unreadable file: no progress; reported when chosen)
        return None


def _checkpoints(work_dir: str) -> List[str]:
    """The work dir's checkpoints, newest first by the progress they record (a file name such
    as ``backup_epoch_1_20261204.pth`` says nothing), files that record none last; ties by
    modification time."""
    paths = [p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.isfile(p)]
    progress = {p: checkpoint_progress(p) for p in paths}
    return sorted(paths, key=lambda p: (progress[p] is not None, progress[p] or (0, 0),
                                        osp.getmtime(p)), reverse=True)


def intact_checkpoint(work_dir: str, exclude: str) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` other than ``exclude`` that is readable and holds
    finite weights and optimizer state (read in full: for a refusal's message only)."""
    for path in _checkpoints(work_dir):
        if osp.abspath(path) == osp.abspath(exclude) or osp.islink(path):
            continue
        try:
            checkpoint = safe_torch_load(path, map_location='cpu')
        except Exception:  # noqa: BLE001  (damaged or refused: not intact)
            continue
        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
        if isinstance(state, dict) and not nonfinite_tensors(state) and \
                not nonfinite_optimizer_state(checkpoint.get('optimizer', {})):
            return path
    return None


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


def disk_full_error(path: str, error: OSError) -> CheckpointSaveError:
    free = shutil.disk_usage(osp.dirname(osp.abspath(path)) or '.').free
    return CheckpointSaveError(
        error.errno,
        f'could not write checkpoint {path}: no space left on the device ({free / 2**20:.1f} MiB '
        'free). Nothing was replaced: the earlier checkpoints are intact. Free some space (or '
        'lower default_hooks.checkpoint.max_keep_ckpts) and resume with --resume.')


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


LOCK_NAME = '.train.lock'


def _open_lock_file(work_dir: str, create: bool = True) -> int:
    """The lock file's descriptor, never through a symbolic link."""
    path = osp.join(work_dir, LOCK_NAME)
    try:
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if create else 0), 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise WorkDirLockedError(
                f'{path} is a symbolic link, not the lock file a training run writes; nothing '
                'is written through it. Remove it (or give this run its own --work-dir).') from None
        raise


def training_run_holding(work_dir: str) -> Optional[str]:
    """Who holds ``work_dir``'s lock (the holder's line), or None when no run holds it."""
    import fcntl
    path = osp.join(work_dir, LOCK_NAME)
    if not osp.isfile(path) or osp.islink(path):
        return None
    fd = _open_lock_file(work_dir, create=False)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.pread(fd, 200, 0).decode('utf-8', 'replace').strip() or 'unknown'
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def remove_stale_temp_files(work_dir: str) -> List[str]:
    """Remove the temporary files of interrupted saves (``.NAME.<pid>.tmp``, see
    :mod:`mmvit_ext.utils.atomic`) from ``work_dir``; call it holding the lock, so that no save
    of another run is in progress. Returns what was removed."""
    removed = []
    for path in glob.glob(osp.join(work_dir, '.*.*.tmp')):
        if re.fullmatch(r'\..+\.\d+\.tmp', osp.basename(path)) and \
                not path.endswith(f'.{os.getpid()}.tmp') and osp.isfile(path):
            os.remove(path)
            removed.append(osp.basename(path))
    return removed


@contextlib.contextmanager
def work_dir_lock(work_dir: str):
    """Hold ``work_dir/.train.lock`` for the block; refuse when another process holds it.

    ``flock`` locks belong to the open file: the kernel releases them when the process ends, even
    by a crash or a kill, so the lock file left behind never blocks a later run.
    """
    import fcntl
    os.makedirs(work_dir, exist_ok=True)
    fd = _open_lock_file(work_dir)
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
