"""Features that need a newer torch than the oldest supported (2.1), refused in one line.

The core (the backbones, training, testing, the converters, checkpoint loading) works from torch
2.1 on; the deployment paths use torch APIs that came later. ``require`` raises
:class:`UnsupportedTorchError` (a refusal: the tools end on it in one ``error:`` line) instead of
an ``AttributeError`` deep inside torch.
"""
import re
from typing import Dict, Tuple

import torch

from ..errors import Refusal

__all__ = ['UnsupportedTorchError', 'FEATURES', 'require', 'torch_version']


class UnsupportedTorchError(Refusal, RuntimeError):
    """A feature that this torch is too old for."""


#: feature -> (oldest torch, the API it needs)
FEATURES: Dict[str, Tuple[Tuple[int, int], str]] = {
    'whole-model export (our NMS / RoIAlign custom ops)': (
        (2, 5), 'torch.library.custom_op (2.4) and torch.onnx.export(dynamo=...) (2.5)'),
    'torch.export with free height and width': (
        (2, 5), 'torch.export.Dim with strict=False, and the custom ops above'),
    'the dynamo ONNX exporter': (
        (2, 6), 'torch.onnx.export(dynamo=True, custom_translation_table=...)'),
}


def torch_version() -> Tuple[int, int]:
    return tuple(int(p) for p in re.findall(r'\d+', torch.__version__)[:2])


def require(feature: str) -> None:
    """Raise :class:`UnsupportedTorchError` unless this torch has ``feature``."""
    needed, api = FEATURES[feature]
    if torch_version() < needed:
        raise UnsupportedTorchError(
            f'{feature} needs torch >= {needed[0]}.{needed[1]} ({api}); this is torch '
            f'{torch.__version__}. Training, testing and the converters work on it; for '
            'deployment use a newer torch (e.g. a second environment).')
