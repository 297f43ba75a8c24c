"""Train loops whose resume is exact or refused. Selected with ``train_cfg.type`` (the project's
configs do); mmengine's own loops are untouched.

``GuardedEpochBasedTrainLoop`` iterates every epoch exactly as mmengine's ``EpochBasedTrainLoop``
does (the dataloader to its end, so batch samplers such as mmdet's ``AspectRatioBatchSampler``
finish their epoch), and keeps count of the batches trained in the current epoch. ``position()``
goes into each checkpoint's meta; on resume ``restore_position`` continues:

* at the next batch of the interrupted epoch, skipping the batches already trained on (the
  sampler gets the run's seed back, so they come in the same order);
* at the next epoch when the checkpoint was saved at an epoch's end (epoch or iteration
  checkpoints alike);
* at the next epoch boundary, saying so, when the batches per epoch, the batch size, the number
  of processes or the dataset size changed since the checkpoint (the old position means other
  images now);

and refuses in one line when ``max_epochs`` is already reached. ``GuardedIterBasedTrainLoop``
does the same for iteration-based schedules, where there is no epoch boundary to fall back to:
a changed batch size, world size or dataset is refused.
"""
from typing import Dict, Optional

from mmengine.dist import get_world_size
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from .errors import ResumeError

__all__ = ['GuardedEpochBasedTrainLoop', 'GuardedIterBasedTrainLoop', 'data_signature']


def data_signature(dataloader) -> Dict[str, int]:
    """What decides which images a batch index stands for."""
    batch_size = getattr(dataloader, 'batch_size', None)
    if batch_size is None:  # a batch sampler (AspectRatioBatchSampler, ...)
        batch_size = getattr(getattr(dataloader, 'batch_sampler', None), 'batch_size', None)
    return dict(batches_per_epoch=len(dataloader), batch_size=int(batch_size or 0),
                world_size=get_world_size(), dataset_size=len(dataloader.dataset))


def _nothing_left(unit: str, done: int, key: str, limit: int, more: int) -> ResumeError:
    return ResumeError(
        f'nothing left to train: the resumed checkpoint ends at {unit} {done} and '
        f'train_cfg.{key} is {limit}. To train longer, raise it, e.g. --cfg-options '
        f'train_cfg.{key}={done + more}.')


def _describe_change(old: Dict, new: Dict) -> str:
    names = dict(batch_size='batch size per process', world_size='processes',
                 dataset_size='images in the training set', batches_per_epoch='batches per epoch')
    return ', '.join(f'{names[k]} {old.get(k)} -> {new[k]}' for k in names
                     if k in old and old.get(k) != new[k])


@LOOPS.register_module()
class GuardedEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` with an exact resume position (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._batches_done = 0  # batches of the current epoch already trained
        self._skip = 0  # batches of the current epoch to pass over after a resume

    def position(self) -> Dict:
        return dict(epoch=self._epoch, batches_done=self._batches_done,
                    data=data_signature(self.dataloader))

    def restore_position(self, position: Optional[Dict], source: str = 'the checkpoint') -> None:
        logger = self.runner.logger
        now = data_signature(self.dataloader)
        if position is None:
            # a checkpoint without our position (mmengine's Runner wrote it): only an epoch's
            # end is known for sure
            per_epoch = now['batches_per_epoch']
            if self._iter != self._epoch * per_epoch:
                logger.warning(
                    f'{source} holds no position inside its epoch (it was not written by '
                    f'GuardedRunner): training continues at the start of epoch '
                    f'{self._epoch + 1}, as mmengine does')
            return
        epoch, done, then = position['epoch'], position['batches_done'], position['data']
        if done >= then['batches_per_epoch']:
            self._epoch, self._skip = epoch + 1, 0
        elif done == 0:
            self._epoch, self._skip = epoch, 0
        elif then == now:
            self._epoch, self._skip = epoch, done
            logger.info(f'resuming inside epoch {epoch + 1}: skipping its first {done} of '
                        f'{now["batches_per_epoch"]} batches (already trained on)')
        else:
            self._epoch, self._skip = epoch + 1, 0
            logger.warning(
                f'the training data changed since {source} ({_describe_change(then, now)}): '
                f'batch {done} of epoch {epoch + 1} no longer names the same images, so the rest '
                f'of that epoch ({then["batches_per_epoch"] - done} of its '
                f'{then["batches_per_epoch"]} batches) is not trained; training continues at '
                f'the start of epoch {epoch + 2}')

    def run(self):
        if self._epoch >= self._max_epochs:
            raise _nothing_left('epoch', self._epoch, 'max_epochs', self._max_epochs, 1)
        return super().run()

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        skip, self._skip = self._skip, 0
        for idx, data_batch in enumerate(self.dataloader):
            if idx < skip:
                continue
            self._batches_done = idx + 1
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
        self._batches_done = 0


@LOOPS.register_module()
class GuardedIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` whose resume refuses a changed data layout and a finished run."""

    def position(self) -> Dict:
        return dict(iter=self._iter, data=data_signature(self.dataloader))

    def restore_position(self, position: Optional[Dict], source: str = 'the checkpoint') -> None:
        if position is None:
            return
        now = data_signature(self.dataloader)
        then = dict(position['data'])
        then.pop('batches_per_epoch', None)
        now_cmp = {k: v for k, v in now.items() if k != 'batches_per_epoch'}
        if then != now_cmp:
            raise ResumeError(
                f'--resume: {source} was saved with other training data '
                f'({_describe_change(then, now)}); an iteration-based schedule cannot find its '
                'place in the data then. Resume with the same batch size, number of processes '
                'and dataset, or start a new run with load_from.')

    def run(self):
        if self._iter >= self._max_iters:
            raise _nothing_left('iteration', self._iter, 'max_iters', self._max_iters, 1000)
        return super().run()
