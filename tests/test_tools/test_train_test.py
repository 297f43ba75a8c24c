"""End-to-end runs of the tools on the small datasets (CPU): train, test, mim, distributed + resume."""
import glob
import re
import os
import os.path as osp
import pickle
import signal
import socket
import subprocess
import sys
import time

import pytest

from ..conftest import REPO, run_env

DET_CFG = 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py'
SEG_CFG = 'configs/_small_/dilateformer-demo_upernet_small-ade20k.py'
CLS_CFG = 'configs/_small_/dilateformer-demo_small-imagenet.py'


def _run(args, timeout=600, **kw):
    proc = subprocess.run(args, cwd=REPO, env=run_env(), capture_output=True, text=True,
                          timeout=timeout, **kw)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def _det_options(data, epochs, batch=2):
    root = data['coco'] + '/'
    return [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        f'test_evaluator.ann_file={root}annotations/instances_val.json',
        f'train_dataloader.batch_size={batch}', f'train_cfg.max_epochs={epochs}',
        f'train_cfg.val_interval={epochs}', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1', 'default_hooks.logger.interval=1']


def test_detection_train_then_test(small_data, tmp_path):
    work = str(tmp_path / 'det')
    out = _run([sys.executable, 'tools/train.py', DET_CFG, '--work-dir', work, '--cfg-options',
                *_det_options(small_data, epochs=1)])
    assert 'Epoch(train) [1][4/4]' in out and 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    pkl = str(tmp_path / 'preds.pkl')
    out = _run([sys.executable, 'tools/test.py', DET_CFG, ckpt, '--work-dir', work, '--out', pkl,
                '--cfg-options', *_det_options(small_data, epochs=1)])
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    with open(pkl, 'rb') as f:
        assert len(pickle.load(f)) == 4  # one result per val image


@pytest.mark.parametrize('config', [
    # 160x128 images: every SG-Former window, reduction and merge group pads
    'configs/_small_/mask-rcnn_sgformer-demo_fpn_small-coco.py',
    # the 10x8 stage-3 map pads its 14x14 MSA window
    'configs/_small_/mask-rcnn_qnavit-demo_fpn_small-coco.py',
    # k-means query groups and top-k keys in every block
    'configs/_small_/mask-rcnn_dgt-demo_fpn_small-coco.py',
], ids=['sgformer', 'qnavit', 'dgt'])
def test_detection_training_lowers_the_loss(config, small_data, tmp_path):
    """Each backbone's demo detector through tools/train.py: 3 epochs on the small COCO-format
    set, the loss falls, evaluation runs, checkpoints are written."""
    work = str(tmp_path / 'work')
    # seeded: unseeded, a 12-iteration run from random weights can stall (seen once for DGT)
    opts = _det_options(small_data, epochs=3) + ['optim_wrapper.optimizer.lr=2e-4',
                                                 'param_scheduler.0.end=4', 'randomness.seed=0']
    out = _run([sys.executable, 'tools/train.py', config, '--work-dir', work,
                '--cfg-options', *opts])
    losses = [float(x) for x in re.findall(r'Epoch\(train\).*? loss: ([0-9.]+)', out)]
    assert len(losses) == 12, out[-3000:]  # 8 images / 2 per batch x 3 epochs, logged each iter
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0], losses
    assert 'coco/bbox_mAP' in out and osp.isfile(osp.join(work, 'epoch_3.pth'))


@pytest.mark.slow  # inductor builds the forward and backward graphs: minutes a model on 2 cores
@pytest.mark.timeout(3600)
@pytest.mark.parametrize('family', ['dilateformer', 'qnavit', 'sgformer', 'dgt'])
def test_demo_detector_trains_with_mmengine_compile(family, small_data, tmp_path):
    """mmengine's ``compile=True`` (torch.compile, inductor, CPU): each family's demo Mask R-CNN
    trains an epoch through tools/train.py, with finite losses, and evaluates."""
    work = str(tmp_path / 'work')
    opts = _det_options(small_data, epochs=1) + ['compile=True', 'randomness.seed=0']
    out = _run([sys.executable, 'tools/train.py',
                f'configs/_small_/mask-rcnn_{family}-demo_fpn_small-coco.py', '--work-dir', work,
                '--cfg-options', *opts], timeout=3500)
    losses = [float(x) for x in re.findall(r'Epoch\(train\).*? loss: ([0-9.]+)', out)]
    assert len(losses) == 4 and all(0 < v < 100 for v in losses), out[-3000:]
    assert 'coco/bbox_mAP' in out and osp.isfile(osp.join(work, 'epoch_1.pth'))


