"""``GuardedRunner``: mmengine's Runner, strict where it is silent. Selected with
``runner_type = 'GuardedRunner'`` (the project's configs inherit it from
``configs/_base_/guards.py``); each guard is a key of the config's ``guards`` dict and can be
switched off there (``guards = dict(work_dir_lock=False)``), and ``runner_type = 'Runner'``
switches them all off. The component guards (``resume_position``, ``finite_steps``,
``safe_checkpoints``, ``checked_coco``) select the guarded loops, optimizer wrappers, checkpoint
hook and COCO dataset in place of the plain ones (:mod:`.guarded_components`); the others are
this runner's own:

* ``checkpoint_fit``: a checkpoint that does not fit is refused, naming the file, the keys and,
  for our backbones, what it holds ("holds a DGT-T backbone; the config builds DilateFormer-S").
  ``load_from`` in training may differ outside the backbone (fine-tuning with another
  ``num_classes``: the skipped keys are logged); testing (``tools/test.py``, ``mim test``) is
  strict unless ``allow_partial_load = True``; ``--resume`` is always strict. NaN/Inf weights
  and optimizer state are refused.
* ``resume_search``: ``--resume`` without a file takes ``last_checkpoint`` if it points at an
  intact file, else the newest intact checkpoint of the work dir (and says which).
* ``finite_state``: nothing non-finite is written: the weights and optimizer state are checked
  before each save (the loss and gradients before each step by ``FiniteOptimWrapper``); the
  stop message says which checkpoint on disk is the newest good one.
* ``atomic_save``: each checkpoint is written to a temporary file in the work dir, fsynced and
  renamed into place (a symlink there is replaced, not written through); a full disk ends in one
  line with the earlier checkpoints intact.
* ``work_dir_lock``: a second training run in the same work dir is refused.

The resume position inside an epoch is the train loop's (``GuardedEpochBasedTrainLoop``): this
runner stores it in each checkpoint's meta and hands it back on resume.
"""
import copy
import os
import os.path as osp
from typing import Dict

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..checkpoints import (PARTIAL_LOAD_SWITCH, check_checkpoint_fits, check_readable,
                           nonfinite_optimizer_state, nonfinite_tensors, unwrap_model)
from ..errors import ConfigValueError
from ..utils.atomic import atomic_write
from .errors import NonFiniteStateError
from .guarded_components import COMPONENT_GUARDS, select_guarded_components
from .optim_wrappers import plain_param_groups
from .work_dir import (disk_full_error, find_resumable_checkpoint, intact_checkpoint,
                       is_disk_full, on_disk_summary, remove_stale_temp_files,
                       training_run_holding, work_dir_lock)

__all__ = ['GuardedRunner', 'DEFAULT_GUARDS']

DEFAULT_GUARDS: Dict[str, bool] = dict(checkpoint_fit=True, resume_search=True,
                                       finite_state=True, atomic_save=True, work_dir_lock=True,
                                       **{name: True for name in COMPONENT_GUARDS})
POSITION_KEY = 'mmvit_position'


def configured_guards(cfg) -> Dict[str, bool]:
    """The config's ``guards`` over :data:`DEFAULT_GUARDS`, each checked to be a known guard
    set to True or False."""
    configured = dict(cfg.get('guards') or {})
    unknown = sorted(set(configured) - set(DEFAULT_GUARDS))
    if unknown:
        raise ConfigValueError(f'guards: unknown key(s) {unknown}; the guards are '
                               f'{sorted(DEFAULT_GUARDS)} (True or False each)')
    bad = {k: v for k, v in configured.items() if not isinstance(v, bool)}
    if bad:
        raise ConfigValueError(f'guards: {bad} must be True or False')
    return {**DEFAULT_GUARDS, **configured}


def _resume_instead(work_dir: str, refused: str) -> str:
    """Which checkpoint to resume from instead of ``refused``, or that there is none."""
    other = intact_checkpoint(work_dir, refused) if osp.isdir(work_dir) else None
    if other is None:
        return (f'No other checkpoint in {work_dir} is intact: train from scratch, or resume '
                'from a checkpoint of another work dir with --resume FILE.')
    return f'The newest intact one is {other}: resume with --resume {other}.'


