import os
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mmvit_ext  # noqa: E402,F401


@pytest.fixture(scope='session')
def repo_root():
    return REPO


@pytest.fixture(scope='session')
def small_data(tmp_path_factory):
    """Tiny copies of the built-in datasets (fewer images than the demo's, same formats)."""
    from mmvit_ext.datasets import small
    root = str(tmp_path_factory.mktemp('small'))
    return dict(
        root=root,
        coco=small.make_small_coco(root, num_train=8, num_val=4),
        ade20k=small.make_small_ade20k(root, num_train=4, num_val=2),
        imagenet=small.make_small_imagenet(root, per_class_train=2, per_class_val=1))


def run_env():
    """Environment for subprocess runs of the tools, as a user has it: no PYTHONPATH (the tools
    find the checkout themselves; mim finds the installed package)."""
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    env.setdefault('OMP_NUM_THREADS', '2')
    return env
