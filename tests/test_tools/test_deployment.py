"""Export: tools/deployment/export_onnx.py for every family (onnxruntime against PyTorch at the
export size and, with free height and width, at another), and TorchScript trace + save + load."""
import re
import subprocess
import sys

import pytest
import torch

from ..conftest import REPO, run_env

DEMOS = {
    'DilateFormer': 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py',
    'QnAViT': 'configs/_small_/mask-rcnn_qnavit-demo_fpn_small-coco.py',
    'SGFormer': 'configs/_small_/mask-rcnn_sgformer-demo_fpn_small-coco.py',
    'DGT': 'configs/_small_/mask-rcnn_dgt-demo_fpn_small-coco.py',
}


def _export(args, tmp_path):
    proc = subprocess.run([sys.executable, 'tools/deployment/export_onnx.py', *args, '--out',
                           str(tmp_path / 'm.onnx')], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize('family', sorted(DEMOS))
def test_backbone_exports_with_free_size_and_matches_pytorch(family, tmp_path):
    code, out = _export([DEMOS[family], '--shape', '128', '160', '--dynamic'], tmp_path)
    assert code == 0, out[-3000:]
    assert f'({family} backbone, torchscript exporter, opset 17, dynamic size)' in out
    diffs = re.findall(r'at (\d+x\d+): max relative difference per output ([\d.e\-, ]+)', out)
    assert [size for size, _ in diffs] == ['128x160', '168x136']
    worst = max(float(v) for _, values in diffs for v in values.split(', '))
    # routing families: near-ties may order tokens differently (see the tool's --help)
    assert worst < (5e-2 if family in ('SGFormer', 'DGT') else 1e-4), out


def test_classifier_exports_whole_and_a_mismatch_fails(tmp_path):
    cfg = 'configs/_small_/dilateformer-demo_small-imagenet.py'
    code, out = _export([cfg, '--shape', '64', '64', '--dynamic'], tmp_path)
    assert code == 0 and '(DilateFormer classifier' in out and 'OK: within 1e-04' in out, out
    code, out = _export([cfg, '--shape', '64', '64', '--rtol', '0'], tmp_path)
    assert code == 1 and 'error: the exported model differs from PyTorch' in out, out


@pytest.mark.parametrize('family', sorted(DEMOS))
def test_trace_save_load_follows_the_input_size(family, tmp_path):
    from mmengine.config import Config

    from mmvit_ext.utils.build import build_model_from_cfg
    torch.manual_seed(0)
    model, _ = build_model_from_cfg(Config.fromfile(f'{REPO}/{DEMOS[family]}'))
    backbone = model.backbone.eval()
    with torch.no_grad():
        traced = torch.jit.trace(backbone, torch.randn(1, 3, 96, 128), check_trace=False)
    path = tmp_path / 'backbone.pt'
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    x = torch.randn(1, 3, 96, 128)  # the traced size: graph == eager
    with torch.no_grad():
        for a, b in zip(loaded(x), backbone(x)):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
