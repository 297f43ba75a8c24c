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
from typing import List, Optional

from mmengine.logging import print_log

from ..checkpoints import CorruptCheckpointError, check_readable
from .errors import CheckpointSaveError, WorkDirLockedError

__all__ = ['find_resumable_checkpoint', 'newest_checkpoint', 'on_disk_summary', 'work_dir_lock',
           'disk_full_error', 'is_disk_full']


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
