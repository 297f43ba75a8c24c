"""GuardedRunner, FiniteOptimWrapper and SafeCheckpointHook: nothing non-finite is trained on or
saved, saving never loses or overwrites anything, one work dir holds one run."""
import errno
import os
import os.path as osp
import subprocess

import pytest
import torch

from mmvit_ext.checkpoints import CheckpointMismatchError, safe_torch_load
from mmvit_ext.engine.errors import CheckpointSaveError, NonFiniteStateError, WorkDirLockedError
from mmvit_ext.engine.work_dir import work_dir_lock

from .toy import RecordImageIds, build_runner, toy_config


@pytest.fixture(scope='module')
def coco(small_data):
    return small_data['coco']


def _pths(work_dir):
    return sorted(p for p in os.listdir(work_dir) if p.endswith('.pth'))


@pytest.mark.parametrize('poison', ['loss', 'grad'])
def test_a_non_finite_step_stops_training_before_it_is_saved(poison, coco, tmp_path):
    cfg = toy_config(tmp_path, coco, epochs=2, poison=poison, poison_at=6,
                     checkpoint=dict(by_epoch=False, interval=1))
    what = r'the loss is nan' if poison == 'loss' else \
        r'the loss is finite but the gradients of 1 parameters hold NaN/Inf'
    with pytest.raises(NonFiniteStateError, match=rf'training stopped at iteration 6: {what}.*'
                       r'The newest intact checkpoint in .* is iter_5\.pth'):
        build_runner(cfg).train()
    assert _pths(tmp_path) == [f'iter_{i}.pth' for i in range(1, 6)]
    w = safe_torch_load(str(tmp_path / 'iter_5.pth'))['state_dict']['w']
    assert torch.isfinite(w).all()


