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


def _shared_dir(tmp_path_factory) -> str:
    """A folder every pytest-xdist worker of this run shares (the run's own temp folder)."""
    base = tmp_path_factory.getbasetemp()
    return str(base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base)


#: demo configs the deployment tests train, and how long: 3 epochs of 16 iterations on the
#: 64-image set with a 10-iteration warm-up (DilateFormer's: ~50 s on one thread, bbox mAP ~0.6,
#: and its RPN already scores most anchors below -18, where onnxruntime's sigmoid is exactly 0:
#: the case random weights never show)
_SHORT = ['train_cfg.max_epochs=3', 'param_scheduler.0.end=10']
TRAINED_DEMOS = {
    'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py': _SHORT,
    'configs/_small_/mask-rcnn_qnavit-demo_fpn_small-coco.py': _SHORT,
    'configs/_small_/mask-rcnn_sgformer-demo_fpn_small-coco.py': _SHORT,
    'configs/_small_/mask-rcnn_dgt-demo_fpn_small-coco.py': _SHORT,
    'configs/_small_/cascade-mask-rcnn_dilateformer-demo_fpn_small-coco.py':
        ['train_cfg.max_epochs=2', 'param_scheduler.0.end=10'],
    'configs/_small_/dilateformer-demo_upernet_small-ade20k.py':
        ['train_cfg.max_iters=40', 'param_scheduler.0.end=5', 'param_scheduler.1.begin=5',
         'param_scheduler.1.end=40'],
}


@pytest.fixture(scope='session')
def trained_checkpoint(tmp_path_factory):
    """``trained_checkpoint(config)`` -> a checkpoint of that demo config trained by this test
    run through ``tools/train.py`` on the built-in small sets (once per run, shared by the
    xdist workers under a file lock)."""
    import shutil
    import subprocess

    from filelock import FileLock
    root = osp.join(_shared_dir(tmp_path_factory), 'trained')
    os.makedirs(root, exist_ok=True)

    def train(config: str) -> str:
        name = osp.splitext(osp.basename(config))[0]
        final = osp.join(root, name + '.pth')
        data = osp.join(root, 'data')
        with FileLock(osp.join(root, 'data.lock')):
            if not osp.isdir(osp.join(data, 'small_ade')):
                from mmvit_ext.datasets import small
                small.make_small_coco(data)
                small.make_small_ade20k(data)
        with FileLock(osp.join(root, name + '.lock')):
            if not osp.exists(final):
                work = osp.join(root, name)
                env = dict(run_env(), MMVIT_SMALL_DATA=data)
                proc = subprocess.run(
                    [sys.executable, 'tools/train.py', config, '--work-dir', work,
                     '--cfg-options', *TRAINED_DEMOS[config], 'train_cfg.val_interval=100000',
                     'default_hooks.checkpoint.interval=100000'],
                    cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
                assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
                with open(osp.join(work, 'last_checkpoint')) as f:
                    shutil.copy(f.read().strip(), final)
        return final
    return train
