"""The refusals of the training components (``GuardedRunner``, the guarded loops,
``FiniteOptimWrapper``, ``SafeCheckpointHook``)."""
from ..errors import Refusal

__all__ = ['NonFiniteStateError', 'NonFiniteLossError', 'ResumeError', 'CheckpointSaveError',
           'WorkDirLockedError']


class NonFiniteStateError(Refusal, FloatingPointError):
    """The loss, the gradients, the weights or the optimizer state became NaN or Inf."""


NonFiniteLossError = NonFiniteStateError  # the name earlier releases raised


class ResumeError(Refusal, RuntimeError):
    """A resume that cannot continue exactly where the run stopped."""


class CheckpointSaveError(Refusal, OSError):
    """A checkpoint could not be written (the previous ones are intact)."""


class WorkDirLockedError(Refusal, RuntimeError):
    """Another training run uses the work dir."""
