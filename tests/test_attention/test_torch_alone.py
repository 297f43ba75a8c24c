"""The attention operators with torch alone: no OpenMMLab package importable (both stacks)."""
import subprocess
import sys

from ..conftest import REPO, run_env

ATTENTION_ALONE = r'''
import sys


class NoOpenMMLab:
    """Every mm* import fails, as in an environment without the OpenMMLab stack."""

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'):
            raise ImportError(f'{name} is not installed here')


sys.meta_path.insert(0, NoOpenMMLab())
import torch
import torch.nn as nn

import mmvit_ext
from mmvit_ext.attention import (DynamicGroupAttention, HybridScaleAttention,
                                 MultiScaleDilatedAttention, QnAAttention, SelfGuidedAttention,
                                 attention_form)
from mmvit_ext.attention.sg import DEFAULT_MERGE_GROUPS

# the README's lines: MSDA in a plain PyTorch model
class Block(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.norm = nn.LayerNorm(dims)
        self.attn = MultiScaleDilatedAttention(dims, num_heads=4, dilations=(1, 2))

    def forward(self, x):  # (B, H, W, C)
        return x + self.attn(self.norm(x))


torch.manual_seed(0)
significance = torch.rand(2, 9, 11)
checks = {
    'MSDA': (Block(32), lambda m, x: m(x), torch.randn(2, 9, 11, 32)),
    'QnA': (QnAAttention(32, 32, 4, kernel_size=3), lambda m, x: m(x), torch.randn(2, 9, 11, 32)),
    'SG-Former H': (HybridScaleAttention(32, 4, sr_ratio=2),
                    lambda m, x: m(x, (9, 11))[0], torch.randn(2, 99, 32)),
    'SG-Former G': (SelfGuidedAttention(32, 4, DEFAULT_MERGE_GROUPS[1]),
                    lambda m, x: m(x, (9, 11), significance), torch.randn(2, 99, 32)),
    'DG-Attention': (DynamicGroupAttention(32, 4, num_groups=3, topk=20),
                     lambda m, x: m(x), torch.randn(2, 99, 32)),
}
for name, (module, run, x) in checks.items():
    x.requires_grad_()
    out = run(module, x)
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), name
    assert any(p.grad is not None for p in module.parameters()), name
    with torch.no_grad(), attention_form('reference'):
        ref = run(module, x)
    assert torch.allclose(out, ref, atol=1e-4), name
    print(f'{name}: forward, backward and reference ok')
assert not [m for m in sys.modules if m.split('.')[0] in ('mmengine', 'mmcv', 'mmdet', 'mmseg',
                                                          'mmpretrain')]
try:
    import mmvit_ext.models  # noqa: F401
except ImportError as e:
    print(f'mmvit_ext.models needs the stack: {e}')
'''


def test_the_four_attentions_run_with_torch_alone():
    """In a process where importing any mm* package fails: ``import mmvit_ext`` and the
    attention package import, and each of the four attentions (and MSDA inside a plain PyTorch
    block, as the README shows) runs forward and backward and matches its reference form."""
    proc = subprocess.run([sys.executable, '-c', ATTENTION_ALONE], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ('MSDA', 'QnA', 'SG-Former H', 'SG-Former G', 'DG-Attention'):
        assert f'{name}: forward, backward and reference ok' in proc.stdout, proc.stdout
    assert 'mmvit_ext.models needs the stack: ' in proc.stdout, proc.stdout


def test_the_readme_lines_run_with_torch_alone():
    """The README's block that puts MSDA and QnA into plain PyTorch code runs as written in a
    process without any OpenMMLab package."""
    import os.path as osp
    import re
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    section = readme.split('## The attention alone, in any PyTorch model', 1)[1]
    block = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    blocker = ATTENTION_ALONE.split('import torch\n', 1)[0]  # the NoOpenMMLab finder
    code = blocker + block + '\nassert y.shape == z.shape == x.shape\nprint("README ok")\n'
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and 'README ok' in proc.stdout, proc.stderr[-3000:]
