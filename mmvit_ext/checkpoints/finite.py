"""NaN / Inf in weights or optimizer state: found and named."""
from typing import List, Mapping

import torch

from ..errors import Refusal
from .describe import short_list

__all__ = ['NonFiniteCheckpointError', 'nonfinite_tensors', 'check_finite',
           'nonfinite_optimizer_state']


class NonFiniteCheckpointError(Refusal, ValueError):
    """A checkpoint holds NaN or Inf weights."""


def nonfinite_tensors(state_dict: Mapping) -> List[str]:
    """Keys of floating-point tensors holding NaN or Inf."""
    return [k for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point()
            and v.numel() and not bool(torch.isfinite(v).all())]


def check_finite(state_dict: Mapping, source: str) -> None:
    bad = nonfinite_tensors(state_dict)
    if bad:
        raise NonFiniteCheckpointError(
            f'{source} holds NaN/Inf values in {len(bad)} of {len(state_dict)} tensors: '
            f'{short_list(bad, 6)}. It was probably saved after training diverged (or damaged '
            'when written); take an earlier checkpoint.')


def nonfinite_optimizer_state(state: Mapping) -> List[str]:
    """'param 3: exp_avg' for every NaN/Inf tensor of an optimizer (or wrapper) state dict."""
    bad: List[str] = []

    def visit(node, where):
        if torch.is_tensor(node):
            if node.is_floating_point() and node.numel() and not bool(torch.isfinite(node).all()):
                bad.append(where)
        elif isinstance(node, Mapping):
            for k, v in node.items():
                visit(v, f'{where}.{k}' if where else str(k))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                visit(v, f'{where}[{i}]')

    visit(state, '')
    return bad
