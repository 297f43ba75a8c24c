"""Features that need a newer torch say so in one line, never with an AttributeError."""
import re
import subprocess
import sys

import pytest

from mmvit_ext.utils import torch_features
from mmvit_ext.utils.torch_features import FEATURES, UnsupportedTorchError, require

from ..conftest import REPO, run_env


@pytest.mark.parametrize('feature', sorted(FEATURES))
def test_each_feature_is_refused_below_its_version(feature, monkeypatch):
    needed = FEATURES[feature][0]
    monkeypatch.setattr(torch_features, 'torch_version', lambda: (2, 1))
    with pytest.raises(UnsupportedTorchError, match=re.escape(feature) + rf' needs torch >= '
                       rf'{needed[0]}\.{needed[1]} \(.*\); this is torch '):
        require(feature)
    monkeypatch.setattr(torch_features, 'torch_version', lambda: needed)
    require(feature)  # at the version itself: no error


def test_export_tool_on_this_torch():
    """On torch < 2.5 (the oldest stack) the export tool ends in one line naming the version it
    needs; on newer torch the same command gets past that check (and exports)."""
    cmd = [sys.executable, 'tools/deployment/export_onnx.py',
           'configs/_small_/dilateformer-demo_small-imagenet.py', '--backbone', '--shape', '64',
           '64', '--out', '/dev/null']
    if torch_features.torch_version() >= (2, 5):
        import importlib.util
        if importlib.util.find_spec('onnx') is None:
            pytest.fail('the newest stack installs onnx (requirements/deploy.txt)')
        from mmvit_ext.deployment import nms_roi_align  # noqa: F401  (the custom ops exist)
        return
    proc = subprocess.run(cmd, cwd=REPO, env=run_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    assert 'error: whole-model export (our NMS / RoIAlign custom ops) needs torch >= 2.5' in \
        proc.stderr, proc.stderr[-2000:]
