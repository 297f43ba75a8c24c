"""``frozen_stages`` with ``norm_eval`` under 2-process DDP, per family (mmdet users hit
"Expected to have finished reduction" with Swin's frozen stages: mmdet #8724, #12345).

The model is wrapped before ``train()`` first runs, as mmengine's Runner does, with
``find_unused_parameters=False``. It must train; the frozen weights and every BatchNorm
statistic stay bit-identical, the rest moves, and both ranks hold the same weights."""
import json
import socket
import subprocess
import sys

import pytest

from ..conftest import REPO, run_env
from .frozen_ddp import SMALL_ARCHS


@pytest.mark.dist
@pytest.mark.parametrize('family', sorted(SMALL_ARCHS))
def test_frozen_stages_and_norm_eval_train_under_ddp(family, tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(run_env(), OMP_NUM_THREADS='1')
    procs = [subprocess.Popen([sys.executable, '-m', 'tests.test_models.frozen_ddp', str(rank),
                               '2', str(port), family, str(tmp_path)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), '\n'.join(o[-3000:] for o in outputs)
    for rank in (0, 1):
        result = json.loads((tmp_path / f'{family}_rank{rank}.json').read_text())
        assert result['frozen'] > 0
        assert result['frozen_changed'] == [] and result['frozen_requiring_grad'] == []
        assert result['bn_stats_changed'] == []  # norm_eval (and frozen stages: eval mode)
        assert result['trainable_moved'] == result['trainable'] > 0
        assert result['ranks_equal']