def test_non_finite_weights_are_not_saved_and_the_message_names_what_is_on_disk(coco, tmp_path):
    from mmengine.hooks import Hook

    class PoisonWeights(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter == 2:  # the third step's update went wrong
                with torch.no_grad():
                    runner.model.w.fill_(float('inf'))

    cfg = toy_config(tmp_path, coco, epochs=2, checkpoint=dict(by_epoch=False, interval=1))
    runner = build_runner(cfg)
    runner.register_hook(PoisonWeights(), priority='HIGHEST')
    with pytest.raises(NonFiniteStateError, match=r'NaN/Inf in 1 weight tensors \(w\); iter_3\.pth '
                       r'was not written\. The newest intact checkpoint .* is iter_2\.pth'):
        runner.train()
    assert _pths(tmp_path) == ['iter_1.pth', 'iter_2.pth']


def test_non_finite_optimizer_state_is_refused_on_resume(coco, tmp_path):
    cfg = toy_config(tmp_path, coco, epochs=1)
    cfg.optim_wrapper.optimizer = dict(type='Adam', lr=0.01)
    build_runner(cfg).train()
    ckpt = safe_torch_load(str(tmp_path / 'epoch_1.pth'))
    ckpt['optimizer']['state'][0]['exp_avg'][0] = float('nan')
    torch.save(ckpt, tmp_path / 'epoch_1.pth')
    cfg.train_cfg.max_epochs = 2
    with pytest.raises(NonFiniteStateError, match=r'--resume: checkpoint .*epoch_1\.pth holds '
                       r'NaN/Inf optimizer state in 1 tensors \(state\.0\.exp_avg\)'):
        build_runner(cfg, resume=True).train()


def test_amp_wrapper_keeps_the_scalers_skips_and_reports_long_runs():
    """Under fp16 a step the grad scaler skips (it lowers the scale) is no error; 3 in a row
    are reported. mmengine's AmpOptimWrapper refuses to be built without a GPU, so the real
    ``step`` runs here against a scaler that finds an overflow on every step, as GradScaler
    does, and then one that does not."""
    from mmvit_ext.engine.optim_wrappers import FiniteAmpOptimWrapper
    from tests.test_refusals import _logged

    class Scaler:
        def __init__(self, overflow):
            self.scale, self.overflow, self.steps = 2.0**16, overflow, 0

        def is_enabled(self):
            return True

        def get_scale(self):
            return self.scale

        def step(self, optimizer, **kwargs):
            self.steps += 0 if self.overflow else 1

        def update(self, new_scale=None):
            self.scale = self.scale / 2 if self.overflow else self.scale

    wrapper = FiniteAmpOptimWrapper.__new__(FiniteAmpOptimWrapper)
    wrapper.optimizer, wrapper.clip_grad_kwargs, wrapper._scale_update_param = None, {}, None
    wrapper.report_skipped_after, wrapper._skipped = 3, 0
    wrapper.loss_scaler = Scaler(overflow=True)
    with _logged() as log:
        for _ in range(6):
            wrapper.step()
    assert wrapper._skipped == 6 and wrapper.loss_scaler.steps == 0
    assert log.getvalue().count('the grad scaler skipped the last') == 2  # after 3 and 6
    assert 'skipped the last 6 steps in a row' in log.getvalue()
    wrapper.loss_scaler = Scaler(overflow=False)
    wrapper.step()
    assert wrapper._skipped == 0 and wrapper.loss_scaler.steps == 1


def test_a_symlink_in_the_work_dir_is_replaced_not_written_through(coco, tmp_path):
    target = tmp_path / 'precious.txt'
    target.write_text('keep me')
    work = tmp_path / 'w'
    work.mkdir()
    (work / 'epoch_2.pth').symlink_to(target)
    build_runner(toy_config(work, coco, epochs=2)).train()
    assert target.read_text() == 'keep me'
    assert not osp.islink(work / 'epoch_2.pth') and osp.isfile(work / 'epoch_2.pth')
    assert safe_torch_load(str(work / 'epoch_2.pth'))['meta']['epoch'] == 2


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(coco, tmp_path):
    from mmengine.hooks import Hook

    class KillDuringSave(Hook):
        def before_save_checkpoint(self, runner, checkpoint):
            if checkpoint['meta']['epoch'] == 2:
                raise KeyboardInterrupt('killed while writing')

    cfg = toy_config(tmp_path, coco, epochs=3, max_keep_ckpts=1)
    runner = build_runner(cfg)
    runner.register_hook(KillDuringSave())
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert _pths(tmp_path) == ['epoch_1.pth']  # kept: the new one never completed
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.tmp')]
    assert (tmp_path / 'last_checkpoint').read_text().endswith('epoch_1.pth')
    record = RecordImageIds()
    build_runner(cfg, record, resume=True).train()
    assert record.steps[0][0] == 4 and _pths(tmp_path) == ['epoch_3.pth']


def test_disk_full_ends_in_one_message_with_the_previous_checkpoint_intact(coco, tmp_path):
    from mmengine.hooks import Hook

    class FullDisk(Hook):
        def before_save_checkpoint(self, runner, checkpoint):
            if checkpoint['meta']['epoch'] == 2:
                raise OSError(errno.ENOSPC, 'No space left on device')

    runner = build_runner(toy_config(tmp_path, coco, epochs=3, max_keep_ckpts=1))
    runner.register_hook(FullDisk())
    with pytest.raises(CheckpointSaveError, match=r'could not write checkpoint .*epoch_2\.pth: no '
                       r'space left on the device \([\d.]+ MiB free\)\. Nothing was replaced'):
        runner.train()
    assert _pths(tmp_path) == ['epoch_1.pth']


def _close_log_files(under):
    import logging

    from mmengine.logging import MMLogger
    for logger in MMLogger._instance_dict.values():
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler) and \
                    handler.baseFilename.startswith(str(under)):
                handler.close()
                logger.removeHandler(handler)


def _tmpfs(path, size='2m'):
    path.mkdir()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                          capture_output=True, text=True)
    return proc.returncode == 0


