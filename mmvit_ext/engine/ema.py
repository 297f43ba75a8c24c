"""An exponential moving average of the weights that is kept and saved but not evaluated, as in
the DeiT-style training scripts (DilateFormer's official ``main.py``: ``model_ema`` is updated
and saved; validation scores the raw model)."""
from mmengine.hooks import EMAHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SavedEMAHook(EMAHook):
    """mmengine's ``EMAHook`` without the swaps: validation and testing run the raw weights, a
    checkpoint's ``state_dict`` holds the raw weights and ``ema_state_dict`` the average (keys
    ``module.`` + the model's); resuming restores both. To train and score the average instead,
    select mmengine's ``EMAHook``, which swaps it in for validation and saves it as
    ``state_dict``."""

    def before_val_epoch(self, runner) -> None:
        pass

    def after_val_epoch(self, runner, metrics=None) -> None:
        pass

    def before_test_epoch(self, runner) -> None:
        pass

    def after_test_epoch(self, runner, metrics=None) -> None:
        pass

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['ema_state_dict'] = self.ema_model.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'ema_state_dict' in checkpoint and runner._resume:
            self.ema_model.load_state_dict(checkpoint['ema_state_dict'],
                                           strict=self.strict_load)
        else:  # a fresh average from the loaded weights, as mmengine's hook starts one
            super().after_load_checkpoint(runner, checkpoint)