def test_segmentation_train_then_test(small_data, tmp_path):
    work = str(tmp_path / 'seg')
    opts = [f'{p}_dataloader.dataset.data_root={small_data["ade20k"]}' for p in ('train', 'val', 'test')]
    opts += ['train_cfg.max_iters=3', 'train_cfg.val_interval=3', 'train_dataloader.batch_size=2',
             'default_hooks.checkpoint.interval=3', 'default_hooks.logger.interval=1']
    out = _run([sys.executable, 'tools/train.py', SEG_CFG, '--work-dir', work, '--cfg-options', *opts])
    assert 'Iter(train) [3/3]' in out and 'mIoU' in out
    out = _run([sys.executable, 'tools/test.py', SEG_CFG, osp.join(work, 'iter_3.pth'), '--work-dir',
                work, '--cfg-options', *opts])
    assert 'mIoU' in out


def test_segmentation_demo_learns_four_named_classes(tmp_path):
    """Background is a learned class and the shapes' colours do not give their class, so the
    demo's mIoU is a real number below 100 that rises with training."""
    from mmvit_ext.datasets.small import make_small_ade20k
    root = make_small_ade20k(str(tmp_path))
    opts = [f'{p}_dataloader.dataset.data_root={root}' for p in ('train', 'val', 'test')]
    opts += ['train_cfg.max_iters=60', 'train_cfg.val_interval=20', 'randomness.seed=0',
             'default_hooks.checkpoint.interval=60']
    out = _run([sys.executable, 'tools/train.py', SEG_CFG, '--work-dir', str(tmp_path / 'w'),
                '--cfg-options', *opts])
    mious = [float(v) for v in re.findall(r'Iter\(val\) \[\d+/\d+\] +aAcc: [\d.]+ +mIoU: ([\d.]+)',
                                          out)]
    assert len(mious) == 3 and mious[-1] > mious[0] + 3 and max(mious) < 90, mious
    for name in ('background', 'square', 'circle', 'triangle'):  # the per-class table
        assert re.search(rf'\|\s*{name}\s*\|\s*[\d.]+\s*\|', out), name


def test_classification_train_then_test(small_data, tmp_path):
    work = str(tmp_path / 'cls')
    opts = [f'{p}_dataloader.dataset.data_root={small_data["imagenet"]}' for p in ('train', 'val', 'test')]
    opts += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1']
    out = _run([sys.executable, 'tools/train.py', CLS_CFG, '--work-dir', work, '--cfg-options', *opts])
    assert 'accuracy/top1' in out
    out = _run([sys.executable, 'tools/test.py', CLS_CFG, osp.join(work, 'epoch_1.pth'), '--work-dir',
                work, '--cfg-options', *opts])
    assert 'accuracy/top1' in out
    from mmvit_ext.checkpoints import safe_torch_load
    meta = safe_torch_load(osp.join(work, 'epoch_1.pth'))['meta']['dataset_meta']
    assert tuple(meta['classes']) == ('square', 'circle', 'triangle')  # not ImageNet's names


def _mim():
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    if not osp.exists(mim):
        pytest.fail(f'mim is not installed next to {sys.executable}: run tools/setup_env.sh')
    return mim