def test_disk_full_on_a_real_small_filesystem(coco, tmp_path):
    """Where this machine lets the tests mount a 2 MiB tmpfs (root on the dev/CI machines); on
    others the simulated case above stands alone and this asserts the mount was refused."""
    small = tmp_path / 'small'
    if not _tmpfs(small):
        assert os.geteuid() != 0 or not osp.ismount(small)
        return
    try:
        cfg = toy_config(small, coco, epochs=4, max_keep_ckpts=1)
        cfg.model = dict(type='ImageIdModel', ballast=1_100_000)  # 2 checkpoints do not fit
        with pytest.raises(CheckpointSaveError, match='no space left on the device'):
            build_runner(cfg).train()
        pths = _pths(small)
        assert len(pths) == 1 and safe_torch_load(str(small / pths[0]))['meta']['epoch'] >= 1
        assert not [p for p in os.listdir(small) if p.endswith('.tmp')]
    finally:
        _close_log_files(small)
        subprocess.run(['umount', '-l', str(small)], check=False)


def test_a_second_run_in_the_same_work_dir_is_refused(coco, tmp_path):
    with work_dir_lock(str(tmp_path)):
        with pytest.raises(WorkDirLockedError, match=r'work dir .* is in use by another training '
                           r'run \(pid \d+ on .*\).*its own --work-dir'):
            build_runner(toy_config(tmp_path, coco, epochs=1)).train()
    assert _pths(tmp_path) == []
    build_runner(toy_config(tmp_path, coco, epochs=1)).train()  # the lock file left: no matter
    assert _pths(tmp_path) == ['epoch_1.pth']


def test_a_crashed_runs_lock_does_not_block(coco, tmp_path):
    code = ('import sys, os; sys.path.insert(0, %r); from mmvit_ext.engine.work_dir import '
            'work_dir_lock\nwith work_dir_lock(%r): os._exit(3)' % (osp.dirname(osp.dirname(
                osp.dirname(osp.abspath(__file__)))), str(tmp_path)))
    import sys
    assert subprocess.run([sys.executable, '-c', code]).returncode == 3
    assert osp.isfile(tmp_path / '.train.lock')
    build_runner(toy_config(tmp_path, coco, epochs=1)).train()


def test_resume_of_another_model_is_refused_even_with_allow_partial_load(coco, tmp_path):
    build_runner(toy_config(tmp_path, coco, epochs=1)).train()
    ckpt = safe_torch_load(str(tmp_path / 'epoch_1.pth'))
    ckpt['state_dict'] = {'v': torch.zeros(3)}
    torch.save(ckpt, tmp_path / 'epoch_1.pth')
    cfg = toy_config(tmp_path, coco, epochs=2)
    cfg.allow_partial_load = True
    with pytest.raises(CheckpointMismatchError, match=r'does not fit .*A resumed run must continue '
                       'the same model'):
        build_runner(cfg, resume=True).train()


def test_the_guards_fragment_selects_each_guarded_component_and_each_switches_off_in_one_line():
    """configs/_base_/guards.py, inherited by every config: GuardedRunner puts the guarded loop,
    optimizer wrapper, checkpoint hook and COCO dataset in place of the plain ones (through
    dataset wrappers too); `guards = dict(NAME=False)` keeps the plain one; an unknown guard or a
    value that is not a bool is refused."""
    import copy

    from mmengine.config import Config

    from mmvit_ext.engine.guarded_components import select_guarded_components
    from mmvit_ext.engine.runner import configured_guards
    from mmvit_ext.errors import ConfigValueError

    from ..conftest import REPO

    def chosen(cfg):
        cfg = copy.deepcopy(cfg)
        select_guarded_components(cfg, configured_guards(cfg))
        dataset = cfg.train_dataloader.dataset
        while 'dataset' in dataset:
            dataset = dataset.dataset
        return (cfg.train_cfg.type, cfg.optim_wrapper.type, cfg.default_hooks.checkpoint.type,
                dataset.type)

    cfg = Config.fromfile(osp.join(REPO, 'configs/dilateformer/'
                                         'mask-rcnn_dilateformer-t_fpn_ms-crop-3x_coco.py'))
    assert cfg.runner_type == 'GuardedRunner'
    assert chosen(cfg) == ('GuardedEpochBasedTrainLoop', 'FiniteOptimWrapper',
                           'SafeCheckpointHook', 'CheckedCocoDataset')
    for guard, position, plain in (('resume_position', 0, 'EpochBasedTrainLoop'),
                                   ('finite_steps', 1, 'OptimWrapper'),
                                   ('safe_checkpoints', 2, 'CheckpointHook'),
                                   ('checked_coco', 3, 'CocoDataset')):
        off = copy.deepcopy(cfg)
        off.merge_from_dict({f'guards.{guard}': False})  # what --cfg-options does
        assert chosen(off)[position] == plain, guard
    for bad, message in ((dict(atomic_sav=False), r"unknown key\(s\) \['atomic_sav'\]"),
                         (dict(work_dir_lock='no'), 'must be True or False')):
        with pytest.raises(ConfigValueError, match=message):
            configured_guards(dict(guards=bad))


