"""Third-party deprecation notices that are not the user's business, silenced where they come
from and nowhere else."""
import warnings
from contextlib import contextmanager

#: setuptools >= 80 warns on ``import pkg_resources``, which mmengine, mmseg and mmpretrain do
#: at import time (their code; nothing a user of this project can act on)
PKG_RESOURCES = 'pkg_resources is deprecated as an API'


@contextmanager
def third_party_deprecations():
    """Inside the block only: no ``pkg_resources`` deprecation notice. The warning filters are
    restored on exit, so a user's own imports after ours still show theirs."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=PKG_RESOURCES, category=UserWarning)
        warnings.filterwarnings('ignore', message='Deprecated call to `pkg_resources',
                                category=DeprecationWarning)
        yield
