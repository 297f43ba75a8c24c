"""A model and a transform that make Runner tests fast: the real small COCO set, mmdet's dataset
and samplers, no images decoded. The model's loss is a function of its two weights only; what a
test looks at is which images each step saw (``img_id``)."""
import torch
import torch.nn as nn
from mmcv.transforms import BaseTransform
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS, MODELS, TRANSFORMS


@TRANSFORMS.register_module(force=True)
class KeepImageId(BaseTransform):
    """Keep only the image id (pseudo_collate then batches a flat list)."""

    def transform(self, results):
        return dict(img_id=results['img_id'])


@MODELS.register_module(force=True)
class ImageIdModel(BaseModel):
    """``loss = |w|^2 * batch``: trains, saves and resumes like any model, in milliseconds."""

    def __init__(self, poison=None, poison_at=None, ballast=0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0]))
        # bytes to make a checkpoint big (a disk-full test), saved with the weights
        self.register_buffer('ballast', torch.zeros(ballast // 4))
        self.poison, self.poison_at = poison, poison_at
        self.calls = 0

    def forward(self, img_id=None, mode='loss', **kwargs):
        self.calls += 1
        loss = (self.w ** 2).sum() * len(img_id)
        if self.poison_at is not None and self.calls == self.poison_at:
            if self.poison == 'loss':
                loss = loss * float('nan')
            elif self.poison == 'grad':  # a finite loss whose gradient is NaN
                loss = loss + torch.sqrt(self.w[0] - self.w[0])  # 0, gradient inf - inf
        if mode == 'predict':  # one result per image, for a validation loop
            return [dict(loss=float(loss)) for _ in img_id]
        return dict(loss=loss)


def toy_config(work_dir, coco_root, *, epochs=3, batch_size=2, sampler='DefaultSampler',
               aspect_ratio=False, iters=None, checkpoint=None, seed=7, poison=None,
               poison_at=None, guarded=True, max_keep_ckpts=-1):
    """A Runner config over the small COCO training set (8 images)."""
    from mmengine.config import Config
    loader = dict(
        batch_size=batch_size, num_workers=0,
        sampler=dict(type=sampler, shuffle=True),
        collate_fn=dict(type='pseudo_collate'),
        dataset=dict(type='mmdet.CheckedCocoDataset', data_root=coco_root,
                     ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                     metainfo=dict(classes=('square', 'circle', 'triangle')),
                     filter_cfg=dict(filter_empty_gt=True), pipeline=[dict(type='KeepImageId')]))
    if aspect_ratio:
        loader['batch_sampler'] = dict(type='mmdet.AspectRatioBatchSampler')
    if iters is None:
        train_cfg = dict(type='GuardedEpochBasedTrainLoop' if guarded else 'EpochBasedTrainLoop',
                         max_epochs=epochs)
    else:
        train_cfg = dict(type='GuardedIterBasedTrainLoop' if guarded else 'IterBasedTrainLoop',
                         max_iters=iters)
    ckpt = dict(type='SafeCheckpointHook' if guarded else 'CheckpointHook', interval=1,
                by_epoch=iters is None, max_keep_ckpts=max_keep_ckpts)
    ckpt.update(checkpoint or {})
    return Config(dict(
        model=dict(type='ImageIdModel', poison=poison, poison_at=poison_at),
        work_dir=str(work_dir), train_dataloader=loader, train_cfg=train_cfg,
        optim_wrapper=dict(type='FiniteOptimWrapper' if guarded else 'OptimWrapper',
                           optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=ckpt, logger=dict(type='LoggerHook', interval=1),
                           sampler_seed=dict(type='DistSamplerSeedHook')),
        randomness=dict(seed=seed), env_cfg=dict(dist_cfg=dict(backend='gloo')),
        runner_type='GuardedRunner' if guarded else 'Runner', launcher='none',
        default_scope='mmengine', log_level='WARNING'))


class RecordImageIds:
    """A hook recording ``(iteration, image ids)`` of every step; can stop the run."""

    def __init__(self, stop_after=None):
        self.steps, self.stop_after = [], stop_after

    def as_hook(self):
        from mmengine.hooks import Hook
        hook = Hook()
        hook.priority = 'LOWEST'
        record = self

        def before_train_iter(runner, batch_idx, data_batch=None):
            record.steps.append((runner.iter, tuple(data_batch['img_id'])))

        def after_train_iter(runner, batch_idx, data_batch=None, outputs=None):
            if record.stop_after is not None and runner.iter + 1 == record.stop_after:
                raise KeyboardInterrupt('simulated kill')

        hook.before_train_iter = before_train_iter
        hook.after_train_iter = after_train_iter
        return hook


def build_runner(cfg, record=None, resume=False, load_from=None):
    import uuid

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    cfg = cfg.copy()
    cfg.resume, cfg.load_from = resume, load_from
    # a name of its own: runners built in the same second would otherwise share mmengine's
    # logger and visualizer instances (named by the timestamp), and with them a work dir
    cfg.experiment_name = f'toy-{uuid.uuid4().hex[:8]}'
    runner = RUNNERS.build(cfg) if cfg.runner_type != 'Runner' else Runner.from_cfg(cfg)
    if record is not None:
        runner.register_hook(record.as_hook(), priority='LOWEST')
    return runner


@HOOKS.register_module(force=True)
class ImageIdLogHook(Hook):
    """Appends ``iteration id id ...`` per step to ``out_dir/rank<r>.txt``; ``stop_at``
    ends the process right after that iteration's checkpoint, as a kill would."""
    priority = 'LOWEST'

    def __init__(self, out_dir, stop_at=None):
        self.out_dir, self.stop_at = out_dir, stop_at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        import os

        from mmengine.dist import get_rank
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, f'rank{get_rank()}.txt'), 'a') as f:
            f.write(' '.join(str(i) for i in [runner.iter, *data_batch['img_id']]) + '\n')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.stop_at is not None and runner.iter + 1 == self.stop_at:
            import os

            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized():
                # every rank past this iteration's hooks (rank 0's save included) before any
                # exits: the launcher stops the others as soon as one process ends
                dist.barrier()
            os._exit(3)
