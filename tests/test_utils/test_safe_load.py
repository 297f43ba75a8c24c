import os

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import CheckpointLoader, load_checkpoint

from mmvit_ext.utils.safe_load import UnsafeCheckpointError


class _RunsCommandOnLoad:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_runner_style_checkpoint_loads_without_env_var(tmp_path):
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    hub = MessageHub.get_instance('safe_load_test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/lr', np.float64(1e-3))
    model = torch.nn.Linear(3, 2)
    ckpt = dict(meta=dict(epoch=3, iter=48, seed=np.int64(7), dataset_meta=dict(classes=('a', ))),
                state_dict=model.state_dict(), message_hub=hub.state_dict(),
                optimizer=torch.optim.AdamW(model.parameters()).state_dict())
    path = tmp_path / 'epoch_3.pth'
    torch.save(ckpt, path)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert loaded['meta']['iter'] == 48
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 0.5
    other = torch.nn.Linear(3, 2)
    load_checkpoint(other, str(path))
    assert torch.equal(other.weight, model.weight)


def test_checkpoint_that_runs_a_command_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), x=_RunsCommandOnLoad(marker)), path)
    with pytest.raises(UnsafeCheckpointError, match='allow-list'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(torch.nn.Linear(1, 1), str(path))
    assert not marker.exists()
    # protection is not switched off globally either
    with pytest.raises(Exception):
        torch.load(path)
    assert not marker.exists()


def test_getattr_is_restricted(tmp_path):
    from mmengine.logging import HistoryBuffer

    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    path = tmp_path / 'sneaky.pth'
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path))


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(FileNotFoundError, match='downloaded by hand'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nope.pth'))
