"""The custom-dataset guide (docs/en/user_guides/custom_dataset.md), run as written: its shell
commands in a scratch directory laid out like a checkout (``configs/`` and ``tools/`` linked),
with an official-layout DilateFormer-T file standing in for the one a user downloads. The
12-epoch line is the one command not run (the one-epoch line before it trains the same config);
tests/test_readme_commands.py checks its arguments."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from .conftest import REPO, run_env
from .test_models.official_layouts import dilateformer_official_state_dict

GUIDE = osp.join(REPO, 'docs', 'en', 'user_guides', 'custom_dataset.md')


def _guide_commands():
    with open(GUIDE) as f:
        text = f.read()
    for block in re.findall(r'```shell\n(.*?)```', text, re.S):
        for line in block.splitlines():
            line = re.split(r'\s#', line)[0].strip()
            if line:
                yield line


def test_the_guide_lists_the_steps_it_promises():
    commands = list(_guide_commands())
    assert [c.split()[1] for c in commands] == [
        'tools/misc/make_small_datasets.py', 'tools/model_converters/dilateformer2mmvit.py',
        'tools/train.py', 'tools/test.py', 'tools/train.py']
    assert '--cfg-options train_cfg.max_epochs=1' in commands[2]
    assert 'epoch_1.pth' in commands[3]


@pytest.mark.timeout(1200)
def test_the_custom_dataset_guide_runs_as_written(tmp_path):
    for name in ('configs', 'tools'):
        os.symlink(osp.join(REPO, name), tmp_path / name)
    torch.save({'model': dilateformer_official_state_dict('tiny')},
               tmp_path / 'dilateformer-tiny-official.pth')
    commands = list(_guide_commands())[:4]  # all but the 12-epoch schedule
    env = dict(run_env(), OMP_NUM_THREADS='1')
    for command in commands:
        argv = command.split()
        assert argv[0] == 'python'
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-3000:])
        out = proc.stdout + proc.stderr
    # the test command evaluated the one-epoch model on the val split with the guide's classes
    assert re.search(r'coco/bbox_mAP: [\d.]+', out), out[-3000:]
    work_dir = tmp_path / 'work_dirs' / 'mask-rcnn_dilateformer-t_fpn_1x_shapes'
    ckpt = torch.load(work_dir / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['dataset_meta']['classes'] == ('square', 'circle', 'triangle')
    assert ckpt['state_dict']['roi_head.bbox_head.fc_cls.weight'].shape[0] == 3 + 1
    assert ckpt['state_dict']['roi_head.mask_head.conv_logits.weight'].shape[0] == 3


def test_a_misspelt_class_in_the_guide_config_is_refused(tmp_path):
    """What the guide's last section promises: names the file spells otherwise are refused
    before training (the guide's config, one class name changed)."""
    for name in ('configs', 'tools'):
        os.symlink(osp.join(REPO, name), tmp_path / name)
    env = dict(run_env(), OMP_NUM_THREADS='1')
    subprocess.run([sys.executable, 'tools/misc/make_small_datasets.py', 'data/shapes', '--only',
                    'coco'], cwd=tmp_path, env=env, check=True, capture_output=True)
    proc = subprocess.run(
        [sys.executable, 'tools/train.py',
         'configs/_custom_/mask-rcnn_dilateformer-t_fpn_1x_shapes.py', '--cfg-options', 'model.backbone.init_cfg=None',
         "train_dataloader.dataset.metainfo.classes=['Square','circle','triangle']"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "'Square'" in proc.stderr and "the file has 'square'" in proc.stderr, \
        proc.stderr[-2000:]
