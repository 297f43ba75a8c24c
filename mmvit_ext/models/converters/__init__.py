"""Official checkpoint -> mmvit_ext state dicts (pure functions; tools/model_converters wraps them
with :mod:`.cli`). The key helpers they share live in :mod:`mmvit_ext.checkpoints.keys`."""
from .dilateformer import (convert_dilateformer, infer_dilateformer_arch,
                           is_official_dilateformer, load_official_dilateformer)
from .sgformer import (convert_sgformer, infer_sgformer_arch, is_official_sgformer,
                       load_official_sgformer)

__all__ = [
    'convert_dilateformer', 'is_official_dilateformer', 'load_official_dilateformer',
    'infer_dilateformer_arch', 'convert_sgformer', 'is_official_sgformer',
    'load_official_sgformer', 'infer_sgformer_arch'
]
