"""The guarded train loops: every image once per epoch, and a resume that is exact or refused.

Each case is checked against an uninterrupted run (and, for the plain iteration, against
mmengine's own loop on the same seed), logging which image ids every step trained on.
"""
import os.path as osp
from collections import Counter

import pytest

from mmvit_ext.engine.errors import ResumeError

from .toy import RecordImageIds, build_runner, toy_config


@pytest.fixture(scope='module')
def coco(small_data):
    return small_data['coco']


def _newest_log(work_dir):
    logs = sorted(work_dir.glob('*/*.log'), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text()


def _epochs(steps, per_epoch):
    ids = [i for _, batch in steps for i in batch]
    size = per_epoch
    return [ids[k:k + size] for k in range(0, len(ids), size)]


@pytest.mark.parametrize('sampler,aspect_ratio', [('DefaultSampler', False),
                                                  ('DefaultSampler', True)],
                         ids=['DefaultSampler', 'AspectRatioBatchSampler'])
def test_every_image_exactly_once_per_epoch_as_mmengine_iterates(sampler, aspect_ratio, coco,
                                                                 tmp_path):
    runs = {}
    for guarded in (True, False):
        record = RecordImageIds()
        cfg = toy_config(tmp_path / str(guarded), coco, epochs=4, sampler=sampler,
                         aspect_ratio=aspect_ratio, guarded=guarded)
        build_runner(cfg, record).train()
        runs[guarded] = record.steps
    assert runs[True] == runs[False]  # the same batches as mmengine's own loop, same seed
    for epoch in _epochs(runs[True], 8):
        assert sorted(epoch) == list(range(1, 9)), epoch  # 8 images, each once
    # and the epochs are shuffled differently (the sampler's epoch seed is used)
    assert len({tuple(e) for e in _epochs(runs[True], 8)}) > 1


def test_infinite_sampler_iterates_as_mmengine_does(coco, tmp_path):
    runs = {}
    for guarded in (True, False):
        record = RecordImageIds()
        cfg = toy_config(tmp_path / str(guarded), coco, iters=12, sampler='InfiniteSampler',
                         guarded=guarded)
        build_runner(cfg, record).train()
        runs[guarded] = record.steps
    assert runs[True] == runs[False]
    for block in _epochs(runs[True], 8):  # InfiniteSampler: one permutation per 8 images
        assert sorted(block) == list(range(1, 9))


# case -> (how the first run saves and stops, how the resumed run differs, what is expected)
RESUME_CASES = {
    'inside an epoch, iteration checkpoints': (
        dict(checkpoint=dict(by_epoch=False, interval=1), stop_after=6), {}, 'exact'),
    'at an epoch boundary, iteration checkpoint': (
        dict(checkpoint=dict(by_epoch=False, interval=4), stop_after=5), {}, 'exact'),
    'at an epoch boundary, epoch checkpoint': (
        dict(checkpoint=dict(by_epoch=True, interval=1), stop_after=6), {}, 'exact'),
    'inside an epoch, batch size changed': (
        dict(checkpoint=dict(by_epoch=False, interval=1), stop_after=6), dict(batch_size=4),
        'next epoch'),
    'max_epochs already reached': (
        dict(checkpoint=dict(by_epoch=True, interval=1)), dict(epochs=2), 'refused'),
}


@pytest.mark.parametrize('case', sorted(RESUME_CASES))
def test_resume_is_exact_or_refused(case, coco, tmp_path):
    first, changed, expected = RESUME_CASES[case]
    full = RecordImageIds()
    build_runner(toy_config(tmp_path / 'full', coco, epochs=3), full).train()

    work = tmp_path / 'cut'
    stop_after = first.get('stop_after')
    cut = RecordImageIds(stop_after=stop_after)
    runner = build_runner(toy_config(work, coco, epochs=3, checkpoint=first['checkpoint']), cut)
    if stop_after is None:
        runner.train()
    else:
        with pytest.raises(KeyboardInterrupt):
            runner.train()
    resumed = RecordImageIds()
    options = dict(epochs=3)
    options.update(changed)
    runner = build_runner(toy_config(work, coco, seed=None, **options), resumed, resume=True)
    if expected == 'refused':
        with pytest.raises(ResumeError, match=r'nothing left to train: the resumed checkpoint '
                           r'ends at epoch 3 and train_cfg.max_epochs is 2'):
            runner.train()
        return
    runner.train()
    done = runner.iter
    if expected == 'exact':
        # the interrupted run's last checkpoint, then exactly the uninterrupted run's steps
        start = resumed.steps[0][0]
        assert cut.steps[:start] == full.steps[:start]
        assert resumed.steps == full.steps[start:], (case, start)
        assert done == 12
        # every image of every epoch trained exactly once over both runs
        combined = Counter(i for _, b in cut.steps[:start] + resumed.steps for i in b)
        assert combined == Counter({i: 3 for i in range(1, 9)})
    else:  # the data changed: the rest of epoch 2 is not trained, epoch 3 runs in full
        assert [len(b) for _, b in resumed.steps] == [4, 4]
        assert sorted(i for _, b in resumed.steps for i in b) == list(range(1, 9))
        assert 'batch size per process 2 -> 4' in _newest_log(work)


def test_a_changed_batch_size_is_said_in_the_log(coco, tmp_path):
    work = tmp_path / 'w'
    runner = build_runner(toy_config(work, coco, epochs=3,
                                     checkpoint=dict(by_epoch=False, interval=1)),
                          RecordImageIds(stop_after=6))
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    build_runner(toy_config(work, coco, epochs=3, batch_size=4), resume=True).train()
    log = _newest_log(work)
    assert ('the training data changed since' in log and 'batch size per process 2 -> 4' in log
            and 'batch 2 of epoch 2 no longer names the same images, so the rest of that epoch '
                '(2 of its 4 batches) is not trained; training continues at the start of epoch 3'
            in log), log


def test_iteration_schedule_resumes_exactly_and_refuses_other_data(coco, tmp_path):
    full = RecordImageIds()
    build_runner(toy_config(tmp_path / 'full', coco, iters=10, sampler='InfiniteSampler'),
                 full).train()
    work = tmp_path / 'cut'
    cut = RecordImageIds(stop_after=7)
    with pytest.raises(KeyboardInterrupt):
        build_runner(toy_config(work, coco, iters=10, sampler='InfiniteSampler'), cut).train()
    resumed = RecordImageIds()
    build_runner(toy_config(work, coco, iters=10, sampler='InfiniteSampler', seed=None),
                 resumed, resume=True).train()
    assert resumed.steps == full.steps[7:]
    with pytest.raises(ResumeError, match=r'batch size per process 2 -> 4.*cannot find its '
                       'place'):
        build_runner(toy_config(work, coco, iters=20, sampler='InfiniteSampler', batch_size=4),
                     resume=True).train()
    with pytest.raises(ResumeError, match='nothing left to train.*iteration 10 and '
                       'train_cfg.max_iters is 10'):
        build_runner(toy_config(work, coco, iters=10, sampler='InfiniteSampler'),
                     resume=True).train()
    assert osp.isfile(work / 'iter_10.pth')


def _dist_run(config, work, ids_dir, stop_at=None, resume=False):
    import socket
    import subprocess
    import sys

    from ..conftest import REPO, run_env
    cfg = config.copy()
    cfg.custom_imports = dict(imports=['tests.test_engine.toy'], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='ImageIdLogHook', out_dir=str(ids_dir), stop_at=stop_at)]
    path = work.parent / f'{work.name}_{ids_dir.name}.py'
    cfg.dump(str(path))
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = run_env()
    env.update(PYTHON=sys.executable, PORT=str(port), OMP_NUM_THREADS='1')
    cmd = ['bash', 'tools/dist_train.sh', str(path), '2', '--work-dir', str(work)]
    proc = subprocess.run(cmd + (['--resume'] if resume else []), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc


def _rank_steps(ids_dir, rank):
    path = ids_dir / f'rank{rank}.txt'
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines()]


