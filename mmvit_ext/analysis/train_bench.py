"""Training-iteration benchmark of a detector config through the normal training path.

One case per process (``python -m mmvit_ext.analysis.train_bench --child JSON``): the config is
loaded as ``tools/train.py`` loads it, its training set is pointed at a COCO-format set generated
here (images of 1333x800's aspect ratio, so the config's own ``Resize`` gives 1333x800 inputs),
the schedule becomes a fixed number of iterations without validation or checkpoints, and
:class:`~mmvit_ext.engine.StepTimerHook` times every iteration of ``Runner.train()`` (data
loading, forward, backward, optimiser step). Backbone weights are not loaded (``init_cfg=None``):
speed does not depend on them, and nothing is downloaded.
"""
import argparse
import json
import os
import os.path as osp
import tempfile

__all__ = ['make_bench_coco', 'prepare_config', 'BENCH_IMAGE_SIZE']

# (H, W) with 1333x800's aspect ratio: Resize(scale=(1333, 800), keep_ratio=True) -> 800x1333
BENCH_IMAGE_SIZE = (480, 800)


def make_bench_coco(root: str, num_images: int = 16) -> str:
    """The benchmark's COCO-format set (coloured shapes, polygons), once per root."""
    from ..datasets.small import make_small_coco
    out = osp.join(root, 'small_coco')
    if not osp.isfile(osp.join(out, 'annotations', 'instances_train.json')):
        make_small_coco(root, num_train=num_images, num_val=1, size=BENCH_IMAGE_SIZE, seed=3)
    return out


def _set_resize_scale(pipeline, scale):
    for step in pipeline:
        if step.get('type') in ('Resize', 'mmdet.Resize') and 'scale' in step:
            step['scale'] = tuple(scale)
        for key in ('transforms', ):
            if key in step and isinstance(step[key], list):
                _set_resize_scale(step[key], scale)


def prepare_config(cfg, data_root: str, iters: int, warmup: int, batch: int, workers: int,
                   amp: bool, work_dir: str, out_file: str, scale=None):
    """Turn a training config into a fixed-length timed run on the benchmark set."""
    from ..datasets.small import CLASSES
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # RepeatDataset / ClassBalancedDataset wrappers
        dataset = dataset.dataset
    dataset.data_root = data_root
    dataset.ann_file = 'annotations/instances_train.json'
    dataset.data_prefix = dict(img='train/')
    dataset.metainfo = dict(classes=CLASSES)
    if scale is not None:
        _set_resize_scale(dataset.pipeline, scale)
    cfg.train_dataloader.batch_size = batch
    cfg.train_dataloader.num_workers = workers
    cfg.train_dataloader.persistent_workers = workers > 0
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.train_dataloader.pop('batch_sampler', None)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=warmup + iters, val_interval=10**9)
    for phase in ('val', 'test'):
        for suffix in ('_dataloader', '_cfg', '_evaluator'):
            cfg[phase + suffix] = None
    cfg.param_scheduler = []  # a constant lr: the speed does not depend on it
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**9, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(iters, 1))
    cfg.default_hooks.pop('visualization', None)
    cfg.custom_hooks = [dict(type='StepTimerHook', out_file=out_file, warmup=warmup)]
    backbone = cfg.model.get('backbone', {})
    if backbone.get('init_cfg') is not None:
        backbone.init_cfg = None
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=0)
    cfg.resume, cfg.load_from = False, None
    return cfg


def run_case(case):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmvit_ext  # noqa: F401  (registers models and the hook)
    from ..apis.config_path import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(case['config']))
    with tempfile.TemporaryDirectory() as work_dir:
        out_file = osp.join(work_dir, 'steps.json')
        prepare_config(cfg, case['data_root'], case['iters'], case['warmup'], case['batch'],
                       case['workers'], case['amp'], work_dir, out_file, case.get('scale'))
        Runner.from_cfg(cfg).train()
        with open(out_file) as f:
            return json.load(f)


def run_child(case):
    """One training case in a fresh process: the case with its step times added."""
    if case.get('threads'):
        import torch
        torch.set_num_threads(case['threads'])
    os.environ.setdefault('PYTHONHASHSEED', '0')  # for the processes it starts
    return dict(case, **run_case(case))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--child', required=True)
    print(json.dumps(run_child(json.loads(parser.parse_args().child))))


if __name__ == '__main__':
    main()
