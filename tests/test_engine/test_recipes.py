"""The official ImageNet recipe's pieces that mmengine lacks: timm's per-epoch cosine with the
warm-up inside it (TimmCosineLR) and an EMA that is saved but not scored (SavedEMAHook)."""
import math

import pytest
import torch

from mmvit_ext.checkpoints import safe_torch_load

from ..conftest import REPO
from .toy import build_runner, toy_config


def _zero_metric():
    from mmengine.evaluator import BaseMetric
    from mmengine.registry import METRICS

    @METRICS.register_module(name='ZeroMetricForTests', force=True)
    class ZeroMetric(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results.append(0.)

        def compute_metrics(self, results):
            return dict(zero=0.)


@pytest.fixture
def coco(small_data):
    return small_data['coco']


def _timm_cosine(t, base, t_initial=300, lr_min=1e-5, warmup_t=10, warmup_lr_init=1e-6):
    """timm's CosineLRScheduler._get_lr for one cycle, warmup_prefix False, as documented."""
    if t < warmup_t:
        return warmup_lr_init + t * (base - warmup_lr_init) / warmup_t
    if t >= t_initial:
        return lr_min
    return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * t / t_initial))


@pytest.mark.parametrize('variant', ['t', 's', 'b'])
def test_dilateformer_in1k_schedule_is_the_official_one(variant):
    """300 epochs (not 310), one lr per epoch, equal to timm's cosine at every epoch; the
    average is kept by SavedEMAHook (the raw model is what validation scores)."""
    from mmengine.config import Config
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = Config.fromfile(f'{REPO}/configs/dilateformer/dilateformer-{variant}_8xb128_in1k.py')
    assert cfg.train_cfg.max_epochs == 300
    assert [h['type'] for h in cfg.custom_hooks] == ['SavedEMAHook']
    base = cfg.optim_wrapper.optimizer.lr
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer))
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(cfg.train_cfg.max_epochs):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for s in schedulers:
            s.step()
    expected = [_timm_cosine(t, base) for t in range(300)]
    assert max(abs(a - b) for a, b in zip(lrs, expected)) < 1e-12
    assert lrs[0] == pytest.approx(1e-6) and lrs[9] < base < lrs[9] * 1.2


def test_timm_cosine_refuses_a_warmup_past_the_cycle():
    from mmvit_ext.engine import TimmCosineLR
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.)
    with pytest.raises(ValueError, match='0 <= warmup_epochs < t_initial'):
        TimmCosineLR(optimizer, t_initial=10, warmup_epochs=10)


def test_saved_ema_hook_scores_the_raw_model_and_saves_both(coco, tmp_path):
    """Validation runs the raw weights; the checkpoint's state_dict is raw and ema_state_dict
    the average; a resumed run restores the average (mmengine's EMAHook would have validated
    and saved the average instead)."""
    from mmengine.hooks import Hook
    cfg = toy_config(tmp_path / 'w', coco, epochs=2)
    cfg.custom_hooks = [dict(type='SavedEMAHook', momentum=0.5)]
    seen = []

    class Probe(Hook):
        def before_val_epoch(self, runner):
            seen.append(runner.model.w.detach().clone())
    cfg.val_dataloader = cfg.train_dataloader
    cfg.val_cfg = dict(type='ValLoop')
    _zero_metric()
    cfg.val_evaluator = dict(type='ZeroMetricForTests')
    cfg.train_cfg.val_interval = 1
    runner = build_runner(cfg)
    runner.register_hook(Probe(), priority='LOWEST')
    runner.train()
    raw = runner.model.w.detach().clone()
    ckpt = safe_torch_load(str(tmp_path / 'w' / 'epoch_2.pth'), map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], raw)
    assert torch.equal(seen[-1], raw)  # validation saw the raw weights
    ema = ckpt['ema_state_dict']['module.w']
    assert not torch.allclose(ema, raw)
    cfg2 = toy_config(tmp_path / 'w', coco, epochs=3)
    cfg2.custom_hooks = [dict(type='SavedEMAHook', momentum=0.5)]
    runner2 = build_runner(cfg2, resume=True)
    runner2.call_hook('before_run')  # builds the average, as train() does before resuming
    runner2.load_or_resume()
    [hook] = [h for h in runner2.hooks if type(h).__name__ == 'SavedEMAHook']
    assert torch.equal(hook.ema_model.module.w, ema)
    assert torch.equal(runner2.model.w, raw)