@pytest.mark.dist
def test_two_processes_see_every_image_once_per_epoch_across_a_resume(coco, tmp_path):
    """2 gloo processes, DefaultSampler (4 images each), batch 2: per epoch both ranks together
    train on the 8 images once; killed inside epoch 2 and resumed, each rank continues with
    exactly the batches of the uninterrupted run."""
    config = toy_config(tmp_path / 'unused', coco, epochs=3,
                        checkpoint=dict(by_epoch=False, interval=1))
    proc = _dist_run(config, tmp_path / 'full', tmp_path / 'ids_full')
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    full = [_rank_steps(tmp_path / 'ids_full', r) for r in (0, 1)]
    assert [len(f) for f in full] == [6, 6]  # 2 iterations per epoch per rank
    for epoch in range(3):
        ids = [i for r in (0, 1) for step in full[r][2 * epoch:2 * epoch + 2] for i in step[1:]]
        assert sorted(ids) == list(range(1, 9)), (epoch, ids)
    proc = _dist_run(config, tmp_path / 'cut', tmp_path / 'ids_cut', stop_at=3)
    assert proc.returncode != 0  # killed after iteration 3 (inside epoch 2) and its checkpoint
    proc = _dist_run(config, tmp_path / 'cut', tmp_path / 'ids_resumed', resume=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for r in (0, 1):
        cut = _rank_steps(tmp_path / 'ids_cut', r)
        resumed = _rank_steps(tmp_path / 'ids_resumed', r)
        assert cut == full[r][:3] and resumed == full[r][3:], (r, cut, resumed)