def _is_url(name: str) -> bool:
    return '://' in str(name)


@RUNNERS.register_module()
class GuardedRunner(Runner):
    """mmengine's ``Runner`` with the guards above (config: ``guards = dict(name=bool)``)."""

    @classmethod
    def from_cfg(cls, cfg) -> 'GuardedRunner':
        cfg = copy.deepcopy(cfg)
        select_guarded_components(cfg, configured_guards(cfg))
        return super().from_cfg(cfg)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guards = configured_guards(self.cfg or {})
        self._load_mode = 'finetune'
        self._resumed_position = None

    # ------------------------------------------------------------------------- loading
    def load_or_resume(self) -> None:
        if (not self._has_loaded and self._resume and self._load_from is None
                and self.guards['resume_search']):
            found = find_resumable_checkpoint(self.work_dir)
            if found is None:
                self.logger.info(f'--resume: no checkpoint in {self.work_dir} yet, training '
                                 'starts from scratch')
                self._resume = False
            else:
                self.logger.info(f'Auto resumed from the latest checkpoint {found}.')
                self._load_from = found
        super().load_or_resume()

    def load_checkpoint(self, filename, map_location='cpu', strict=False,
                        revise_keys=[(r'^module.', '')]):  # noqa: B006 (mmengine's API)
        if not self.guards['checkpoint_fit']:
            return super().load_checkpoint(filename, map_location, strict, revise_keys)
        from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model
        if not _is_url(filename) and osp.isfile(filename):
            check_readable(filename)
        checkpoint = _load_checkpoint(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        mode = self._load_mode
        if mode == 'resume':
            bad = nonfinite_optimizer_state(checkpoint.get('optimizer', {}))
            if bad:
                raise NonFiniteStateError(
                    f'--resume: checkpoint {filename} holds NaN/Inf optimizer state in '
                    f'{len(bad)} tensors ({", ".join(bad[:4])}); it was saved after training '
                    'diverged. ' + _resume_instead(self.work_dir, filename))
            self._resumed_position = (checkpoint.get('meta') or {}).get(POSITION_KEY)
        elif (self.cfg or {}).get(PARTIAL_LOAD_SWITCH, False):
            mode = 'partial'
        fitting = check_checkpoint_fits(self.model, checkpoint, filename,
                                        'strict' if strict else mode, revise_keys)
        checkpoint = dict(checkpoint, state_dict=fitting)
        checkpoint = _load_checkpoint_to_model(unwrap_model(self.model), checkpoint, strict,
                                               revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def resume(self, filename, resume_optimizer=True, resume_param_scheduler=True,
               map_location='default'):
        previous, self._load_mode = self._load_mode, 'resume'
        try:
            super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)
        finally:
            self._load_mode = previous
        # the sampler was built before resume restored the seed: give it the run's seed, so
        # that the resumed epoch visits the images in the interrupted run's order
        seed = self._randomness_cfg.get('seed')
        loader = getattr(self.train_loop, 'dataloader', None)
        for sampler in (getattr(loader, 'sampler', None),
                        getattr(getattr(loader, 'batch_sampler', None), 'sampler', None)):
            if seed is not None and hasattr(sampler, 'seed'):
                sampler.seed = seed
        restore = getattr(self.train_loop, 'restore_position', None)
        if restore is not None:
            restore(self._resumed_position, filename)

    # ------------------------------------------------------------------------- the config dump
    def dump_config(self) -> None:
        """mmengine writes the config into the work dir when the runner is built; here it is
        written once this run may use the work dir (:meth:`_write_config`): a run refused by
        the lock never rewrites the config of the run that holds it."""
        self._config_written = False

    def _write_config(self) -> None:
        """The config into the work dir, atomically (never through a symbolic link)."""
        from mmengine.dist import is_main_process
        if getattr(self, '_config_written', False) or not is_main_process():
            return
        name = osp.basename(self.cfg.filename) if self.cfg.filename else f'{self.timestamp}.py'
        os.makedirs(self.work_dir, exist_ok=True)
        with atomic_write(osp.join(self.work_dir, name)) as tmp:
            with open(tmp, 'w') as f:
                f.write(self.cfg.dump())
        self._config_written = True

    def _test_or_val(self, run):
        holder = training_run_holding(self.work_dir) if self.guards['work_dir_lock'] else None
        if holder is None:
            self._write_config()
        else:
            self.logger.info(f'{self.work_dir} is used by a training run ({holder}): its config '
                             'dump is left as it is')
        previous = self._load_mode
        self._load_mode = 'partial' if (self.cfg or {}).get(PARTIAL_LOAD_SWITCH) else 'strict'
        try:
            return run()
        finally:
            self._load_mode = previous

    def test(self):
        return self._test_or_val(super().test)

    def val(self):
        return self._test_or_val(super().val)

    # ------------------------------------------------------------------------- training
    def build_optim_wrapper(self, optim_wrapper):
        built = super().build_optim_wrapper(optim_wrapper)
        if self.cfg.get('compile'):  # dynamo cannot step an optimizer with ConfigDict groups
            plain_param_groups(built)
        watch = getattr(built, 'watch_losses', None)  # FiniteOptimWrapper: name the loss terms
        if callable(watch):
            watch(unwrap_model(self.model))
        return built

    def train(self):
        from mmengine.dist import is_main_process
        lock = self.guards['work_dir_lock'] and is_main_process()
        try:
            if lock:
                with work_dir_lock(self.work_dir):
                    removed = remove_stale_temp_files(self.work_dir)
                    if removed:
                        self.logger.info(f'removed {len(removed)} temporary file(s) of '
                                         f'interrupted saves: {", ".join(removed)}')
                    self._write_config()
                    return super().train()
            self._write_config()
            return super().train()
        except NonFiniteStateError as e:
            if 'newest intact checkpoint' in str(e) or 'No checkpoint of this run' in str(e):
                raise
            raise NonFiniteStateError(f'{e} {on_disk_summary(self.work_dir)}') from e

    # ------------------------------------------------------------------------- saving
    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True,
                        save_param_scheduler=True, meta=None, by_epoch=True, backend_args=None):
        from mmengine.dist import is_main_process
        if not is_main_process():  # mmengine's is master-only too
            return
        meta = dict(meta or {})
        from mmengine.runner import BaseLoop
        position = getattr(self._train_loop, 'position', None) \
            if isinstance(self._train_loop, BaseLoop) else None
        if callable(position):
            meta[POSITION_KEY] = position()
        final = osp.join(out_dir, filename)
        if self.guards['finite_state']:
            self._check_finite_before_save(final, save_optimizer)
        local = backend_args is None and file_client_args is None and not _is_url(out_dir)
        if not (self.guards['atomic_save'] and local):
            return super().save_checkpoint(out_dir, filename, file_client_args, save_optimizer,
                                           save_param_scheduler, meta, by_epoch, backend_args)
        try:
            with atomic_write(final) as tmp:  # mmengine saves under the temporary name
                super().save_checkpoint(out_dir, osp.basename(tmp), None, save_optimizer,
                                        save_param_scheduler, meta, by_epoch, None)
        except OSError as e:
            if is_disk_full(e):
                raise disk_full_error(final, e) from e
            raise

    def _check_finite_before_save(self, path: str, save_optimizer: bool) -> None:
        weights = nonfinite_tensors(unwrap_model(self.model).state_dict())
        state = nonfinite_optimizer_state(self.optim_wrapper.state_dict()) \
            if save_optimizer and hasattr(self.optim_wrapper, 'state_dict') else []
        if weights or state:
            what = []
            if weights:
                what.append(f'{len(weights)} weight tensors ({", ".join(weights[:3])})')
            if state:
                what.append(f'{len(state)} optimizer state tensors ({", ".join(state[:3])})')
            raise NonFiniteStateError(
                f'training stopped at iteration {self.iter + 1}: NaN/Inf in '
                f'{" and ".join(what)}; {osp.basename(path)} was not written. '
                f'{on_disk_summary(self.work_dir)} Lower the learning rate or add gradient '
                'clipping (optim_wrapper.clip_grad).')
