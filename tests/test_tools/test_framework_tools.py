"""The frameworks' own tools, unchanged, in the project's environment: imports without mmvit_ext,
and `mim run mmdet browse_dataset / analyze_logs / benchmark / get_flops / confusion_matrix`
with a config of this project on the small COCO-format set."""
import glob
import os.path as osp
import subprocess
import sys

import pytest

from ..conftest import REPO, run_env

DET_CFG = 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py'


def _run(args, timeout=600, cwd=REPO):
    proc = subprocess.run(args, cwd=cwd, env=run_env(), capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _mim():
    return [osp.join(osp.dirname(sys.executable), 'mim'), 'run', 'mmdet']


def test_framework_imports_work_without_importing_mmvit_ext():
    """The CUDA torchvision next to the CPU torch imports through the environment's hook."""
    out = _run([sys.executable, '-c', 'import sys, torchvision, mmdet.models; '
                'from mmseg.apis import MMSegInferencer; import mmpretrain.models; '
                'print("imported", "mmvit_ext" in sys.modules)'], cwd='/')
    assert 'imported False' in out


@pytest.fixture(scope='module')
def trained(small_data, tmp_path_factory):
    """One epoch of the demo detector: checkpoint, json log, test predictions."""
    work = tmp_path_factory.mktemp('trained')
    root = small_data['coco'] + '/'
    opts = [f'{p}_dataloader.dataset.data_root={root}' for p in ('train', 'val', 'test')] + [
        f'{p}_evaluator.ann_file={root}annotations/instances_val.json' for p in ('val', 'test')
    ] + ['test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    _run([sys.executable, 'tools/train.py', DET_CFG, '--work-dir', str(work), '--cfg-options',
          *opts, 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
          'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2'])
    preds = str(work / 'preds.pkl')
    _run([sys.executable, 'tools/test.py', DET_CFG, str(work / 'epoch_1.pth'), '--out', preds,
          '--work-dir', str(work), '--cfg-options', *opts])
    log = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))[0]
    return dict(work=work, opts=opts, ckpt=str(work / 'epoch_1.pth'), preds=preds, log=log)


def test_mim_run_mmdet_tools_on_our_config(trained, tmp_path):
    opts = trained['opts']
    _run(_mim() + ['browse_dataset', DET_CFG, '--output-dir', str(tmp_path / 'browse'),
                   '--not-show', '--cfg-options', *opts])
    assert len(glob.glob(str(tmp_path / 'browse' / '*.jpg'))) == 8
    _run(_mim() + ['analyze_logs', 'plot_curve', trained['log'], '--keys', 'loss', '--out',
                   str(tmp_path / 'curve.png')])
    assert osp.getsize(tmp_path / 'curve.png') > 1000
    # mmdet's inference benchmark moves the model to CUDA itself; on the CPU its dataset
    # benchmark runs (it needs psutil, which the environment now has)
    out = _run(_mim() + ['benchmark', DET_CFG, '--task', 'dataset', '--dataset-type', 'train',
                         '--max-iter', '12', '--num-warmup', '2', '--log-interval', '4',
                         '--work-dir', str(tmp_path / 'bench'), '--cfg-options', *opts])
    assert 'Overall fps' in out
    out = _run(_mim() + ['get_flops', DET_CFG, '--num-images', '2', '--cfg-options', *opts])
    assert 'Flops:' in out and 'Params:' in out
    _run(_mim() + ['confusion_matrix', DET_CFG, trained['preds'], str(tmp_path / 'cm'),
                   '--cfg-options', *opts])
    assert osp.isfile(tmp_path / 'cm' / 'confusion_matrix.png')
