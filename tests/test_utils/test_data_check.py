import subprocess
import sys

import pytest
from mmengine.config import Config

from mmvit_ext.datasets.data_check import DatasetNotFoundError, check_dataset_paths

from ..conftest import REPO, run_env


@pytest.mark.parametrize('config,hint', [
    ('configs/dilateformer/mask_rcnn_coco.py', 'COCO 2017'),
    ('configs/dilateformer/upernet_ade20k.py', 'ADEChallengeData2016'),
    ('configs/dilateformer/dilateformer-t_8xb128_in1k.py', 'ImageNet-1k'),
])
def test_missing_dataset_error_says_where_and_how(tmp_path, config, hint):
    cfg = Config.fromfile(f'{REPO}/{config}')
    for phase in ('train', 'val', 'test'):
        cfg[f'{phase}_dataloader'].dataset.data_root = str(tmp_path / 'nowhere') + '/'
    with pytest.raises(DatasetNotFoundError) as err:
        check_dataset_paths(cfg)
    msg = str(err.value)
    assert str(tmp_path / 'nowhere') in msg and hint in msg
    assert 'make_small_datasets.py' in msg


def test_train_tool_fails_fast_without_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/dilateformer/mask_rcnn_coco.py', '--work-dir',
         str(tmp_path), '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/coco/'],
        cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert 'error: dataset not found. Missing: ' in proc.stderr
    assert f'train_dataloader.dataset.data_root (now \'{tmp_path}/coco/\')' in proc.stderr
    assert 'COCO 2017' in proc.stderr and 'Traceback' not in proc.stderr
    assert 'Epoch(train)' not in proc.stdout + proc.stderr


def test_small_configs_find_their_data_from_any_directory(tmp_path):
    """The small configs resolve data/small next to the checkout they come from; one setting
    (MMVIT_SMALL_DATA) moves every path, and a missing set names each key that points at it."""
    config = f'{REPO}/configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py'
    cfg = Config.fromfile(config)
    assert cfg.train_dataloader.dataset.data_root.startswith(f'{REPO}/configs/_small_/../../')
    env = run_env()
    env['MMVIT_SMALL_DATA'] = str(tmp_path / 'elsewhere')
    proc = subprocess.run([sys.executable, f'{REPO}/tools/train.py', config, '--work-dir',
                           str(tmp_path / 'w')], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    line = next(x for x in proc.stderr.splitlines() if x.startswith('error:'))
    for key in ('train_dataloader.dataset.data_root', 'val_dataloader.dataset.data_root',
                'test_dataloader.dataset.data_root', 'val_evaluator.ann_file',
                'test_evaluator.ann_file'):
        assert key in line, line
    assert f"(now '{tmp_path}/elsewhere/small_coco/')" in line
    assert 'MMVIT_SMALL_DATA=/path/to/small' in line
