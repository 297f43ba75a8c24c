"""Everything about checkpoint files, in one room: what a file is (:mod:`.file_check`), loading
it without running pickled code (:mod:`.allow_list`, :mod:`.safe_load`, and mmengine's loader
schemes in :mod:`.loader_schemes`), where its weights are (:mod:`.keys`), whether they are
finite (:mod:`.finite`) and fit a model (:mod:`.fit`, with words from :mod:`.describe`), and
loading pretrained weights into a backbone strictly (:mod:`.pretrained`).

The backbones, the converters, the training guards and the export tools call it; it knows no
model family (a backbone says what a file holds through ``identify_weights``)."""
from .allow_list import UnsafeCheckpointError
from .describe import backbone_phrase, short_list, unwrap_model, which_backbones
from .file_check import CorruptCheckpointError, check_readable, sniff_checkpoint
from .finite import (NonFiniteCheckpointError, check_finite, nonfinite_optimizer_state,
                     nonfinite_tensors)
from .fit import (BACKBONE_PREFIX, PARTIAL_LOAD_SWITCH, CheckpointMismatchError,
                  check_checkpoint_fits, check_state_dict, describe_mismatch, mismatch_summary)
from .keys import (DEFAULT_STATE_KEYS, backbone_part, strip_prefix, sub_state_dict, tensors_only,
                   unwrap_state_dict)
from .pretrained import load_pretrained, read_checkpoint
from .safe_load import RESAVE_HINT, safe_torch_load

__all__ = ['UnsafeCheckpointError', 'CorruptCheckpointError', 'NonFiniteCheckpointError',
           'CheckpointMismatchError', 'safe_torch_load', 'RESAVE_HINT', 'check_readable',
           'sniff_checkpoint', 'check_finite', 'nonfinite_tensors', 'nonfinite_optimizer_state',
           'check_checkpoint_fits', 'check_state_dict', 'mismatch_summary', 'describe_mismatch',
           'PARTIAL_LOAD_SWITCH', 'BACKBONE_PREFIX', 'DEFAULT_STATE_KEYS', 'unwrap_state_dict',
           'strip_prefix', 'sub_state_dict', 'backbone_part', 'tensors_only', 'load_pretrained',
           'read_checkpoint', 'short_list', 'unwrap_model', 'which_backbones', 'backbone_phrase']