def test_a_refused_run_writes_nothing_and_no_write_follows_a_symlink(coco, tmp_path):
    """Run A trains with lr 0.01; run B (lr 0.5) is refused by A's lock and leaves A's config
    dump as it was (it used to rewrite it at build time). Temporary files of interrupted saves
    are removed when a run starts; a lock file that is a symbolic link is refused, its target
    untouched."""
    from mmengine.config import Config

    (tmp_path / 'toy.py').write_text('# the toy config\n')

    def named(cfg, lr):
        cfg = Config(cfg.to_dict(), filename=str(tmp_path / 'toy.py'))  # dump: work_dir/toy.py
        cfg.optim_wrapper.optimizer.lr = lr
        return cfg

    work = tmp_path / 'w'
    build_runner(named(toy_config(work, coco, epochs=1), 0.01)).train()
    assert "lr=0.01" in (work / 'toy.py').read_text()
    with work_dir_lock(str(work)):  # A still training
        with pytest.raises(WorkDirLockedError):
            build_runner(named(toy_config(work, coco, epochs=2), 0.5)).train()
    assert "lr=0.01" in (work / 'toy.py').read_text() and "lr=0.5" not in \
        (work / 'toy.py').read_text()
    stale = work / '.epoch_2.pth.4242.tmp'  # a save killed before its rename
    stale.write_bytes(b'partial')
    build_runner(named(toy_config(work, coco, epochs=2), 0.01), resume=True).train()
    assert not stale.exists() and _pths(work) == ['epoch_1.pth', 'epoch_2.pth']
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep me')
    (work / '.train.lock').unlink()
    (work / '.train.lock').symlink_to(victim)
    with pytest.raises(WorkDirLockedError, match=r'\.train\.lock is a symbolic link'):
        build_runner(named(toy_config(work, coco, epochs=3), 0.01), resume=True).train()
    assert victim.read_text() == 'keep me'


def test_under_compile_the_optimizer_param_groups_are_plain_dicts():
    """mmengine builds param groups as ConfigDicts; dynamo (torch 2.13) cannot step an
    optimizer whose groups are a dict subclass, so with compile=True the runner makes them
    plain dicts: same keys and values, same list."""
    import torch.nn as nn
    from mmengine.config import ConfigDict
    from mmengine.optim import build_optim_wrapper

    from mmvit_ext.engine.optim_wrappers import plain_param_groups

    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    wrapper = build_optim_wrapper(model, ConfigDict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(custom_keys={'1.': dict(decay_mult=0.)})))
    groups = wrapper.optimizer.param_groups
    assert any(type(g) is not dict for g in groups)  # what mmengine builds
    before = [dict(g) for g in groups]
    plain_param_groups(wrapper)
    assert wrapper.optimizer.param_groups is groups
    assert all(type(g) is dict for g in groups) and [dict(g) for g in groups] == before
    model(torch.randn(2, 4)).sum().backward()
    wrapper.update_params(model(torch.randn(2, 4)).sum())  # still steps
