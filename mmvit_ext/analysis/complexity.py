"""FLOP counting that includes the attention itself.

mmengine's ``FlopAnalyzer`` (a port of fvcore) traces the model with ``torch.jit`` and counts
multiply-adds (MACs) of convs, linears, matmuls and norms. It has no handle for
``aten::scaled_dot_product_attention`` nor for our custom autograd ops, which would then count as
zero. The handles below count them analytically, in the same MAC convention as the papers:

* SDPA: ``B*h*Nq*Nk*d`` for q k^T plus the same for attn @ v.
* MSDA (``_DilatedLocalAttention``): ``B*h*d*H*W*k*k`` for the logits plus the same for the
  weighted sum -- exactly what the official unfold + matmul form counts.

* Modules whose attention runs on padded buffers (DG-Attention's chunks of group-sorted
  queries) expose ``exact_attention_flops``, set by their forward to ``2*B*h*N*k*d`` for the N
  real queries; the traced SDPA count of such a module is replaced by it.

Softmax, GELU and other element-wise ops are not counted, as in fvcore.
"""
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ['ATTENTION_FLOP_HANDLES', 'count_flops', 'count_params', 'config_complexity',
           'DEFAULT_SHAPES']


def _shape(value) -> List[int]:
    return value.type().sizes()


def _sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    q, k = _shape(inputs[0]), _shape(inputs[1])
    batch = 1
    for s in q[:-2]:
        batch *= s
    n_q, d = q[-2], q[-1]
    n_k = k[-2]
    return 2 * batch * n_q * n_k * d


def _msda_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    q = _shape(inputs[0])  # (B, h, d, H, W)
    # The kernel size is a scalar argument of the PythonOp; the model uses 3 (9 neighbours).
    kernel_size = 3
    for value in inputs[1:]:
        ival = value.toIValue() if hasattr(value, 'toIValue') else None
        if isinstance(ival, int):
            kernel_size = ival
            break
    numel = 1
    for s in q:
        numel *= s
    return 2 * numel * kernel_size * kernel_size


ATTENTION_FLOP_HANDLES = {
    'aten::scaled_dot_product_attention': _sdpa_flop_jit,
    'prim::PythonOp._DilatedLocalAttention': _msda_flop_jit,
}


# operator names (as FlopAnalyzer.by_operator reports them) of token-to-token products
ATTENTION_OPERATORS = ('matmul', 'bmm', 'einsum', 'scaled_dot_product_attention',
                       '_DilatedLocalAttention')


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, inputs: Sequence[torch.Tensor] = None,
                input_shape: Tuple[int, ...] = None) -> Dict[str, Any]:
    """Count MACs ("FLOPs" in the papers' convention) and parameters of ``model``.

    Returns a dict with ``flops`` (int), ``params`` (int), ``attention_flops`` (the part spent in
    token-to-token products: matmul/bmm/einsum, SDPA and our attention ops; counters that hook
    modules only, like mmcv's ``get_model_complexity_info`` used by mm* 0.x/2.x tools, miss it) and
    ``unsupported`` (op -> count of ops the counter skipped; element-wise ops are expected there).
    """
    from mmengine.analysis import FlopAnalyzer
    if inputs is None:
        if input_shape is None:
            raise ValueError('give inputs or input_shape')
        param = next(model.parameters())
        inputs = (torch.randn((1, ) + tuple(input_shape), dtype=param.dtype,
                              device=param.device), )
    elif isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    model.eval()
    exact = [(name, m) for name, m in model.named_modules()
             if hasattr(m, 'exact_attention_flops')]
    for _, m in exact:
        m.exact_attention_flops = 0
    analyzer = FlopAnalyzer(model, tuple(inputs))
    analyzer.set_op_handle(**ATTENTION_FLOP_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    # the fast forms: the counter traces the model as it runs eagerly and has handles for our
    # custom operators (a tracer would otherwise get the traceable forms)
    from ..attention import attention_form
    with torch.no_grad(), attention_form('fast'):
        flops = analyzer.total()
        by_op = analyzer.by_operator()
        by_module_op = analyzer.by_module_and_operator() if exact else {}
    attention = sum(v for k, v in by_op.items() if k in ATTENTION_OPERATORS)
    for name, m in exact:  # padded-buffer SDPA -> the analytic count of the real queries
        delta = m.exact_attention_flops - by_module_op.get(name, {}).get(
            'scaled_dot_product_attention', 0)
        flops += delta
        attention += delta
    return dict(flops=int(flops), params=count_params(model), attention_flops=int(attention),
                unsupported=dict(analyzer.unsupported_ops()))


# Community convention: detection at 1280x800, segmentation at 512x2048 (H x W here).
DEFAULT_SHAPES = dict(mmdet=(800, 1280), mmseg=(512, 2048), mmpretrain=(224, 224))


class _TensorForward(nn.Module):
    """forward(img) runs a detector/segmentor/classifier in its 'tensor' mode (no post-processing
    of boxes beyond what the model itself traces)."""

    def __init__(self, model, scope, shape):
        super().__init__()
        self.model = model
        meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
                    scale_factor=(1.0, 1.0))
        if scope == 'mmdet':
            from mmdet.structures import DetDataSample
            self.data_samples = [DetDataSample(metainfo=meta)]
        elif scope == 'mmseg':
            from mmseg.structures import SegDataSample
            self.data_samples = [SegDataSample(metainfo=meta)]
        else:
            self.data_samples = None

    def forward(self, img):
        return self.model(img, self.data_samples, mode='tensor')


def config_complexity(cfg, shape: Tuple[int, int] = None) -> Dict[str, Any]:
    """Params and FLOPs of a config's whole model and of its backbone at ``shape`` (H, W).

    Weights are not loaded (``init_cfg`` is dropped): complexity does not depend on them, except
    for detectors, whose head cost depends on how many proposals survive the RPN's NMS; the
    random weights and input are seeded so that the count is repeatable.
    """
    from ..apis.build import build_model_from_cfg
    torch.manual_seed(0)
    model, scope = build_model_from_cfg(cfg)
    model.eval()
    shape = tuple(shape) if shape else DEFAULT_SHAPES.get(scope, (224, 224))
    img = torch.randn(1, 3, *shape)
    whole = count_flops(_TensorForward(model, scope, shape), inputs=(img, ))
    backbone = count_flops(model.backbone, inputs=(img, ))
    return dict(scope=scope, shape=shape, params=whole['params'], flops=whole['flops'],
                backbone_params=backbone['params'], backbone_flops=backbone['flops'],
                backbone_attention_flops=backbone['attention_flops'],
                unsupported=sorted(whole['unsupported']))