def test_mim_train_and_test_with_mmdet_and_with_our_package(small_data, tmp_path):
    """`mim train mmdet <our config path>` runs mmdet's own tools with the plugin imported by
    custom_imports; `mim train mmvit_ext <config name>` finds config and tools in the package."""
    work = str(tmp_path / 'mim')
    opts = _det_options(small_data, epochs=1)
    out = _run([_mim(), 'train', 'mmdet', DET_CFG, '--work-dir', work, '--cfg-options', *opts])
    assert 'mmdet/.mim/tools/train.py' in out.replace(os.sep, '/') or 'Epoch(train)' in out
    ckpt = osp.join(work, 'epoch_1.pth')
    out = _run([_mim(), 'test', 'mmdet', DET_CFG, '--checkpoint', ckpt, '--work-dir', work,
                '--cfg-options', *opts])
    assert 'coco/bbox_mAP' in out
    installed = subprocess.run(
        [sys.executable, '-c', 'import mim.utils as u; print(u.get_installed_path("mmvit_ext"))'],
        cwd=str(tmp_path), capture_output=True, text=True).stdout.strip()
    assert osp.isfile(osp.join(installed, '.mim', DET_CFG)), (
        f'the installed mmvit_ext ({installed}) lacks {DET_CFG}: run tools/setup_env.sh, which '
        'reinstalls the package when the sources change')
    out = _run([_mim(), 'test', 'mmvit_ext', osp.basename(DET_CFG), '--checkpoint', ckpt,
                '--work-dir', work, '--cfg-options', *opts])
    assert 'we find the config file in codebase mmvit_ext' in out and 'coco/segm_mAP' in out
    work2 = str(tmp_path / 'mim_ours')
    out = _run([_mim(), 'train', 'mmvit_ext', osp.basename(DET_CFG), '--work-dir', work2,
                '--cfg-options', *opts])
    assert 'mmvit_ext/.mim/tools/train.py' in out.replace(os.sep, '/')
    assert osp.isfile(osp.join(work2, 'epoch_1.pth'))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.dist
def test_dist_train_two_cpu_processes_and_resume_after_interruption(small_data, tmp_path):
    work = str(tmp_path / 'dist')
    env = run_env()
    env.update(PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    opts = _det_options(small_data, epochs=3, batch=1)
    cmd = ['bash', 'tools/dist_train.sh', DET_CFG, '2', '--work-dir', work, '--cfg-options', *opts]
    log = open(tmp_path / 'first.log', 'w')
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 400
    while not osp.exists(osp.join(work, 'epoch_1.pth')) and proc.poll() is None:
        assert time.time() < deadline, 'no checkpoint after 400 s'
        time.sleep(0.5)
    time.sleep(1)  # let the checkpoint file finish writing
    # Interrupt mid-training as a preempted job would be: SIGTERM to the launcher, which stops its
    # workers (they run in sessions of their own); then make sure nothing of the job is left.
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    subprocess.run(['pkill', '-KILL', '-f', work])
    time.sleep(1)
    first = open(tmp_path / 'first.log').read()
    assert 'Epoch(train) [1]' in first, first[-4000:]
    assert not osp.exists(osp.join(work, 'epoch_3.pth'))
    saved = sorted(glob.glob(osp.join(work, 'epoch_*.pth')))

    env['PORT'] = str(_free_port())
    proc = subprocess.run(cmd + ['--resume'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    last = saved[-1]
    resumed_epoch = int(osp.basename(last)[6:-4])
    assert f'resumed epoch: {resumed_epoch}' in out, out[-4000:]
    # 8 images / (2 processes x 1 image) = 4 iterations per epoch
    assert f'iter: {4 * resumed_epoch}' in out
    assert f'Epoch(train) [{resumed_epoch}]' not in out  # no epoch is trained twice
    assert 'Epoch(train) [3][4/4]' in out and osp.exists(osp.join(work, 'epoch_3.pth'))
    # distributed evaluation ran (after 12 iterations the model may still predict nothing, so
    # the metric values themselves are not asserted)
    assert re.search(r'Epoch\(val\) \[3\]\[\d+\/\d+\]', out), [l for l in out.splitlines() if 'Epoch(' in l][-5:]

    # and the 2-process test launcher on the resumed run's checkpoint
    env['PORT'] = str(_free_port())
    proc = subprocess.run(['bash', 'tools/dist_test.sh', DET_CFG, osp.join(work, 'epoch_3.pth'), '2',
                           '--work-dir', work, '--cfg-options', *opts], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r'Epoch\(test\) \[\d+/\d+\]', out)
