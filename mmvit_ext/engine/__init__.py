"""Training components the project's configs select by type (mmengine's stay as they are):
``GuardedRunner`` (``runner_type``), ``GuardedEpochBasedTrainLoop`` / ``GuardedIterBasedTrainLoop``
(``train_cfg.type``), ``FiniteOptimWrapper`` / ``FiniteAmpOptimWrapper`` (``optim_wrapper.type``),
``SafeCheckpointHook`` (``default_hooks.checkpoint.type``), the layer-decay optimizer
constructor and the step-timer hook."""
from .checkpoint_hook import SafeCheckpointHook
from .ema import SavedEMAHook
from .errors import NonFiniteLossError, NonFiniteStateError
from .hooks import StepTimerHook
from .layer_decay import LayerDecayOptimWrapperConstructor
from .loops import GuardedEpochBasedTrainLoop, GuardedIterBasedTrainLoop
from .optim_wrappers import FiniteAmpOptimWrapper, FiniteOptimWrapper
from .runner import GuardedRunner
from .schedulers import TimmCosineLR

__all__ = ['LayerDecayOptimWrapperConstructor', 'StepTimerHook', 'GuardedRunner',
           'GuardedEpochBasedTrainLoop', 'GuardedIterBasedTrainLoop', 'FiniteOptimWrapper',
           'FiniteAmpOptimWrapper', 'SafeCheckpointHook', 'NonFiniteStateError',
           'NonFiniteLossError', 'SavedEMAHook', 'TimmCosineLR']
