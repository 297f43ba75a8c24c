from .hooks import StepTimerHook
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor', 'StepTimerHook']
