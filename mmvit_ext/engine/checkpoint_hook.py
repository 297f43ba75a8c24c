"""``SafeCheckpointHook``: mmengine's ``CheckpointHook`` in the order that never loses a run.

mmengine's hook deletes the oldest kept checkpoint *before* writing the new one, so with
``max_keep_ckpts=1`` a kill or a full disk during the save leaves no checkpoint at all. Here the
new checkpoint is written first (atomically, by ``GuardedRunner``), then ``last_checkpoint`` is
replaced (also atomically), and only then are checkpoints beyond ``max_keep_ckpts`` deleted.
Selected with ``default_hooks.checkpoint.type`` (the project's configs do).
"""
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ..utils.atomic import atomic_write

__all__ = ['SafeCheckpointHook']


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that saves first and deletes old checkpoints after."""

    def _save_checkpoint_with_step(self, runner, step, meta):
        outdated = []
        if self.max_keep_ckpts > 0:
            # mmengine's deque has maxlen=max_keep_ckpts: take the ids out before appending.
            # The kept list goes into the message hub before the save, so a resumed run knows
            # which files are its own to delete.
            ids = list(self.keep_ckpt_ids)
            if not (ids and ids[-1] == step):
                ids.append(step)
            outdated, kept = ids[:-self.max_keep_ckpts], ids[-self.max_keep_ckpts:]
            self.keep_ckpt_ids.clear()
            self.keep_ckpt_ids.extend(kept)
            runner.message_hub.update_info('keep_ckpt_ids', list(kept))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args,
            save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        with atomic_write(pointer) as tmp:
            with open(tmp, 'w') as f:
                f.write(self.last_ckpt)
        for old in outdated:  # only now that the new checkpoint is complete
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed checkpoints are directories
                self.file_backend.rmtree(path)
