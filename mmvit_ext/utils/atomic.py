"""Writing a file so that a reader never sees half of it and a write never goes through a
symbolic link: the data goes to a temporary file in the same directory, is fsynced, and is
renamed over the destination (a symlink there is replaced, not followed). A failed or
interrupted write leaves the destination as it was and removes the temporary file."""
import contextlib
import os
import os.path as osp
from typing import Iterator

__all__ = ['atomic_replace', 'atomic_write', 'TEMP_SUFFIX']

#: the temporary files' suffix (``.NAME.<pid>.tmp``), so that stale ones can be found
TEMP_SUFFIX = '.tmp'


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


def temp_path(final: str) -> str:
    """The temporary file a write of ``final`` goes through (hidden, with the writer's pid)."""
    folder, name = osp.split(osp.abspath(final))
    return osp.join(folder, f'.{name}.{os.getpid()}{TEMP_SUFFIX}')


@contextlib.contextmanager
def atomic_write(final: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``final`` atomically, on any
    failure it is removed and ``final`` is untouched."""
    tmp = temp_path(final)
    try:
        yield tmp
        atomic_replace(tmp, final)
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)
